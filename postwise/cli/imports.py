"""``postwise import contacts`` and ``postwise export contacts``: CSV in and out.

The import streams the file with a progress bar over the bytes read and ends with a
summary table; rejected rows go to a report CSV beside the input (``--report`` to choose).
Exit status 0 means the file was processed, even if rows were rejected; 2 means it could
not be used at all (unreadable, empty, no header, no email column, a bad ``--map``).
How files are read and rows applied: ``postwise/contacts/importer.py``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TextIO

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy.orm import Session

from postwise.cli.context import console, err_console, fail, open_database, print_json, user_errors
from postwise.contacts import import_runs
from postwise.contacts.exporter import Export, ExportFilter, prepare_export
from postwise.contacts.importer import ImportOptions, ImportProgress, ImportResult, parse_mapping
from postwise.core.errors import NotFound
from postwise.storage.database import Database
from postwise.storage.tables import Workspace

import_app = typer.Typer(help="Import data from CSV files.", no_args_is_help=True)
export_app = typer.Typer(help="Export data to CSV files.", no_args_is_help=True)

WORKSPACE = typer.Option(..., "--workspace", "-w", help="Workspace id.")


def _check_workspace(db: Database, workspace: int) -> None:
    with db.system() as session:
        if session.get(Workspace, workspace) is None:
            raise NotFound(f"workspace {workspace} does not exist", field="workspace")


def _summary(result: ImportResult, path: Path) -> Table:
    table = Table(title=f"Imported {path.name}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right", overflow="fold")
    for name in ("created", "updated", "unchanged", "rejected"):
        table.add_row(name, f"{getattr(result, name):,}")
    table.add_row("rows", f"{result.rows:,}")
    table.add_row("rows/s", f"{result.rows_per_second:,.0f}")
    table.add_row("encoding, delimiter", f"{result.encoding}, {_shown(result.delimiter)}")
    if result.ignored_columns:
        table.add_row("ignored columns", ", ".join(result.ignored_columns))
    table.add_row("report", result.report_path or "no rejected rows")
    return table


def _shown(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


@import_app.command("contacts")
def import_contacts(
    file: Path = typer.Argument(..., help="The CSV file (UTF-8 with or without BOM, or Latin-1)."),
    workspace: int = WORKSPACE,
    list_name: str | None = typer.Option(
        None,
        "--list",
        "-l",
        help="Subscribe every imported contact to this list (created "
        "if missing); people who left it are not put back.",
    ),
    mapping: list[str] = typer.Option(
        [],
        "--map",
        "-m",
        help="COLUMN=FIELD, repeatable: 'E-Mail=email', "
        "'Firma=company.name', 'Seats=attributes.seats'; 'COLUMN=' ignores a column.",
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Where to write rejected rows (default: NAME.rejected.csv beside the file).",
    ),
    encoding: str = typer.Option("auto", "--encoding", help="auto, utf-8 or latin-1."),
    delimiter: str = typer.Option("auto", "--delimiter", help="auto, ',', ';', '|' or tab."),
    consent_text: str | None = typer.Option(
        None,
        "--consent-text",
        help="The wording people agreed to, kept with each new list membership.",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Rows per transaction (POSTWISE_IMPORT_BATCH_SIZE)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Create or update contacts from a CSV file, by email; safe to run again."""
    if not file.is_file():
        fail(f"cannot read {file}: no such file", code=2)
    report_path = report or file.with_name(f"{file.stem}.rejected.csv")
    db = open_database()
    try:
        with user_errors():
            options = ImportOptions(
                list_name=list_name,
                mapping=parse_mapping(mapping),
                encoding=encoding,
                delimiter=delimiter,
                consent_text=consent_text,
                batch_size=batch_size,
            )
            _check_workspace(db, workspace)
            with db.tenant(workspace) as session:
                run = import_runs.create_run(
                    session,
                    source="cli",
                    filename=file.name,
                    options=options,
                    file_path=str(file.resolve()),
                    bytes_total=file.stat().st_size,
                    status="running",
                )
            result = _run_with_progress(db, workspace, run.id, file, report_path, as_json)
    finally:
        db.dispose()
    if as_json:
        print_json(
            {
                "import_id": run.id,
                **result.counts(),
                "rows_per_second": round(result.rows_per_second),
                "encoding": result.encoding,
                "delimiter": result.delimiter,
                "columns": result.columns,
                "ignored_columns": result.ignored_columns,
                "report": result.report_path,
                "notes": result.notes,
            }
        )
        return
    console.print(_summary(result, file))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")


def _run_with_progress(
    db: Database, workspace: int, run_id: int, file: Path, report: Path, quiet: bool
) -> ImportResult:
    progress = Progress(
        TextColumn("[bold]importing[/]"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not err_console.is_terminal,
    )
    bar = progress.add_task("import", total=file.stat().st_size or None, rows=0)

    def advance(_session: Session, state: ImportProgress) -> None:
        progress.update(bar, completed=state.bytes_read, rows=state.rows)

    with progress:
        return import_runs.execute(
            db.engine,
            workspace,
            run_id,
            source=file,
            report_path=report,
            on_batch=advance,
        )


@export_app.command("contacts")
def export_contacts(
    workspace: int = WORKSPACE,
    output: Path = typer.Option(
        ..., "--output", "-o", help="The CSV file to write; '-' for stdout."
    ),
    list_name: str | None = typer.Option(None, "--list", "-l", help="Only members of this list."),
    status: str | None = typer.Option(None, "--status", help="Only contacts with this status."),
) -> None:
    """Write contacts to CSV, formula-safe for spreadsheets; re-importable as it is."""
    db = open_database()
    try:
        with user_errors():
            _check_workspace(db, workspace)
            export = prepare_export(
                db.engine, workspace, ExportFilter(list_name=list_name, status=status)
            )
            count = _write(export, output)
    finally:
        db.dispose()
    if str(output) != "-":
        err_console.print(f"exported {count:,} contacts to {output}")


def _write(export: Export, output: Path) -> int:
    """Stream the rows to the file (through a temporary name) or stdout; returns the count."""
    if str(output) == "-":
        return _write_rows(export, sys.stdout)
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            count = _write_rows(export, handle)
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {output}: {exc.strerror or exc}", code=2)
    return count


def _write_rows(export: Export, handle: TextIO) -> int:
    writer = csv.writer(handle, lineterminator="\r\n")
    rows = export.rows()
    writer.writerow(next(rows))  # the header
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
