"""``postwise outbox`` (stats, captured mail, a delivery process) and ``postwise send``.

``postwise outbox deliver`` runs the delivery loop as its own long-lived process
(``postwise worker`` does the same work through ``delivery.drain`` jobs); any number of
them may run against one PostgreSQL database. See docs/delivery.md.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import typer
from rich.table import Table

from postwise.cli.context import console, fail, open_database, print_json, user_errors
from postwise.core.settings import get_settings
from postwise.delivery import outbox, service
from postwise.delivery.deliverer import Totals
from postwise.delivery.transports.maildir import list_captured, read_captured

outbox_app = typer.Typer(
    help="The outbox: what is queued, sent and captured.", no_args_is_help=True
)


@outbox_app.command("stats")
def stats(
    workspace: int | None = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Outbox rows per status."""
    db = open_database()
    with db.system() as session:
        counts = outbox.stats(session, workspace)
    if as_json:
        print_json(counts)
        return
    table = Table("status", "messages")
    for status in outbox.Status:
        table.add_row(status.value, f"{counts.get(status.value, 0):,}")
    console.print(table)


@outbox_app.command("captured")
def captured(
    workspace: int = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many, newest first."),
    show: str | None = typer.Option(None, "--show", help="Print this captured file's bytes."),
) -> None:
    """Mail the capture transport wrote to POSTWISE_CAPTURE_DIR (nothing was sent)."""
    directory = get_settings().resolved_capture_dir()
    with user_errors():
        if show is not None:
            typer.echo(read_captured(directory, workspace, show).decode("utf-8", "replace"))
            return
        files = list_captured(directory, workspace, limit=limit)
    table = Table("file", "outbox id", "captured at", "bytes")
    for f in files:
        table.add_row(f.name, str(f.outbox_id), f.captured_at.isoformat(), f"{f.size:,}")
    console.print(table)
    console.print(f"[dim]{directory}[/]")


@outbox_app.command("deliver")
def deliver(
    worker_id: str | None = typer.Option(None, "--id", help="Name in outbox.locked_by."),
    until_idle: bool = typer.Option(False, "--until-idle", help="Stop when nothing is due."),
) -> None:
    """Deliver outbox rows until SIGTERM/Ctrl-C (the messages in hand are finished first)."""
    from postwise.jobs.runner import default_worker_id

    settings = get_settings()
    db = open_database()
    deliverer = service.build_deliverer(db, settings, worker_id or default_worker_id())

    async def main() -> Totals:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await deliverer.run(until_idle=until_idle, stop=stop)

    totals = asyncio.run(main())
    console.print(json.dumps({k: v for k, v in vars(totals).items() if v}))


def send(
    to: str = typer.Option(..., "--to", help="The contact's email address."),
    workspace: int = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    template: int | None = typer.Option(None, "--template", help="Stored template id."),
    subject: str | None = typer.Option(None, "--subject", help="Inline template: subject."),
    text: str | None = typer.Option(None, "--text", help="Inline template: text body."),
    html_file: Path | None = typer.Option(None, "--html", help="Inline template: HTML file."),
    data: str = typer.Option("{}", "--data", help="Template variables as a JSON object."),
) -> None:
    """Queue a transactional message to one contact; a worker delivers it."""
    try:
        variables = json.loads(data)
    except json.JSONDecodeError as exc:
        fail(f"--data is not JSON: {exc}")
    if not isinstance(variables, dict):
        fail("--data must be a JSON object")
    inline = None
    if subject is not None:
        inline = {"subject": subject, "text": text or ""}
        if html_file is not None:
            inline["html"] = html_file.read_text()
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        outbox_id = service.send_to_contact(
            session,
            email=to,
            template_id=str(template) if template else None,
            template=inline,
            data=variables,
        )
    console.print(f"queued as outbox message {outbox_id}")
