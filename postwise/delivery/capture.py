"""Local mail capture: an SMTP server that keeps every message it is given, sends none.

The embedded mode (``postwise run``) points delivery here so that a laptop never mails
a real person; ``/api/captured-messages`` shows what would have gone out. A message is
filed under the workspace named by its ``X-Postwise-Workspace`` header (the delivery
pipeline adds it); mail without one, or naming no existing workspace, is kept with no
workspace and is visible to no API key.

``captured_messages`` is not ``WorkspaceOwned`` (the SMTP side writes across
workspaces), so the readers below take a workspace-bound session and filter by its
workspace themselves; no caller can forget or choose the filter.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from typing import Any

import structlog
from aiosmtpd.controller import Controller
from sqlalchemy import ColumnElement, Row, func, literal, select
from sqlalchemy.orm import Session

from postwise.core.errors import NotFound
from postwise.storage.database import Database
from postwise.storage.tables import CapturedMessage, Workspace
from postwise.storage.tenancy import workspace_of

WORKSPACE_HEADER = "X-Postwise-Workspace"
_WORKSPACE_ID = re.compile(r"[0-9]{1,18}")  # fits a signed 64-bit id on both backends
log = structlog.get_logger(__name__)


def _clean(text: str, limit: int) -> str:
    """PostgreSQL refuses NUL in text and enforces column lengths; SMTP input may have either."""
    return text.replace("\x00", "")[:limit]


def _header_text(name: str, value: str) -> str:
    """Decode RFC 2047 words and unfold; hostile input has crashed the stdlib parser."""
    try:
        return str(policy.default.header_fetch_parse(name, value))
    except Exception:
        return " ".join(value.split())


def _first_header(headers: Message, name: str) -> str | None:
    for key, value in headers.raw_items():
        if key.lower() == name.lower():
            return _header_text(key, str(value))
    return None


def _workspace_hint(headers: Message) -> int | None:
    value = (_first_header(headers, WORKSPACE_HEADER) or "").strip()
    return int(value) if _WORKSPACE_ID.fullmatch(value) else None


def store(session: Session, mail_from: str, rcpt_to: list[str], raw: bytes) -> CapturedMessage:
    """File one received message; ``session`` must be a system session (any workspace)."""
    headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    workspace_id = _workspace_hint(headers)
    if workspace_id is not None and session.get(Workspace, workspace_id) is None:
        workspace_id = None
    row = CapturedMessage(
        workspace_id=workspace_id,
        mail_from=_clean(mail_from, 320),
        rcpt_to=[_clean(r, 320) for r in rcpt_to],
        subject=_clean(" ".join((_first_header(headers, "subject") or "").split()), 1000),
        raw=raw,
    )
    session.add(row)
    session.flush()
    return row


class CaptureHandler:
    """aiosmtpd handler: accepts any sender and recipient, stores the message on DATA."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _store(self, mail_from: str, rcpt_to: list[str], raw: bytes) -> tuple[int, int | None]:
        with self.db.system() as session:
            row = store(session, mail_from, rcpt_to, raw)
            return row.id, row.workspace_id

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content or b""
        try:
            message_id, workspace_id = await asyncio.to_thread(
                self._store, envelope.mail_from or "", list(envelope.rcpt_tos), raw
            )
        except Exception:
            # A temporary failure makes the sender retry instead of losing the message.
            log.exception("capture: could not store message")
            return "451 4.3.0 Could not store the message; try again later"
        log.info(
            "mail captured",
            captured_id=message_id,
            workspace_id=workspace_id,
            recipients=len(envelope.rcpt_tos),
            size=len(raw),
        )
        return "250 2.0.0 Message captured"


class _Controller(Controller):
    """Controller that also works with port 0 (the OS picks a free port, handy in tests)."""

    def _trigger_server(self) -> None:
        sockets = getattr(self.server, "sockets", None)  # asyncio.Server, typed as Abstract
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        super()._trigger_server()


