"""``postwise bounces``: what Postwise makes of bounce, complaint and auto-reply messages.

``classify FILE...`` runs the parser and classifier (docs/bounces.md) over raw message
files, one message per file, without touching the database: a table by default, and with
``--json`` one JSON object per line per recipient, for scripts.
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
from postwise.cli.context import console, err_console

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
