"""``/api/captured-messages``: the mail the local capture server kept, for the caller's workspace.

Admin scope only: captured mail holds whole messages to real-looking people.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from postwise.api.dependencies import scoped_session
from postwise.core.pagination import MAX_LIMIT, decode_cursor, encode_cursor
from postwise.delivery import capture
from postwise.workspaces.scopes import Scope

router = APIRouter(prefix="/api/captured-messages", tags=["captured mail"])
AdminSession = Annotated[Session, Depends(scoped_session(Scope.ADMIN))]  # require(Scope.ADMIN)
# Ids are signed 64-bit on both backends; a larger one must be a 422, not a driver error.
MessageId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The captured message's id.")]


class CapturedMessageOut(BaseModel):
    id: int
    mail_from: str
    rcpt_to: list[str]
    subject: str
    received_at: datetime
    size: int

    @classmethod
    def of(cls, summary: capture.Summary) -> CapturedMessageOut:
        return cls(
            id=summary.id,
            mail_from=summary.mail_from,
            rcpt_to=summary.rcpt_to,
            subject=summary.subject,
            received_at=summary.received_at,
            size=summary.size,
        )


class CapturedMessagePage(BaseModel):
    data: list[CapturedMessageOut]
    next_cursor: str | None


class Header(BaseModel):
    name: str
    value: str


class AttachmentOut(BaseModel):
    filename: str | None
    content_type: str
    size: int


class CapturedMessageDetail(CapturedMessageOut):
    headers: list[Header]
    text: str | None
    html: str | None
    attachments: list[AttachmentOut]


@router.get("", response_model=CapturedMessagePage, summary="List captured mail, newest first")
def list_captured(
    session: AdminSession,
    to: Annotated[
        str | None,
        Query(max_length=320, pattern=r"^[^\x00]*$", description="Only mail to this address."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page.")
    ] = None,
) -> CapturedMessagePage:
    items, more = capture.list_messages(
        session, to=to, before_id=decode_cursor(cursor), limit=limit
    )
    return CapturedMessagePage(
        data=[CapturedMessageOut.of(s) for s in items],
        next_cursor=encode_cursor(items[-1].id) if more else None,
    )


@router.get(
    "/{message_id}", response_model=CapturedMessageDetail, summary="One captured message, parsed"
)
def get_captured(session: AdminSession, message_id: MessageId) -> CapturedMessageDetail:
    summary, raw = capture.get_message(session, message_id)
    parsed = capture.parse(raw)
    return CapturedMessageDetail(
        **CapturedMessageOut.of(summary).model_dump(),
        headers=[Header(name=n, value=v) for n, v in parsed.headers],
        text=parsed.text,
        html=parsed.html,
        attachments=[
            AttachmentOut(filename=a.filename, content_type=a.content_type, size=a.size)
            for a in parsed.attachments
        ],
    )


@router.get(
    "/{message_id}/raw",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}}},
    summary="One captured message exactly as received",
)
def get_captured_raw(session: AdminSession, message_id: MessageId) -> Response:
    return Response(
        capture.get_raw(session, message_id),
        media_type="message/rfc822",
        headers={"Content-Disposition": f'inline; filename="captured-{message_id}.eml"'},
    )
