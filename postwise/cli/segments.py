"""``postwise segment ...``: preview, save, inspect, refresh and export segments.

The definition files are the JSON documents of docs/segments.md; a definition that does
not parse prints the path of the offending node and exits with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from postwise.cli.contacts import AS_JSON, WORKSPACE, workspace_session
from postwise.cli.context import console, fail, open_database, print_json

segment_app = typer.Typer(help="Segments: who matches a definition, now and over time.")
segment_app.info.no_args_is_help = True

FILE = typer.Argument(..., exists=True, dir_okay=False, help="Definition JSON file.")


def _document(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{path} is not JSON: {exc}", code=2)
    if not isinstance(value, dict):
        fail(f"{path} must hold a JSON object (a segment definition)", code=2)
    # A file may hold a bare definition or a saved segment ({"name", "definition", ...}).
    inner = value.get("definition")
    return inner if isinstance(inner, dict) else value


def _meta(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) and isinstance(value.get("definition"), dict) else {}


def _segment_row(session: Any, row: Any) -> dict[str, Any]:
    from postwise.segments import catalog
    from postwise.segments.render import describe

    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "version": row.version,
        "members": row.member_count,
        "refreshed_at": row.refreshed_at.isoformat() if row.refreshed_at else None,
        "summary": describe(catalog.loaded(session, row).definition),
        "description": row.description,
        "definition": row.definition,
    }


@segment_app.command("preview")
def preview_command(path: Path = FILE, workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    """Count the contacts a definition selects now, with a sample of 20 and the count's time."""
    from postwise.segments.preview import preview

    document = _document(path)
    with workspace_session(workspace) as session:
        result = preview(session, document)
    if as_json:
        print_json({"count": result.count, "sample": result.sample, "seconds": result.seconds})
        return
    table = Table(title=f"{result.count:,} contacts ({result.seconds * 1000:.1f} ms)")
    table.add_column("#", justify="right")
    table.add_column("email")
    for i, email in enumerate(result.sample, start=1):
        table.add_row(str(i), email)
    console.print(table)


@segment_app.command("validate")
def validate_command(path: Path = FILE, workspace: int = WORKSPACE) -> None:
    """Check a definition against the workspace; print its one-line summary."""
    from postwise.segments import store
    from postwise.segments.render import describe

    document = _document(path)
    with workspace_session(workspace) as session:
        summary = describe(store.validate(session, document))
    console.print(f"valid: {summary}", highlight=False)


@segment_app.command("create")
def create_command(
    path: Path = FILE,
    workspace: int = WORKSPACE,
    name: str | None = typer.Option(None, "--name", "-n", help="Default: the file's name."),
    description: str | None = typer.Option(None, "--description"),
    refresh: bool = typer.Option(True, "--refresh/--no-refresh", help="Compute members now."),
    as_json: bool = AS_JSON,
) -> None:
    """Save a segment from a definition file (and compute its members)."""
    from postwise.segments import membership, store

    document, meta = _document(path), _meta(path)
    with workspace_session(workspace) as session:
        segment = store.create_segment(
            session,
            store.SegmentInput(
                name=name or meta.get("name") or path.stem,
                description=description or meta.get("description") or "",
                definition=document,
            ),
            refresh=not refresh,  # refreshed below, in this command, instead of by a job
        )
        if refresh:
            membership.refresh(session, segment.id)
            session.refresh(segment)
        out = _segment_row(session, segment)
    if as_json:
        print_json(out)
    else:
        console.print(f"segment {out['id']}: {out['name']} ({out['members']} members)")


@segment_app.command("list")
def list_command(workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    """Segments of the workspace with their member counts."""
    from postwise.segments import store

    with workspace_session(workspace) as session:
        rows = [_segment_row(session, s) for s in store.list_segments(session)]
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("id", "name", "members", "status", "refreshed", "definition"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]), r["name"], f"{r['members']:,}", r["status"],
            r["refreshed_at"] or "-", r["summary"],
        )  # fmt: skip
    console.print(table)


