"""``postwise contact`` and ``postwise attribute``: look at contacts, declare attributes.

``contact show`` prints ``contacts.documents.contact_document``, the read model the API
and the GDPR export also use, so the terminal shows what they show. The GDPR commands
``contact export`` and ``contact erase`` are attached to ``contact_app`` by cli/privacy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from postwise.cli.context import console, open_database, print_json, user_errors
from postwise.contacts import actions, attributes, documents
from postwise.contacts.emails import normalize_email
from postwise.contacts.fields import CONTACT_STATUSES
from postwise.core.errors import NotFound, ValidationFailed
from postwise.storage.tables import Workspace

contact_app = typer.Typer(help="Contacts.", no_args_is_help=True)
attribute_app = typer.Typer(
    help="Custom attributes of contacts and companies.", no_args_is_help=True
)

WORKSPACE = typer.Option(..., "--workspace", "-w", help="Workspace id.")
AS_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")


@contextmanager
def workspace_session(workspace: int) -> Iterator[Session]:
    """A tenant session for an existing workspace; any PostwiseError becomes exit status 2.

    A tenant session on a missing workspace would just look empty, so 'no contact'
    would hide a mistyped workspace id; checking first gives the real reason.
    """
    db = open_database()
    try:
        with user_errors():
            with db.system() as system:
                if system.get(Workspace, workspace) is None:
                    raise NotFound(f"workspace {workspace} does not exist", field="workspace")
            with db.tenant(workspace) as session:
                yield session
    finally:
        db.dispose()


def _text(value: Any) -> str:
    if value is None or value == "":
        return "[dim]-[/]"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _when(value: Any) -> str:
    """An ISO timestamp to the second, as people read it."""
    return str(value)[:19].replace("T", " ") if value else "-"


def _pairs(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, _text(value))
    return table


def _event_summary(event: dict[str, Any]) -> str:
    properties = event.get("properties") or {}
    if event.get("type") == "page":
        return str(properties.get("path") or properties.get("url") or "")
    return _text({k: v for k, v in properties.items() if not isinstance(v, list | dict)})


@contact_app.command("show")
def show(
    email: str = typer.Argument(..., help="The contact's email address."),
    workspace: int = WORKSPACE,
    events: int = typer.Option(10, "--events", min=0, max=1000, help="How many latest events."),
    timeline: bool = typer.Option(
        False, "--timeline", help="Add the timeline: changes and events, newest first."
    ),
    as_json: bool = AS_JSON,
) -> None:
    """A contact with its fields, attributes, company, list memberships and latest events."""
    with workspace_session(workspace) as session:
        normalize_email(email)  # a malformed address is a typo to report, not 'not found'
        contact = actions.get_contact_by_email(session, email)
        document = documents.contact_document(session, contact, events=events)
        if timeline:
            document["timeline"] = documents.timeline(session, contact.id)
    if as_json:
        print_json(document)
        return
    _render(document)


def _render(document: dict[str, Any]) -> None:
    name = " ".join(p for p in (document["first_name"], document["last_name"]) if p)
    console.print(f"[bold]{name or document['email']}[/] <{document['email']}>")
    fields = [
        (key, _when(document[key]) if key.endswith("_at") else document[key])
        for key in documents.CONTACT_COLUMNS
        if key not in ("attributes", "company_id")
    ]
    console.print(_pairs("Fields", fields))
    console.print(_pairs("Attributes", sorted(document["attributes"].items())))
    company = document["company"]
    if company is None:
        console.print("[bold]Company[/]  [dim]none (free-mail or unknown domain)[/]")
    else:
        keys = ("name", "domain", "industry", "employee_count", "size_band", "revenue_band")
        rows = [(key, company[key]) for key in (*keys, "country")]
        console.print(_pairs("Company", rows + sorted(company["attributes"].items())))

    lists = Table(title="Lists", title_justify="left")
    for column in ("list", "status", "since", "consent", "confirmed"):
        lists.add_column(column)
    for m in document["lists"]:
        consent = m["consent"] or {}
        source = " ".join(p for p in (consent.get("source"), consent.get("ip")) if p)
        lists.add_row(
            m["list"],
            m["status"],
            _when(m["subscribed_at"]),
            _text(source),
            _when(consent.get("confirmed_at")),
        )
    console.print(lists if document["lists"] else "[bold]Lists[/]  [dim]none[/]")

    latest = Table(title="Latest events", title_justify="left")
    for column in ("when", "type", "event", "details"):
        latest.add_column(column)
    for event in document["latest_events"]:
        latest.add_row(
            _when(event["occurred_at"]), event["type"], event["name"], _event_summary(event)
        )
    console.print(latest if document["latest_events"] else "[bold]Latest events[/]  [dim]none[/]")

    if "timeline" in document:
        history = Table(title="Timeline", title_justify="left")
        for column in ("when", "what", "details"):
            history.add_column(column)
        for entry in document["timeline"]:
            if entry["kind"] == "change":
                what = f"{entry['change']} ({entry['source']})"
                details = _text(entry["details"])
            else:
                what, details = entry["name"], _event_summary(entry)
            history.add_row(_when(entry["at"]), what, details)
        console.print(history)


@contact_app.command("list")
def list_contacts(
    workspace: int = WORKSPACE,
    q: str | None = typer.Option(None, "--q", help="Part of the email or name."),
    status: str | None = typer.Option(None, "--status", help=", ".join(CONTACT_STATUSES)),
    limit: int = typer.Option(50, "--limit"),
    cursor: str | None = typer.Option(None, "--cursor", help="From a previous listing."),
    as_json: bool = AS_JSON,
) -> None:
    """Contacts in the order they were created, optionally filtered."""
    with workspace_session(workspace) as session:
        if status is not None and status not in CONTACT_STATUSES:
            raise ValidationFailed(
                f"status must be one of: {', '.join(CONTACT_STATUSES)}", field="status"
            )
        page = actions.search_contacts(session, q=q, status=status, cursor=cursor, limit=limit)
        rows = [documents.contact_dict(c) for c in page.items]
    if as_json:
        print_json({"data": rows, "next_cursor": page.next_cursor})
        return
    table = Table()
    table.add_column("id")
    table.add_column("email", no_wrap=True)
    for column in ("name", "title", "status", "company"):
        table.add_column(column)
    for row in rows:
        name = " ".join(p for p in (row["first_name"], row["last_name"]) if p)
        table.add_row(
            str(row["id"]),
            row["email"],
            _text(name),
            _text(row["job_title"]),
            row["status"],
            _text(row["company_id"]),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


def _attribute_dict(definition: Any) -> dict[str, Any]:
    return {
        "id": definition.id,
        "entity": definition.entity,
        "name": definition.name,
        "type": definition.type,
        "description": definition.description,
        "created_at": definition.created_at.isoformat(),
    }


@attribute_app.command("create")
def create_attribute(
    name: str = typer.Argument(..., help="lower_case name, as used in 'attributes'."),
    kind: str = typer.Option(
        ..., "--type", "-t", help=", ".join(t.value for t in attributes.AttributeType)
    ),
    entity: str = typer.Option("contact", "--entity", "-e", help="contact or company."),
    description: str = typer.Option("", "--description", "-d"),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """Declare a custom attribute; values written later are checked against its type."""
    with workspace_session(workspace) as session:
        row = _attribute_dict(attributes.define_attribute(session, entity, name, kind, description))
    if as_json:
        print_json(row)
        return
    console.print(f"{row['entity']} attribute [bold]{row['name']}[/] ({row['type']}) created")


@attribute_app.command("list")
def list_attributes(
    workspace: int = WORKSPACE,
    entity: str | None = typer.Option(None, "--entity", "-e", help="contact or company."),
    limit: int = typer.Option(200, "--limit"),
    cursor: str | None = typer.Option(None, "--cursor", help="From a previous listing."),
    as_json: bool = AS_JSON,
) -> None:
    """The declared attributes, oldest first."""
    with workspace_session(workspace) as session:
        if entity is not None and entity not in attributes.Entity.__members__.values():
            raise ValidationFailed("entity must be 'contact' or 'company'", field="entity")
        page = attributes.search_attributes(session, entity=entity, cursor=cursor, limit=limit)
        rows = [_attribute_dict(d) for d in page.items]
    if as_json:
        print_json({"data": rows, "next_cursor": page.next_cursor})
        return
    table = Table()
    for column in ("entity", "name", "type", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["entity"], row["name"], row["type"], _text(row["description"]))
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")
