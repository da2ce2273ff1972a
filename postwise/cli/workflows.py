"""``postwise workflow ...``: install playbooks, save, show, pause, resume, enroll, history
and metrics of automation workflows, and their webhook secrets (docs/workflows.md).

A definition that does not parse prints the step at fault and exits with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from postwise.cli.contacts import AS_JSON, WORKSPACE, workspace_session
from postwise.cli.context import console, fail, print_json

workflow_app = typer.Typer(help="Automation workflows: journeys triggered by what contacts do.")
workflow_app.info.no_args_is_help = True

REF = typer.Argument(..., help="Workflow key or id.")


def _params(values: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value in values:
        name, sep, raw = value.partition("=")
        if not sep:
            fail(f"--param takes NAME=VALUE, not {value!r}", code=2)
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def _row(wf: Any) -> dict[str, Any]:
    return {
        "id": wf.id,
        "key": wf.key,
        "name": wf.name,
        "status": wf.status,
        "version": wf.version,
        "playbook": wf.playbook,
        "paused_reason": wf.paused_reason,
    }


@workflow_app.command("install")
def install_command(
    playbook: str = typer.Argument(..., help="Playbook key (welcome, lead_nurture, ...)."),
    workspace: int = WORKSPACE,
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE (repeatable)."),
    key: str | None = typer.Option(None, "--key", help="Workflow key (default: from playbook)."),
    as_json: bool = AS_JSON,
) -> None:
    """Install a shipped playbook: its missing templates and lists, then the workflow."""
    from postwise.workflows import store

    with workspace_session(workspace) as s:
        wf = store.install_playbook(s, playbook, params=_params(param) or None, workflow_key=key)
        row = _row(wf)
    if as_json:
        print_json(row)
    else:
        console.print(f"installed {row['key']} (id {row['id']}, version {row['version']})")


@workflow_app.command("save")
def save_command(
    key: str = typer.Argument(..., help="Workflow key."),
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Definition JSON."),
    workspace: int = WORKSPACE,
) -> None:
    """Create the workflow, or save the file as its next version."""
    from postwise.core.errors import NotFound
    from postwise.workflows import store

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"{path} is not JSON: {exc}", code=2)
    with workspace_session(workspace) as s:
        try:
            store.get_workflow(s, key)
        except NotFound:
            wf = store.create_workflow(s, key, doc)
        else:
            wf = store.update_workflow(s, key, doc)
        version = wf.version
    console.print(f"saved {key} version {version}")


@workflow_app.command("list")
def list_command(workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    from postwise.workflows import store

    with workspace_session(workspace) as s:
        rows = [_row(wf) for wf in store.list_workflows(s)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no workflows")
    for r in rows:
        console.print(f"{r['id']}\t{r['key']}\t{r['status']}\tv{r['version']}\t{r['name']}")


@workflow_app.command("show")
def show_command(ref: str = REF, workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    """The workflow as numbered lines: triggers, steps and where they go, goal, policies."""
    from postwise.workflows import runtime, store
    from postwise.workflows.outline import outline

    with workspace_session(workspace) as s:
        wf = store.get_workflow(s, ref)
        row = _row(wf)
        lines = outline(runtime.parsed(s, wf.id, wf.version)[0])
        row["definition"] = store.definition(s, wf.id, wf.version)
    if as_json:
        print_json({**row, "outline": lines})
        return
    console.print(f"{row['key']} (v{row['version']}, {row['status']})", highlight=False)
    if row["paused_reason"]:
        console.print(row["paused_reason"], highlight=False)
    for line in lines:
        console.print(line, highlight=False, markup=False)


def _status(ref: str, workspace: int, status: str) -> None:
    from postwise.workflows import store

    with workspace_session(workspace) as s:
        wf = store.set_status(s, ref, status, reason="paused by a person")
        key = wf.key
    console.print(f"{key} {status}")


@workflow_app.command("pause")
def pause_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    """Hold the workflow's wake-ups (none is lost) and its triggers."""
    _status(ref, workspace, "paused")


@workflow_app.command("resume")
def resume_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    """Run again; wake-ups that came due while paused run at once."""
    _status(ref, workspace, "active")