class CaptureServer:
    """The capture SMTP server on its own thread and event loop."""

    def __init__(self, db: Database, host: str = "127.0.0.1", port: int = 1025) -> None:
        # aiosmtpd logs five lines per connection at INFO; the handler logs one per message.
        mail_log = logging.getLogger("mail.log")
        if mail_log.level == logging.NOTSET:
            mail_log.setLevel(logging.WARNING)
        self._controller = _Controller(
            CaptureHandler(db), hostname=host, port=port, server_hostname="postwise-capture"
        )

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> None:
        """Bind and serve; raises ``OSError`` if the address is taken."""
        self._controller.start()
        log.info("capture SMTP server listening", host=self.host, port=self.port)

    def stop(self) -> None:
        self._controller.stop()


# --- reading, always within one workspace --------------------------------------------


@dataclass(frozen=True)
class Summary:
    id: int
    mail_from: str
    rcpt_to: list[str]
    subject: str
    received_at: datetime
    size: int


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int


@dataclass(frozen=True)
class Parsed:
    """What a reader wants from a raw message: decoded headers and the readable parts."""

    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[Attachment] = field(default_factory=list)


_SUMMARY_COLUMNS = (
    CapturedMessage.id,
    CapturedMessage.mail_from,
    CapturedMessage.rcpt_to,
    CapturedMessage.subject,
    CapturedMessage.received_at,
    func.length(CapturedMessage.raw).label("size"),
)


def _summary(row: Row[Any]) -> Summary:
    return Summary(row.id, row.mail_from, list(row.rcpt_to), row.subject, row.received_at, row.size)


def _has_recipient(session: Session, address: str) -> ColumnElement[bool]:
    """``address`` is among the recipients, ignoring case; JSON arrays differ per backend."""
    if session.get_bind().dialect.name == "postgresql":
        elements = func.jsonb_array_elements_text(CapturedMessage.rcpt_to)
    else:
        elements = func.json_each(CapturedMessage.rcpt_to)
    recipients = elements.table_valued("value").alias("recipient")
    return (
        select(literal(1))
        .select_from(recipients)
        .where(func.lower(recipients.c.value) == address.strip().lower())
        .exists()
    )


def list_messages(
    session: Session, *, to: str | None = None, before_id: int | None = None, limit: int = 50
) -> tuple[list[Summary], bool]:
    """Newest first, ``limit`` at most, ids below ``before_id``; also says if more remain."""
    query = (
        select(*_SUMMARY_COLUMNS)
        .where(CapturedMessage.workspace_id == workspace_of(session))
        .order_by(CapturedMessage.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        query = query.where(CapturedMessage.id < before_id)
    if to:
        query = query.where(_has_recipient(session, to))
    rows = [_summary(r) for r in session.execute(query)]
    return rows[:limit], len(rows) > limit


def get_message(session: Session, message_id: int) -> tuple[Summary, bytes]:
    row = session.execute(
        select(*_SUMMARY_COLUMNS, CapturedMessage.raw).where(
            CapturedMessage.id == message_id,
            CapturedMessage.workspace_id == workspace_of(session),
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"captured message {message_id} does not exist", field="id")
    return _summary(row), bytes(row.raw)


def get_raw(session: Session, message_id: int) -> bytes:
    raw = session.scalar(
        select(CapturedMessage.raw).where(
            CapturedMessage.id == message_id,
            CapturedMessage.workspace_id == workspace_of(session),
        )
    )
    if raw is None:
        raise NotFound(f"captured message {message_id} does not exist", field="id")
    return bytes(raw)


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content.replace("\r\n", "\n")
    except (LookupError, ValueError, AssertionError):  # unknown charset, bad encoding
        pass
    payload = part.get_payload(decode=True)
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return text.replace("\r\n", "\n")


def parse(raw: bytes) -> Parsed:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    headers = [(name, _header_text(name, str(value))) for name, value in message.raw_items()]
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    attachments = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        attachments.append(
            Attachment(
                part.get_filename(),
                part.get_content_type(),
                len(payload) if isinstance(payload, bytes) else 0,
            )
        )
    return Parsed(
        headers,
        _part_text(text) if text is not None else None,
        _part_text(html) if html is not None else None,
        attachments,
    )