@segment_app.command("show")
def show_command(
    segment: str = typer.Argument(..., help="Segment id or name."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """One segment: its definition, summary and member count."""
    from postwise.segments import store

    with workspace_session(workspace) as session:
        out = _segment_row(session, store.find_segment(session, segment))
    if as_json:
        print_json(out)
        return
    for key in ("id", "name", "status", "version", "members", "refreshed_at", "summary"):
        console.print(f"[bold]{key}[/]: {out[key]}", highlight=False)
    console.print_json(json.dumps(out["definition"]))


@segment_app.command("members")
def members_command(
    segment: str = typer.Argument(..., help="Segment id or name."),
    workspace: int = WORKSPACE,
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    cursor: str | None = typer.Option(None, "--cursor", help="next_cursor of the last page."),
    as_json: bool = AS_JSON,
) -> None:
    """Current members, by contact id (a page; --cursor for the next)."""
    from postwise.segments import membership, store

    with workspace_session(workspace) as session:
        row = store.find_segment(session, segment)
        page = membership.members_page(session, row.id, cursor=cursor, limit=limit)
    items: list[dict[str, Any]] = [
        {"contact_id": m.contact_id, "email": m.email, "entered_at": m.entered_at.isoformat()}
        for m in page.items
    ]
    if as_json:
        print_json({"data": items, "next_cursor": page.next_cursor})
        return
    table = Table()
    for column in ("contact", "email", "entered"):
        table.add_column(column)
    for m in items:
        table.add_row(str(m["contact_id"]), m["email"], m["entered_at"])
    console.print(table)
    if page.next_cursor:
        console.print(f"next page: --cursor {page.next_cursor}", highlight=False)


@segment_app.command("export")
def export_command(
    segment: str = typer.Argument(..., help="Segment id or name."),
    workspace: int = WORKSPACE,
    output: Path = typer.Option(..., "--output", "-o", help="CSV file to write."),
) -> None:
    """Write the current members as CSV (the contact export's columns)."""
    from postwise.contacts.exporter import ExportFilter, prepare_export
    from postwise.segments import store

    with workspace_session(workspace) as session:
        segment_id = store.find_segment(session, segment).id
    db = open_database()
    try:
        export = prepare_export(db.engine, workspace, ExportFilter(segment_id=segment_id))
        rows = -1
        with output.open("w", encoding="utf-8", newline="") as out:
            for chunk in export.csv_chunks():
                out.write(chunk)
                rows += chunk.count("\r\n")
    finally:
        db.dispose()
    console.print(f"{max(rows, 0)} members written to {output}", highlight=False)


@segment_app.command("refresh")
def refresh_command(
    segment: str | None = typer.Argument(None, help="Segment id or name; default: all."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """Recompute membership now, recording who entered and who left."""
    from postwise.segments import membership, store

    results = []
    with workspace_session(workspace) as session:
        rows = [store.find_segment(session, segment)] if segment else store.list_segments(session)
        for row in rows:
            if row.status != "active" and not segment:
                continue
            result = membership.refresh(session, row.id)
            results.append({"name": row.name, **result.__dict__})
    if as_json:
        print_json(results)
        return
    for r in results:
        console.print(
            f"{r['name']}: {r['members']:,} members (+{r['entered']} -{r['exited']}) "
            f"in {r['seconds']:.3f}s",
            highlight=False,
        )


@segment_app.command("history")
def history_command(
    contact: str = typer.Argument(..., help="Contact email or id."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """A contact's segment stays, newest first."""
    from postwise.contacts.actions import get_contact, get_contact_by_email
    from postwise.segments import membership

    with workspace_session(workspace) as session:
        found = get_contact(session, int(contact)) if contact.isdigit() else None
        found = found or get_contact_by_email(session, contact)
        rows = [
            {
                "segment_id": r.segment_id,
                "segment": r.name,
                "entered_at": r.entered_at.isoformat(),
                "exited_at": r.exited_at.isoformat() if r.exited_at else None,
            }
            for r in membership.history(session, found.id)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table(title=found.email)
    for column in ("segment", "entered", "exited"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["segment"], r["entered_at"], r["exited_at"] or "[green]member[/]")
    console.print(table)


@segment_app.command("seed-playbooks")
def seed_playbooks_command(
    workspace: int = WORKSPACE,
    refresh: bool = typer.Option(True, "--refresh/--no-refresh", help="Compute members now."),
) -> None:
    """Save the shipped playbook segments (docs/segments.md); existing names are kept."""
    from postwise.segments import membership, playbooks

    with workspace_session(workspace) as session:
        saved = playbooks.seed(session, refresh=False)
        for segment in saved:
            if refresh:
                membership.refresh(session, segment.id)
                session.refresh(segment)
            console.print(f"segment {segment.id}: {segment.name} ({segment.member_count} members)")
    if not saved:
        console.print("all playbook segments exist already")
