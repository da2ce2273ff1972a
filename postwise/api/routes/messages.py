"""``/api/messages``, ``/api/lists/{id}/send`` and ``/api/outbox``: sending over the API.

A send queues outbox rows and answers 202 with their id at once; a worker delivers them
(docs/delivery.md). ``GET /api/messages/{id}`` follows one row to its final state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy.orm import Session

from postwise.api.dependencies import get_settings, scoped_session
from postwise.api.schemas import COMMON_PROBLEMS, MAX_ID, ObjectId
from postwise.core.settings import Settings
from postwise.delivery import outbox, service
from postwise.delivery.transports import maildir
from postwise.storage.tenancy import workspace_of
from postwise.workspaces.scopes import Scope

router = APIRouter(tags=["sending"], responses=COMMON_PROBLEMS)
SendSession = Annotated[Session, Depends(scoped_session(Scope.SEND))]
AdminSession = Annotated[Session, Depends(scoped_session(Scope.ADMIN))]
OutboxId = Annotated[int, Path(ge=1, le=MAX_ID, description="The outbox message id.")]


class InlineTemplate(BaseModel):
    subject: str = Field(min_length=1, max_length=998)
    html: str = Field(default="", max_length=1_000_000)
    text: str = Field(default="", max_length=1_000_000)
    preheader: str = Field(default="", max_length=500)


class SendIn(BaseModel):
    contact_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    email: EmailStr | None = None
    template_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Stored template.")
    template: InlineTemplate | None = Field(
        default=None, description="Inline template, until stored templates exist."
    )
    data: dict[str, Any] = Field(default_factory=dict, description="Template variables.")
    kind: Literal["transactional", "marketing"] = "transactional"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)


class Queued(BaseModel):
    id: int
    status: str


class MessageOut(BaseModel):
    id: int
    email: str
    kind: str
    status: str = Field(
        description="queued, sending, sent, deferred, bounced, failed, suppressed or cancelled."
    )
    reason: str | None
    attempts: int
    last_reply: str | None
    message_id: str | None
    transport: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None


class ListSendIn(BaseModel):
    template_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Stored template.")
    template: InlineTemplate | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    campaign_key: str | None = Field(
        default=None, min_length=1, max_length=200, description="Sends once per contact."
    )
    topic: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="A workspace topic: contacts who left it in the preference center are skipped.",
    )


class ListQueued(BaseModel):
    queued: int


@router.post(
    "/api/messages",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Queued,
    summary="Send one message to one contact",
)
def send_message(body: SendIn, session: SendSession) -> Queued:
    outbox_id = service.send_to_contact(
        session,
        contact_id=body.contact_id,
        email=str(body.email) if body.email is not None else None,
        template_id=str(body.template_id) if body.template_id else None,
        template=body.template.model_dump() if body.template else None,
        data=body.data,
        kind=body.kind,
        idempotency_key=body.idempotency_key,
    )
    return Queued(id=outbox_id, status=outbox.get_message(session, outbox_id).status)


@router.get("/api/messages/{outbox_id}", response_model=MessageOut, summary="A message's state")
def get_message(outbox_id: OutboxId, session: SendSession) -> MessageOut:
    row = outbox.get_message(session, outbox_id)
    pending = row.status in (outbox.Status.QUEUED, outbox.Status.DEFERRED)
    return MessageOut(
        id=row.id,
        email=row.email,
        kind=row.kind,
        status=row.status,
        reason=row.reason,
        attempts=row.attempts,
        last_reply=row.last_reply,
        message_id=row.message_id,
        transport=row.transport,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at if pending else None,
        sent_at=row.sent_at,
    )


@router.post(
    "/api/lists/{list_id}/send",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ListQueued,
    summary="Send one message to every subscribed member of a list",
)
def send_to_list(list_id: ObjectId, body: ListSendIn, session: SendSession) -> ListQueued:
    queued = service.send_to_list(
        session,
        list_id,
        template_id=str(body.template_id) if body.template_id else None,
        template=body.template.model_dump() if body.template else None,
        data=body.data,
        campaign_key=body.campaign_key,
        topic=body.topic,
    )
    return ListQueued(queued=queued)


@router.get("/api/outbox/stats", summary="Outbox rows per status")
def outbox_stats(session: SendSession) -> dict[str, int]:
    return outbox.stats(session, workspace_of(session))


class CapturedFileOut(BaseModel):
    name: str
    outbox_id: int
    captured_at: datetime
    size: int


@router.get(
    "/api/outbox/captured",
    response_model=list[CapturedFileOut],
    summary="Mail the capture transport wrote, newest first",
)
def captured_files(
    session: AdminSession,
    settings: Annotated[Settings, Depends(get_settings)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[CapturedFileOut]:
    files = maildir.list_captured(
        settings.resolved_capture_dir(), workspace_of(session), limit=limit
    )
    return [
        CapturedFileOut(name=f.name, outbox_id=f.outbox_id, captured_at=f.captured_at, size=f.size)
        for f in files
    ]


@router.get(
    "/api/outbox/captured/{name}",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}}},
    summary="One captured message, byte for byte",
)
def captured_file(
    name: Annotated[str, Path(max_length=200, pattern=r"^[0-9a-z.]+$")],
    session: AdminSession,
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    raw = maildir.read_captured(settings.resolved_capture_dir(), workspace_of(session), name)
    return Response(raw, media_type="message/rfc822")
