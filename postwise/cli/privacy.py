"""``postwise suppress`` and the GDPR commands ``postwise contact export|erase``.

The contact commands live here with the rest of privacy and are attached to the
``contact`` group by ``cli/main.py`` (``register_contact_commands``).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import typer

from postwise.cli.context import console, open_database, print_json, user_errors
from postwise.contacts.actions import get_contact_by_email
from postwise.core.settings import get_settings
from postwise.privacy import erasure, export, suppression
from postwise.privacy.hashing import AddressHasher

suppress_app = typer.Typer(help="The suppression list every sender consults.", no_args_is_help=True)

WORKSPACE = typer.Option(..., "--workspace", "-w", help="Workspace id.")


def _hasher() -> AddressHasher:
    return AddressHasher.from_secret(get_settings().resolved_secret_key())


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:200]
    except (KeyError, OSError):  # no user name in some containers
        return "cli"


@suppress_app.command("add")
def add(
    email: str | None = typer.Argument(None, help="The address to suppress."),
    domain: str | None = typer.Option(None, "--domain", "-d", help="A whole domain instead."),
    workspace: int = WORKSPACE,
    reason: str = typer.Option(
        "manual", "--reason", "-r", help=f"One of: {', '.join(suppression.REASONS)}."
    ),
    note: str = typer.Option("", "--note"),
) -> None:
    """Suppress an address, or with --domain a domain and all its subdomains."""
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        row = suppression.add_suppression(
            session, hasher=_hasher(), email=email, domain=domain, reason=reason, note=note
        )
    console.print(f"suppression {row.id}: {row.kind} {row.value} ({row.reason})")


@suppress_app.command("list")
def list_entries(
    workspace: int = WORKSPACE,
    kind: str | None = typer.Option(None, "--kind", help="address, domain or address_hash."),
    reason: str | None = typer.Option(None, "--reason"),
    q: str | None = typer.Option(None, "--q", help="Part of the address or domain."),
    limit: int = typer.Option(100, "--limit"),
    cursor: str | None = typer.Option(None, "--cursor", help="From a previous --json listing."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object with next_cursor."),
) -> None:
    """List suppressions, oldest first."""
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        page = suppression.list_suppressions(
            session, kind=kind, reason=reason, q=q, cursor=cursor, limit=limit
        )
        rows = [
            {
                "id": r.id,
                "kind": r.kind,
                "value": r.value,
                "reason": r.reason,
                "note": r.note,
                "created_at": r.created_at.isoformat(),
            }
            for r in page.items
        ]
    if as_json:
        print_json({"data": rows, "next_cursor": page.next_cursor})
        return
    for row in rows:
        console.print(f"{row['id']}\t{row['kind']}\t{row['value']}\t{row['reason']}")
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@suppress_app.command("remove")
def remove(suppression_id: int, workspace: int = WORKSPACE) -> None:
    """Lift an address or domain entry (an erased person's hash needs their new consent)."""
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        suppression.remove_suppression(session, suppression_id, actor="cli")
    console.print(f"suppression {suppression_id} removed")


@suppress_app.command("check")
def check(
    email: str,
    workspace: int = WORKSPACE,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Say whether EMAIL may be mailed; if not, which entry forbids it."""
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        hit = suppression.is_suppressed(session, email, hasher=_hasher())
    if as_json:
        print_json(
            {"email": email, "suppressed": False}
            if hit is None
            else {
                "email": email,
                "suppressed": True,
                "kind": hit.kind,
                "reason": hit.reason,
                "suppression_id": hit.suppression_id,
            }
        )
        return
    if hit is None:
        console.print(f"{email} is not suppressed")
    else:
        console.print(
            f"{email} is suppressed: {hit.kind} entry {hit.suppression_id} ({hit.reason})"
        )


def export_contact(
    email: str,
    workspace: int = WORKSPACE,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the JSON here (default: standard output)."
    ),
) -> None:
    """GDPR export: everything held about the contact with EMAIL, as one JSON document."""
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        contact = get_contact_by_email(session, email)
        document = export.export_contact(session, contact.id, hasher=_hasher())
    if output is None:
        print_json(document)
        return
    output.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    output.chmod(0o600)
    console.print(f"exported contact {document['contact']['id']} to {output}")


def erase_contact(
    email: str,
    workspace: int = WORKSPACE,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help="Print the receipt as JSON."),
) -> None:
    """GDPR erasure: delete everything about EMAIL, keep only a keyed hash to never mail it.

    Works whether or not EMAIL is a contact. Cannot be undone.
    """
    if not yes:
        typer.confirm(
            f"Erase all data about {email} in workspace {workspace}? This cannot be undone",
            abort=True,
        )
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        receipt = erasure.erase_address(session, email, hasher=_hasher(), requested_by=_operator())
    if as_json:
        print_json(receipt.as_dict())
        return
    deleted = ", ".join(f"{n} {table}" for table, n in receipt.deleted.items()) or "nothing"
    console.print(f"erasure {receipt.erasure_id}: deleted {deleted}")
    if receipt.redacted:
        redacted = ", ".join(f"{n} {table}" for table, n in receipt.redacted.items())
        console.print(f"address cut from other rows: {redacted}")
    console.print("the address is now suppressed by its keyed hash only")


def register_contact_commands(contact_app: typer.Typer) -> None:
    """Attach ``export`` and ``erase`` to the ``postwise contact`` group."""
    contact_app.command("export")(export_contact)
    contact_app.command("erase")(erase_contact)
