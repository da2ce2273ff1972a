"""``postwise dkim ...`` and ``postwise template ...`` (docs/messages.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from postwise.cli.context import console, open_database, print_json, user_errors
from postwise.core.settings import get_settings
from postwise.messages import keys, starters, store

dkim_app = typer.Typer(help="DKIM signing keys.", no_args_is_help=True)
template_app = typer.Typer(help="Message templates.", no_args_is_help=True)

WORKSPACE = typer.Option(..., "--workspace", "-w", help="Workspace id.")


@dkim_app.command("generate")
def generate(
    domain: str = typer.Option(..., "--domain", "-d", help="The signing domain (d=)."),
    selector: str = typer.Option(..., "--selector", "-s", help="The selector (s=)."),
    algorithm: str = typer.Option("rsa", "--algorithm", "-a", help="rsa (2048 bits) or ed25519."),
    workspace: int = WORKSPACE,
) -> None:
    """Create a key, store it encrypted, and print the DNS TXT record to publish."""
    secret = get_settings().resolved_secret_key()
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        row, strings = keys.generate_dkim_key(
            session, secret, domain=domain, selector=selector, algorithm=algorithm
        )
        name = f"{row.selector}._domainkey.{row.domain}"
    console.print(f"Publish this TXT record ({row.algorithm}):", highlight=False)
    quoted = " ".join(f'"{s}"' for s in strings)
    typer.echo(f"{name}. IN TXT ( {quoted} )")


@dkim_app.command("list")
def list_keys(workspace: int = WORKSPACE) -> None:
    """Keys of the workspace with their DNS records (never the private keys)."""
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        rows = [
            {
                "id": r.id,
                "name": f"{r.selector}._domainkey.{r.domain}",
                "algorithm": r.algorithm,
                "active": r.active,
                "dns_record": r.dns_record,
            }
            for r in keys.list_dkim_keys(session)
        ]
    print_json(rows)


@template_app.command("add-starters")
def add_starters(workspace: int = WORKSPACE) -> None:
    """Save the shipped starter templates (welcome, newsletter, receipt) in the workspace."""
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        for key in starters.NAMES:
            starter = starters.load(key)
            source = starter.source
            row = store.create_template(
                session,
                store.TemplateInput(
                    name=starter.name,
                    kind=starter.kind,
                    subject=source.subject,
                    preheader=source.preheader,
                    html=source.html,
                ),
            )
            console.print(f"template {row.id}: {row.name}")


@template_app.command("validate")
def validate(
    html: Path = typer.Argument(..., exists=True, dir_okay=False, help="HTML (or .mjml) file."),
    subject: str = typer.Option(..., "--subject"),
    workspace: int = WORKSPACE,
) -> None:
    """Report every problem of a template file, with line numbers; exit 2 if any."""
    text = html.read_text("utf-8")
    is_mjml = html.suffix.lower() == ".mjml"
    data = store.TemplateInput(
        name=html.stem, subject=subject, html="" if is_mjml else text, mjml=text if is_mjml else ""
    )
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        problems = store.validate_source(session, data)
    for problem in problems:
        typer.echo(f"{problem.field}: {problem.message} [{problem.code}]")
    if problems:
        raise typer.Exit(2)
    console.print("ok")
