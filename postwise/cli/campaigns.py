"""``postwise campaign ...``: create from JSON, list, show, estimate, schedule (send),
pause, resume, cancel, test-send, attribute (docs/campaigns.md).

A refused move (pausing twice, editing a sending campaign) prints the reason and exits
with status 2, like every other user error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.orm import Session

from postwise.cli.contacts import AS_JSON, WORKSPACE, workspace_session
from postwise.cli.context import console, fail, print_json

campaign_app = typer.Typer(help="Campaigns: one-off sends to segments and lists.")
campaign_app.info.no_args_is_help = True

REF = typer.Argument(..., help="Campaign key or id.")


def _campaign(session: Session, ref: str) -> Any:
    from postwise.campaigns import store
    from postwise.core.errors import NotFound

    found = store.get_by_key(session, ref)
    if found is not None:
        return found
    if ref.isdigit():
        return store.get_campaign(session, int(ref))
    raise NotFound(f"campaign {ref!r} does not exist", field="campaign")


def _show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
    else:
        console.print(f"{row['id']}\t{row['key']}\t{row['status']}\t{row['name']}")


@campaign_app.command("create")
def create_command(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Campaign JSON."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """Create a draft from a JSON file (key, name, template_id, audience, schedule, ...)."""
    from postwise.campaigns import store

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{path} is not JSON: {exc}", code=2)
    if not isinstance(doc, dict):
        fail(f"{path} must hold one JSON object", code=2)
    with workspace_session(workspace) as s:
        row = store.as_dict(s, store.create_campaign(s, doc))
    _show(row, as_json)


@campaign_app.command("list")
def list_command(workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    from postwise.campaigns import store

    with workspace_session(workspace) as s:
        rows = [store.as_dict(s, c) for c in store.list_campaigns(s)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no campaigns")
    for r in rows:
        _show(r, False)


@campaign_app.command("show")
def show_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    from postwise.campaigns import results, store

    with workspace_session(workspace) as s:
        c = _campaign(s, ref)
        row = store.as_dict(s, c)
        row["results"] = results.current(s, c.id)
    print_json(row)


@campaign_app.command("estimate")
def estimate_command(ref: str = REF, workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    """How many would receive it if it were sent now, per first-matching source."""
    from postwise.campaigns import audience

    with workspace_session(workspace) as s:
        est = audience.estimate(s, _campaign(s, ref))
    if as_json:
        print_json(est)
        return
    console.print(f"{est['total']} recipients")
    for b in est["by_source"]:
        console.print(f"  {b['kind']} {b['id']}: {b['count']}")


def _move(action: str, ref: str, workspace: int) -> None:
    from postwise.campaigns import lifecycle

    with workspace_session(workspace) as s:
        c = _campaign(s, ref)
        getattr(lifecycle, action)(s, c.id)
        status = c.status
    console.print(f"{ref}: {status}")


@campaign_app.command("schedule")
def schedule_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    """Check and schedule (a campaign with schedule mode 'now' starts sending at once)."""
    _move("schedule", ref, workspace)


@campaign_app.command("send")
def send_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    """Same as schedule: the campaign's own schedule says when."""
    _move("schedule", ref, workspace)


@campaign_app.command("pause")
def pause_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    _move("pause", ref, workspace)


@campaign_app.command("resume")
def resume_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    _move("resume", ref, workspace)


@campaign_app.command("cancel")
def cancel_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    _move("cancel", ref, workspace)


@campaign_app.command("test-send")
def send_test_command(
    ref: str = REF,
    emails: list[str] = typer.Argument(..., help="Addresses to send the test to."),
    workspace: int = WORKSPACE,
) -> None:
    """Send the campaign's message to these addresses now (not counted in reports)."""
    from postwise.campaigns import lifecycle

    with workspace_session(workspace) as s:
        ids = lifecycle.test_send(s, _campaign(s, ref).id, emails)
    console.print(f"queued {len(ids)} test message(s)")


@campaign_app.command("attribute")
def attribute_command(workspace: int = WORKSPACE) -> None:
    """Credit goal events to campaigns now (the worker does this every few minutes)."""
    from postwise.campaigns import attribution

    with workspace_session(workspace) as s:
        added = attribution.attribute(s)
    console.print(f"{added} conversion(s) attributed")
