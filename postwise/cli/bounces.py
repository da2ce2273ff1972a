"""``postwise bounces``: what Postwise makes of bounce, complaint and auto-reply messages.

``classify FILE...`` runs the parser and classifier (docs/bounces.md) over raw message
files, one message per file, without touching the database: a table by default, and with
``--json`` one JSON object per line per recipient, for scripts.

``list``, ``summary`` and ``alerts`` read a workspace's records, per-domain summaries and
filter-block alerts; ``read-maildir`` and ``poll-imap`` feed a mailbox's bounces to
intake; ``postwise inbound`` (registered at the top level) is the SMTP listener.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from postwise.bounces.parser import parse_message
from postwise.bounces.report import ParsedMessage
from postwise.cli.context import console, err_console, fail, open_database, print_json, user_errors

bounces_app = typer.Typer(
    help="Bounces and complaints: classify messages, list and summarize records.",
    no_args_is_help=True,
)

MAX_FILE_BYTES = 10_000_000  # larger files are read this far; the parser caps lower still


def _rows(name: str, parsed: ParsedMessage) -> list[dict[str, Any]]:
    """One row per recipient; a message with no recipient still gives one row."""
    if not parsed.recipients:
        return [
            {
                "file": name,
                "kind": parsed.kind.value,
                "recipient": None,
                "status": None,
                "reply_code": None,
                "reason": None,
                "hard": False,
                "feedback_type": None,
                "diagnostic": parsed.unparsed_reason,
            }
        ]
    return [
        {
            "file": name,
            "kind": parsed.kind.value,
            "recipient": r.recipient,
            "status": r.status,
            "reply_code": r.reply_code,
            "reason": r.reason,
            "hard": r.hard,
            "feedback_type": r.feedback_type,
            "diagnostic": r.diagnostic,
        }
        for r in parsed.recipients
    ]


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_FILE_BYTES)
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] {path}: {exc.strerror or exc}")
        return None


@bounces_app.command("classify")
def classify(
    files: list[Path] = typer.Argument(..., help="Raw message files (one message each)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line per recipient."),
) -> None:
    """Parse and classify messages: kind, recipient, code, reason, hard or soft."""
    unreadable = 0
    table = Table()
    for column in ("file", "kind", "recipient", "status", "reason", "hard"):
        table.add_column(column, overflow="fold")
    table.add_column("diagnostic", max_width=60, no_wrap=True, overflow="ellipsis")
    out = sys.stdout
    for path in files:
        raw = _read(path)
        if raw is None:
            unreadable += 1
            continue
        for row in _rows(str(path), parse_message(raw)):
            if as_json:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                continue
            table.add_row(
                path.name,
                row["kind"],
                row["recipient"] or "-",
                row["status"] or (str(row["reply_code"]) if row["reply_code"] else "-"),
                row["reason"] or "-",
                "hard" if row["hard"] else "soft" if row["reason"] else "-",
                (row["diagnostic"] or row["feedback_type"] or "")[:80],
            )
    if not as_json:
        console.print(table)
    if unreadable:
        raise typer.Exit(1)


# --- records, summaries, alerts and the mailbox readers (intake; docs/bounces.md) -----


def _intake_context() -> Any:
    from postwise.bounces import intake
    from postwise.core.settings import get_settings

    return intake.Context.from_settings(get_settings(), open_database())


@bounces_app.command("list")
def list_records(
    workspace: int = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    campaign: str | None = typer.Option(None, "--campaign", help="Only this campaign key."),
    domain: str | None = typer.Option(None, "--domain", help="Only this recipient domain."),
    reason: str | None = typer.Option(None, "--reason", help="Only this reason."),
    kind: str | None = typer.Option(None, "--kind", help="bounce or complaint."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
    cursor: str | None = typer.Option(None, "--cursor", help="next_cursor of a previous page."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Bounce and complaint records, oldest first, with the verdict on each."""
    from postwise.bounces import records

    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        page = records.list_records(
            session,
            records.RecordFilter(campaign_key=campaign, domain=domain, reason=reason, kind=kind),
            cursor=cursor,
            limit=limit,
        )
        rows = [
            {
                "id": r.id,
                "occurred_at": r.occurred_at.isoformat(),
                "kind": r.kind,
                "email": r.email,
                "campaign_key": r.campaign_key,
                "source": r.source,
                "reason": r.reason,
                "hard": r.hard,
                "status": r.status,
                "verdict": r.verdict,
                "diagnostic": r.diagnostic,
            }
            for r in page.items
        ]
    if as_json:
        print_json({"data": rows, "next_cursor": page.next_cursor})
        return
    table = Table()
    for column in ("id", "when", "kind", "email", "reason", "hard", "status", "verdict"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["occurred_at"])[:19],
            str(row["kind"]),
            str(row["email"]),
            str(row["reason"]),
            "hard" if row["hard"] else "soft",
            str(row["status"] or "-"),
            str(row["verdict"]),
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@bounces_app.command("summary")
def summary(
    workspace: int = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    campaign: str | None = typer.Option(None, "--campaign", help="Only this campaign key."),
    days: int | None = typer.Option(None, "--days", min=1, help="Only the last N days."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Bounces and complaints per recipient domain, most first; blocked domains marked."""
    from datetime import timedelta

    from postwise.bounces import records
    from postwise.core import clock

    since = clock.utcnow() - timedelta(days=days) if days else None
    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        rows = records.summary_by_domain(session, since=since, campaign_key=campaign)
    if as_json:
        print_json([vars(r) for r in rows])
        return
    table = Table()
    for column in (
        "domain",
        "bounces",
        "hard",
        "soft",
        "complaints",
        "suppressed",
        "kept",
        "block",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.domain,
            str(r.bounces),
            str(r.hard),
            str(r.soft),
            str(r.complaints),
            str(r.suppressed),
            str(r.kept_filter_block),
            "BLOCKING" if r.blocked else "",
        )
    console.print(table)


@bounces_app.command("alerts")
def alerts(
    workspace: int = typer.Option(..., "--workspace", "-w", help="Workspace id."),
    all_alerts: bool = typer.Option(False, "--all", help="Acknowledged ones too."),
    acknowledge: int | None = typer.Option(None, "--ack", help="Acknowledge this alert id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Alerts raised by bounce handling (suspected filter blocks), newest last."""
    from postwise.bounces import records

    db = open_database()
    with user_errors(), db.tenant(workspace) as session:
        if acknowledge is not None:
            records.acknowledge_alert(session, acknowledge, by="cli")
        page = records.list_alerts(session, acknowledged=None if all_alerts else False, limit=200)
        rows: list[dict[str, Any]] = [
            {
                "id": a.id,
                "created_at": a.created_at.isoformat(),
                "kind": a.kind,
                "domain": a.domain,
                "message": a.message,
                "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
            }
            for a in page.items
        ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no alerts")
    for row in rows:
        seen = f" (acknowledged {row['acknowledged_at'][:19]})" if row["acknowledged_at"] else ""
        console.print(f"[bold]#{row['id']} {row['created_at'][:19]} {row['kind']}[/]{seen}")
        console.print(f"  {row['message']}\n")


@bounces_app.command("read-maildir")
def read_maildir(
    directory: Path = typer.Argument(..., help="A maildir (with cur/, new/, tmp/)."),
    delete: bool = typer.Option(False, "--delete", help="Remove messages once stored."),
) -> None:
    """Take every unread message of a maildir into bounce intake; marks them read."""
    from postwise.bounces import mailbox

    with user_errors():
        report = mailbox.read_maildir(_intake_context(), directory, delete=delete)
    console.print(
        f"{report.read} read, {report.stored} stored, {report.duplicates} seen before, "
        f"{report.records} bounce/complaint records, {report.failed} failed"
    )
    if report.failed:
        raise typer.Exit(1)


@bounces_app.command("poll-imap")
def poll_imap(
    folder: str | None = typer.Option(
        None, "--folder", help="Default POSTWISE_BOUNCE_IMAP_MAILBOX."
    ),
    delete: bool = typer.Option(False, "--delete", help="Delete messages once stored."),
) -> None:
    """Take the unread messages of the configured IMAP mailbox into bounce intake."""
    import imaplib

    from postwise.bounces import mailbox
    from postwise.core.settings import get_settings

    settings = get_settings()
    with user_errors():
        connect = mailbox.imap_connector(settings)
        try:
            report = mailbox.poll_imap(
                _intake_context(),
                connect,
                folder=folder or settings.bounce_imap_mailbox,
                delete=delete,
            )
        except (imaplib.IMAP4.error, OSError) as exc:
            fail(f"IMAP {settings.bounce_imap_host}:{settings.bounce_imap_port}: {exc}")
    console.print(
        f"{report.read} read, {report.stored} stored, {report.duplicates} seen before, "
        f"{report.records} bounce/complaint records, {report.failed} failed"
    )
    if report.failed:
        raise typer.Exit(1)


def inbound(
    host: str | None = typer.Option(
        None, help="Address to bind (default POSTWISE_INBOUND_SMTP_HOST)."
    ),
    port: int | None = typer.Option(None, help="Port (default POSTWISE_INBOUND_SMTP_PORT)."),
) -> None:
    """Receive bounces by SMTP for the VERP bounce domain (POSTWISE_DELIVERY_BOUNCE_DOMAIN)."""
    import signal
    import threading

    from postwise.bounces.inbound import InboundServer
    from postwise.core.settings import get_settings

    settings = get_settings()
    server = InboundServer(
        _intake_context(),
        settings.delivery_bounce_domain,
        host or settings.inbound_smtp_host,
        settings.inbound_smtp_port if port is None else port,
        settings.inbound_max_bytes,
    )
    try:
        server.start()
    except OSError as exc:
        fail(
            f"cannot listen for SMTP on {server.host}:{server.port} ({exc.strerror or exc}); "
            "pick another port with --port or POSTWISE_INBOUND_SMTP_PORT"
        )
    console.print(
        f"receiving bounces for {settings.delivery_bounce_domain} on "
        f"smtp://{server.host}:{server.port} (Ctrl-C stops)"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    console.print("inbound SMTP stopped.")
