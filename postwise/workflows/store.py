"""Stored workflows: create, edit (a new version), pause, resume, install a playbook.

Every write takes a tenant session. A definition is checked with ``parse_workflow``
against what exists in the workspace (templates, lists, webhook secrets, declared
attributes), so a stored version always parses; running enrollments keep the version
they started on (``runtime.migrate_enrollments`` moves them explicitly). See
docs/workflows.md (runtime).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.errors import Conflict, NotFound, ValidationFailed
from postwise.segments.context import load_context
from postwise.storage.tables import (
    BounceAlert,
    MailingList,
    Template,
    Workflow,
    WorkflowVersion,
    Workspace,
)
from postwise.storage.tenancy import workspace_of
from postwise.workflows.definition import Workflow as ParsedWorkflow
from postwise.workflows.definition import WorkflowContext, parse_workflow
from postwise.workflows.playbooks import playbook as load_playbook

KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
STATUSES = ("active", "paused")
SECRETS_SETTING = "webhook_secrets"  # workspace settings: secret name -> value
SECRETS_TIMES_SETTING = "webhook_secrets_updated"  # secret name -> when it was last set
SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SECRET_BYTES = 32  # token_urlsafe: 43 characters, the HMAC key is their UTF-8 bytes


def webhook_secrets(session: Session) -> dict[str, str]:
    """The workspace's webhook signing secrets by name (kept in its settings)."""
    ws = session.get(Workspace, workspace_of(session))
    raw = (ws.settings or {}).get(SECRETS_SETTING, {}) if ws is not None else {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def set_webhook_secret(session: Session, name: str, value: str) -> None:
    """Store ``value`` under ``name`` (the CLI: an operator brings their own value)."""
    if not name.strip() or len(value) < 16:
        raise ValidationFailed(
            "a webhook secret needs a name and at least 16 characters", field="value"
        )
    _store_secret(session, name.strip(), value)


def webhook_secret_list(session: Session) -> list[dict[str, Any]]:
    """The secrets' names and when each was last set, never their values."""
    ws = session.get(Workspace, workspace_of(session))
    times = (ws.settings or {}).get(SECRETS_TIMES_SETTING, {}) if ws is not None else {}
    times = times if isinstance(times, dict) else {}
    return [
        {"name": name, "updated_at": times.get(name)} for name in sorted(webhook_secrets(session))
    ]


def create_webhook_secret(session: Session, name: str) -> str:
    """A new random secret under ``name``, returned once (``Conflict`` if the name is taken:
    replacing a secret is ``rotate_webhook_secret``)."""
    name = _check_secret_name(name)
    if name in webhook_secrets(session):
        raise Conflict(
            f"a webhook secret named {name!r} exists; rotate it to replace its value",
            code="webhook_secret_exists",
            field="name",
        )
    value = secrets.token_urlsafe(SECRET_BYTES)
    _store_secret(session, name, value)
    return value


def rotate_webhook_secret(session: Session, name: str) -> str:
    """A new random value for an existing secret, returned once; calls made from now on
    (retries of earlier ones included) are signed with it."""
    if name not in webhook_secrets(session):
        raise NotFound(
            f"No webhook secret {name!r}.", code="webhook_secret_not_found", field="name"
        )
    value = secrets.token_urlsafe(SECRET_BYTES)
    _store_secret(session, name, value)
    return value


def _check_secret_name(name: str) -> str:
    name = name.strip()
    if not SECRET_NAME.fullmatch(name):
        raise ValidationFailed(
            "name: letters, digits, '_', '.', '-' (at most 64)",
            code="invalid_secret_name",
            field="name",
        )
    return name


def _store_secret(session: Session, name: str, value: str) -> None:
    """Secrets live in the workspace settings, as workflows have always read them."""
    ws = session.get(Workspace, workspace_of(session))
    if ws is None:
        raise NotFound("no such workspace", code="workspace_not_found")
    settings = dict(ws.settings or {})
    stored = dict(settings.get(SECRETS_SETTING) or {})
    stored[name] = value
    times = dict(settings.get(SECRETS_TIMES_SETTING) or {})
    times[name] = clock.utcnow().isoformat()
    settings[SECRETS_SETTING] = stored
    settings[SECRETS_TIMES_SETTING] = times
    ws.settings = settings
    session.flush()


def context(session: Session) -> WorkflowContext:
    """What exists in the workspace, for checking a definition."""
    templates = {name for (name,) in session.execute(select(Template.name))}
    templates |= {str(tid) for (tid,) in session.execute(select(Template.id))}
    lists: set[int | str] = set()
    for list_id, name in session.execute(select(MailingList.id, MailingList.name)):
        lists.update((int(list_id), str(name)))
    return WorkflowContext(
        templates=frozenset(templates),
        lists=frozenset(lists),
        webhook_secrets=frozenset(webhook_secrets(session)),
        segments=load_context(session),
    )


def check(session: Session, doc: Any) -> ParsedWorkflow:
    """Parse ``doc`` against the workspace; ``InvalidWorkflow`` (422) names the step."""
    return parse_workflow(doc, context(session))


def get_workflow(session: Session, ref: int | str) -> Workflow:
    """By id or key."""
    stmt = select(Workflow)
    if isinstance(ref, int) or str(ref).isdigit():
        stmt = stmt.where(Workflow.id == int(ref))
    else:
        stmt = stmt.where(Workflow.key == str(ref))
    found = session.scalars(stmt).first()
    if found is None:
        raise NotFound(f"No workflow {ref}.", code="workflow_not_found", field="id")
    return found


def list_workflows(session: Session) -> list[Workflow]:
    return list(session.scalars(select(Workflow).order_by(Workflow.id)))


def definition(session: Session, workflow_id: int, version: int) -> dict[str, Any]:
    doc = session.scalar(
        select(WorkflowVersion.definition).where(
            WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == version
        )
    )
    if doc is None:
        raise NotFound(f"workflow {workflow_id} has no version {version}", code="version_not_found")
    return dict(doc)


def versions(session: Session, workflow_id: int) -> list[WorkflowVersion]:
    return list(
        session.scalars(
            select(WorkflowVersion)
            .where(WorkflowVersion.workflow_id == workflow_id)
            .order_by(WorkflowVersion.version)
        )
    )


def _check_key(key: str) -> str:
    key = key.strip()
    if not KEY.fullmatch(key):
        raise ValidationFailed(
            "key: lowercase letters, digits, '_', '.', '-' (at most 64)",
            code="invalid_key",
            field="key",
        )
    return key


def create_workflow(
    session: Session,
    key: str,
    doc: Mapping[str, Any],
    *,
    status: str = "active",
    playbook: str | None = None,
) -> Workflow:
    key = _check_key(key)
    parsed = check(session, doc)
    if session.scalar(select(Workflow.id).where(Workflow.key == key)) is not None:
        raise Conflict(f"a workflow with key {key!r} exists", code="workflow_exists", field="key")
    if status not in STATUSES:
        raise ValidationFailed(f"status must be one of {STATUSES}", field="status")
    now = clock.utcnow()
    wf = Workflow(
        key=key,
        name=parsed.name,
        status=status,
        version=1,
        playbook=playbook,
        created_at=now,
        updated_at=now,
    )
    session.add(wf)
    session.flush()
    session.add(WorkflowVersion(workflow_id=wf.id, version=1, definition=dict(doc), created_at=now))
    session.flush()
    return wf


def update_workflow(session: Session, ref: int | str, doc: Mapping[str, Any]) -> Workflow:
    """Save ``doc`` as the next version; new enrollments start on it, running ones stay."""
    wf = get_workflow(session, ref)
    parsed = check(session, doc)
    now = clock.utcnow()
    wf.version += 1
    wf.name = parsed.name
    wf.updated_at = now
    session.add(
        WorkflowVersion(workflow_id=wf.id, version=wf.version, definition=dict(doc), created_at=now)
    )
    session.flush()
    return wf


def set_status(
    session: Session, ref: int | str, status: str, *, reason: str | None = None
) -> Workflow:
    """Pause (wake-ups stay due, held) or resume (they run at once)."""
    if status not in STATUSES:
        raise ValidationFailed(f"status must be one of {STATUSES}", field="status")
    wf = get_workflow(session, ref)
    wf.status = status
    wf.paused_reason = reason if status == "paused" else None
    wf.updated_at = clock.utcnow()
    session.flush()
    if status == "active":
        from postwise.workflows import jobs

        jobs.kick(session)
    return wf


def pause_for_missing(session: Session, wf: Workflow, what: str) -> None:
    """A template, list or secret the workflow uses is gone: pause it and tell a person
    (an alert in the bounce alerts table), rather than fail each step silently."""
    if wf.status == "paused" and wf.paused_reason:
        return
    message = (
        f"workflow {wf.key!r} paused: {what} no longer exists; restore it or edit the "
        f"workflow, then resume it (postwise workflow resume {wf.key})"
    )
    wf.status = "paused"
    wf.paused_reason = message
    wf.updated_at = clock.utcnow()
    session.add(
        BounceAlert(
            workspace_id=wf.workspace_id,
            kind="workflow_paused",
            message=message,
            evidence={"workflow": wf.key, "missing": what},
            created_at=clock.utcnow(),
        )
    )
    session.flush()


def install_playbook(
    session: Session,
    key: str,
    *,
    params: Mapping[str, Any] | None = None,
    workflow_key: str | None = None,
) -> Workflow:
    """Create the playbook's templates the workspace lacks, its lists, then the workflow."""
    try:
        book = load_playbook(key)
    except KeyError:
        raise NotFound(f"No playbook {key!r}.", code="playbook_not_found", field="key") from None
    doc = book.document(params)
    existing = {name for (name,) in session.execute(select(Template.name))}
    from postwise.messages.store import TemplateInput, create_template

    for seed in book.templates(params):
        if seed.key not in existing:
            create_template(
                session,
                TemplateInput(
                    name=seed.key, subject=seed.subject, preheader=seed.preheader, html=seed.html
                ),
            )
    from postwise.contacts.lists import get_or_create_list
    from postwise.workflows.references import workflow_references

    refs = workflow_references(parse_workflow(doc))
    for ref in refs.lists:
        if isinstance(ref, str):
            get_or_create_list(session, ref)
    return create_workflow(session, workflow_key or key.replace("_", "-"), doc, playbook=key)
