"""``/api/workflows``: automation workflows, their versions, enrollments and metrics.

Definitions are checked by ``workflows/definition.py`` (422 naming the step, ``field``
the path); writes go through ``workflows/store.py``, enrollments through
``workflows/runtime.py``. Reading needs ``segments:read``; changing or enrolling needs
``send`` (a workflow sends mail). See docs/workflows.md and docs/api.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, status
from sqlalchemy.orm import Session

from postwise.api.dependencies import scoped_session
from postwise.api.schemas import COMMON_PROBLEMS
from postwise.contacts.actions import get_contact
from postwise.storage.tables import Workflow
from postwise.workflows import jobs as _jobs  # registers the real-time routing listener
from postwise.workflows import metrics, runtime, store
from postwise.workflows.outline import outline
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["workflows"], responses=COMMON_PROBLEMS)
PREFIX = "/api/workflows"

Reader = Annotated[Session, Depends(scoped_session(Scope.SEGMENTS_READ), scope="function")]
Writer = Annotated[Session, Depends(scoped_session(Scope.SEND), scope="function")]
Doc = Annotated[dict[str, Any], Body()]
del _jobs


def _out(session: Session, wf: Workflow) -> dict[str, Any]:
    session.flush()
    doc = store.definition(session, wf.id, wf.version)
    return {
        "id": wf.id,
        "key": wf.key,
        "name": wf.name,
        "status": wf.status,
        "paused_reason": wf.paused_reason,
        "version": wf.version,
        "playbook": wf.playbook,
        "definition": doc,
        "outline": outline(runtime.parsed(session, wf.id, wf.version)[0]),
        "created_at": wf.created_at.isoformat(),
        "updated_at": wf.updated_at.isoformat(),
    }


@router.get(PREFIX, summary="All workflows")
def list_workflows(session: Reader) -> dict[str, Any]:
    return {"data": [_out(session, wf) for wf in store.list_workflows(session)]}


@router.post(PREFIX, status_code=status.HTTP_201_CREATED, summary="Create a workflow")
def create_workflow(session: Writer, body: Doc) -> dict[str, Any]:
    """Body: ``{"key", "definition", "status"?}``; 422 names the step at fault."""
    wf = store.create_workflow(
        session,
        str(body.get("key", "")),
        body.get("definition") or {},
        status=str(body.get("status", "active")),
    )
    _jobs_forget(session)
    return _out(session, wf)


@router.post(PREFIX + "/validate", summary="Check a definition without saving it")
def validate_workflow(session: Reader, body: Doc) -> dict[str, Any]:
    wf = store.check(session, body.get("definition") or {})
    return {"valid": True, "outline": outline(wf)}


@router.post(PREFIX + "/install", status_code=status.HTTP_201_CREATED, summary="Install a playbook")
def install_playbook(session: Writer, body: Doc) -> dict[str, Any]:
    """Body: ``{"playbook", "params"?, "key"?}``: creates missing templates and lists."""
    wf = store.install_playbook(
        session,
        str(body.get("playbook", "")),
        params=body.get("params") or None,
        workflow_key=body.get("key"),
    )
    _jobs_forget(session)
    return _out(session, wf)


@router.get(PREFIX + "/webhook-secrets", summary="Webhook signing secrets, names only")
def list_webhook_secrets(session: Writer) -> dict[str, Any]:
    """Names and when each was last set; a value is shown once, when created or rotated."""
    return {"data": store.webhook_secret_list(session)}


@router.post(
    PREFIX + "/webhook-secrets",
    status_code=status.HTTP_201_CREATED,
    summary="Create a webhook signing secret (its value is shown once)",
)
def create_webhook_secret(session: Writer, body: Doc) -> dict[str, Any]:
    """Body: ``{"name"}``; 409 if the name is taken (rotate it instead)."""
    name = str(body.get("name", ""))
    value = store.create_webhook_secret(session, name)
    return {"name": name.strip(), "secret": value}


@router.post(
    PREFIX + "/webhook-secrets/{secret_name}/rotate",
    summary="Replace a webhook secret's value (the new one is shown once)",
)
def rotate_webhook_secret(session: Writer, secret_name: str) -> dict[str, Any]:
    return {"name": secret_name, "secret": store.rotate_webhook_secret(session, secret_name)}


@router.get(PREFIX + "/{workflow_id}", summary="One workflow, its current definition")
def get_workflow(session: Reader, workflow_id: int) -> dict[str, Any]:
    return _out(session, store.get_workflow(session, workflow_id))


@router.put(PREFIX + "/{workflow_id}", summary="Save a new version")
def update_workflow(session: Writer, workflow_id: int, body: Doc) -> dict[str, Any]:
    """Running enrollments finish on their version unless ``migrate`` is called."""
    wf = store.update_workflow(session, workflow_id, body.get("definition") or {})
    _jobs_forget(session)
    return _out(session, wf)


@router.post(
    PREFIX + "/{workflow_id}/migrate", summary="Move running enrollments to the current version"
)
def migrate_workflow(session: Writer, workflow_id: int) -> dict[str, int]:
    store.get_workflow(session, workflow_id)
    return runtime.migrate_enrollments(session, workflow_id)


@router.post(PREFIX + "/{workflow_id}/pause", summary="Pause: wake-ups are held")
def pause_workflow(session: Writer, workflow_id: int) -> dict[str, Any]:
    wf = store.set_status(session, workflow_id, "paused", reason="paused by a person")
    _jobs_forget(session)
    return _out(session, wf)


@router.post(PREFIX + "/{workflow_id}/resume", summary="Resume: held wake-ups run")
def resume_workflow(session: Writer, workflow_id: int) -> dict[str, Any]:
    wf = store.set_status(session, workflow_id, "active")
    _jobs_forget(session)
    return _out(session, wf)


@router.post(
    PREFIX + "/{workflow_id}/enrollments",
    status_code=status.HTTP_201_CREATED,
    summary="Enroll a contact (manual or API trigger)",
)
def enroll_contact(session: Writer, workflow_id: int, body: Doc) -> dict[str, Any]:
    wf = store.get_workflow(session, workflow_id)
    contact = get_contact(session, int(body.get("contact_id", 0)))
    row = runtime.enroll(session, wf, contact.id, manual=True, properties=body.get("data"))
    assert row is not None
    return metrics.history(session, contact.id, limit=1)[0]


@router.get(PREFIX + "/{workflow_id}/metrics", summary="Counts per workflow and step")
def workflow_metrics(session: Reader, workflow_id: int) -> dict[str, Any]:
    return metrics.workflow_metrics(session, workflow_id)


@router.get("/api/contacts/{contact_id}/enrollments", summary="A contact's journeys")
def contact_enrollments(session: Reader, contact_id: int) -> dict[str, Any]:
    get_contact(session, contact_id)
    return {"data": metrics.history(session, contact_id)}


def _jobs_forget(session: Session) -> None:
    from postwise.storage.tenancy import workspace_of
    from postwise.workflows import jobs

    jobs.forget_interest(workspace_of(session))