@workflow_app.command("migrate")
def migrate_command(ref: str = REF, workspace: int = WORKSPACE) -> None:
    """Move running enrollments to the current version where their step still fits."""
    from postwise.workflows import runtime

    with workspace_session(workspace) as s:
        counts = runtime.migrate_enrollments(s, ref)
    console.print(f"{counts['migrated']} migrated, {counts['kept']} kept on their version")


def _contact_id(s: Any, contact: str) -> int:
    from postwise.contacts.actions import get_contact, get_contact_by_email

    if contact.isdigit():
        return int(get_contact(s, int(contact)).id)
    return int(get_contact_by_email(s, contact).id)


@workflow_app.command("enroll")
def enroll_command(
    ref: str = REF,
    contact: str = typer.Argument(..., help="Contact id or email."),
    workspace: int = WORKSPACE,
) -> None:
    """Enroll a contact now (the re-entry policy still applies)."""
    from postwise.workflows import runtime, store

    with workspace_session(workspace) as s:
        wf = store.get_workflow(s, ref)
        row = runtime.enroll(s, wf, _contact_id(s, contact), manual=True)
        assert row is not None
        enrollment_id, step = row.id, (row.state or {}).get("step")
    console.print(f"enrollment {enrollment_id}, now at {step}")


@workflow_app.command("history")
def history_command(
    contact: str = typer.Argument(..., help="Contact id or email."),
    workspace: int = WORKSPACE,
    as_json: bool = AS_JSON,
) -> None:
    """A contact's journeys: steps taken, emails sent, branches, exit reason."""
    from postwise.workflows import metrics

    with workspace_session(workspace) as s:
        journeys = metrics.history(s, _contact_id(s, contact))
    if as_json:
        print_json(journeys)
        return
    if not journeys:
        console.print("no enrollments")
    for j in journeys:
        end = j["exit_reason"] or f"at {j['current_step']}"
        console.print(f"{j['workflow']} v{j['version']} {j['status']} ({end})", highlight=False)
        for st in j["steps"]:
            extra = f" {st['template']}" if "template" in st else ""
            console.print(f"  {st['at']}  {st['step']}: {st['outcome']}{extra}", markup=False)


@workflow_app.command("metrics")
def metrics_command(ref: str = REF, workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    """Enrolled, active, completed, exited; emails, opens, clicks; per step."""
    from postwise.workflows import metrics

    with workspace_session(workspace) as s:
        m = metrics.workflow_metrics(s, ref)
    if as_json:
        print_json(m)
        return
    console.print(
        f"{m['workflow']}: enrolled {m['enrolled']}, active {m['active']}, completed "
        f"{m['completed']}, goal {m['exited_goal']}, other exits {m['exited_other']}, "
        f"emails {m['emails_sent']}, opens {m['human_opens']}, clicks {m['human_clicks']}, "
        f"completion rate {m['completion_rate']}",
        highlight=False,
    )
    for st in m["steps"]:
        console.print(
            f"  {st['step']}: {st['entered']} entered, {st['conversions']} converted, "
            f"{st['outcomes']}",
            markup=False,
        )


@workflow_app.command("secret")
def secret_command(
    name: str = typer.Argument(..., help="Secret name the webhook steps use."),
    value: str | None = typer.Argument(
        None, help="Your own value (at least 16 characters); omit it for a random one."
    ),
    rotate: bool = typer.Option(False, "--rotate", help="Replace an existing secret's value."),
    workspace: int = WORKSPACE,
) -> None:
    """Set a webhook signing secret; a random one (new, or --rotate) is printed once."""
    from postwise.workflows import store

    with workspace_session(workspace) as s:
        if value is not None:
            store.set_webhook_secret(s, name, value)
            made = None
        elif rotate:
            made = store.rotate_webhook_secret(s, name)
        else:
            made = store.create_webhook_secret(s, name)
    if made is None:
        console.print(f"secret {name} set")
    else:
        console.print(f"secret {name}: {made}  (shown once)", markup=False, highlight=False)


@workflow_app.command("secrets")
def secrets_command(workspace: int = WORKSPACE, as_json: bool = AS_JSON) -> None:
    """The workspace's webhook secrets: names and when each was set, never values."""
    from postwise.workflows import store

    with workspace_session(workspace) as s:
        rows = store.webhook_secret_list(s)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(f"{row['name']}\t{row['updated_at'] or '-'}", markup=False)
