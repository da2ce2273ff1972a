"""``/api/templates``: message templates, validation and previews (docs/messages.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.orm import Session

from postwise.api.dependencies import get_settings, scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, FieldErrorOut, ObjectId, problem_responses
from postwise.api.schemas.templates import (
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateList,
    TemplateOut,
    TemplatePatch,
    ValidationOut,
)
from postwise.core.settings import Settings
from postwise.messages import store
from postwise.messages.pipeline import MessageBuilder
from postwise.storage.tables import Template, Workspace
from postwise.storage.tenancy import workspace_of
from postwise.tracking.tokens import TokenSigner
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api/templates", tags=["templates"], responses=COMMON_PROBLEMS)

Sending = Annotated[Session, Depends(scoped_session(Scope.SEND), scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings)]


def _input(body: TemplateIn) -> store.TemplateInput:
    return store.TemplateInput(**body.model_dump())


@router.get("", response_model=TemplateList, summary="All templates, by name")
def list_templates(session: Sending) -> TemplateList:
    return TemplateList(data=[TemplateOut.model_validate(t) for t in store.list_templates(session)])


@router.post(
    "",
    response_model=TemplateOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a template",
    description="Validated and compiled first: syntax errors, unknown variables and sandbox "
    "escapes are answered with 400 and one entry per problem (`field` like `html:12`).",
    responses=problem_responses(400, 409, 413),
)
def create_template(session: Sending, body: TemplateIn) -> Template:
    return store.create_template(session, _input(body))


@router.post(
    "/validate",
    response_model=ValidationOut,
    summary="Check a template without saving it",
    responses=problem_responses(413),
)
def validate_template(session: Sending, body: TemplateIn) -> ValidationOut:
    problems = store.validate_source(session, _input(body))
    return ValidationOut(
        valid=not problems,
        errors=[FieldErrorOut.model_validate(p.as_dict()) for p in problems],
    )


@router.get(
    "/{template_id}",
    response_model=TemplateOut,
    summary="One template",
    responses=problem_responses(404),
)
def get_template(session: Sending, template_id: ObjectId) -> Template:
    return store.get_template(session, template_id)


@router.patch(
    "/{template_id}",
    response_model=TemplateOut,
    summary="Change a template (its version grows by one)",
    responses=problem_responses(400, 404, 409, 413),
)
def update_template(session: Sending, template_id: ObjectId, body: TemplatePatch) -> Template:
    return store.update_template(session, template_id, body.model_dump(exclude_unset=True))


@router.delete(
    "/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a template",
    responses=problem_responses(404),
)
def delete_template(session: Sending, template_id: ObjectId) -> None:
    store.delete_template(session, template_id)


@router.post(
    "/{template_id}/preview",
    response_model=PreviewOut,
    summary="Render for one contact, as a send would (no tracking, no signature)",
    responses=problem_responses(400, 404, 413),
)
def preview_template(
    session: Sending, settings: AppSettings, template_id: ObjectId, body: PreviewIn
) -> PreviewOut:
    workspace = session.get(Workspace, workspace_of(session))
    sender = store.preview_sender(workspace.settings if workspace else {}, settings.base_url)
    builder = MessageBuilder(TokenSigner(settings.resolved_secret_key()))
    preview = store.preview_template(
        session,
        template_id,
        contact_id=body.contact_id,
        data=body.data,
        sender=sender,
        builder=builder,
    )
    return PreviewOut(**preview.__dict__)
