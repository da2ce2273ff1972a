"""Which sent message a bounce is about: the VERP token first, the returned Message-ID next.

The sending pipeline (``messages/headers.py``) sets the envelope sender to
``bounces+TOKEN@bounce-domain``, TOKEN a ``TokenKind.BOUNCE`` token naming the outbox row,
and puts the same token in the Message-ID (``<TOKEN.ID@sending-domain>``). A bounce
comes back addressed to the envelope sender, so the SMTP recipient of a DSN names the
row; an IMAP or maildir copy has lost the envelope but usually returns the original
headers (``Return-Path``, ``Message-ID``). A token is checked with the installation
secret, so a forged bounce cannot name a message it did not see. When a caller already
knows the workspace (an authenticated API key, a webhook URL), only rows of that
workspace are accepted: one tenant can never make bounces for another's mail.
See docs/bounces.md (tying).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.storage.tables import OutboxMessage
from postwise.tracking.tokens import TokenKind, TokenSigner

_VERP = re.compile(r"bounces\+([0-9a-f]{24,200})@", re.ASCII | re.IGNORECASE)
_MESSAGE_ID_TOKEN = re.compile(r"^<?([0-9A-Fa-f]{24,200})\.", re.ASCII)


@dataclass(frozen=True)
class Sent:
    """The outbox row a bounce was tied to, and how."""

    outbox_id: int
    workspace_id: int
    contact_id: int | None
    email: str
    campaign_key: str | None
    how: str  # verp | message_id


def _verified(signer: TokenSigner, token: str) -> int | None:
    values = signer.verify(TokenKind.BOUNCE, token)
    return values[0] if values is not None and len(values) == 1 else None


def outbox_id_of_address(signer: TokenSigner, address: str | None) -> int | None:
    """The outbox id in a VERP address (``bounces+TOKEN@...``), if it is one of ours."""
    match = _VERP.search(address or "")
    return _verified(signer, match.group(1)) if match else None


def outbox_id_of_message_id(signer: TokenSigner, message_id: str | None) -> int | None:
    match = _MESSAGE_ID_TOKEN.match((message_id or "").strip())
    return _verified(signer, match.group(1)) if match else None


def _message_id_forms(message_id: str) -> list[str]:
    bare = message_id.strip().strip("<>").strip()
    return [f"<{bare}>", bare] if bare else []


def _sent(row: OutboxMessage, how: str) -> Sent:
    return Sent(row.id, row.workspace_id, row.contact_id, row.email, row.campaign_key, how)


def find_sent(
    session: Session,
    signer: TokenSigner,
    *,
    addresses: Iterable[str | None] = (),
    message_id: str | None = None,
    workspace_id: int | None = None,
) -> Sent | None:
    """The outbox row named by a VERP address among ``addresses`` or by ``message_id``.

    ``session`` is a system session (the workspace is what we are finding out);
    ``workspace_id``, when the caller knows it, restricts the answer to that workspace.
    """

    def load(outbox_id: int) -> OutboxMessage | None:
        stmt = select(OutboxMessage).where(OutboxMessage.id == outbox_id)
        if workspace_id is not None:
            stmt = stmt.where(OutboxMessage.workspace_id == workspace_id)
        return session.scalar(stmt)

    for address in addresses:
        outbox_id = outbox_id_of_address(signer, address)
        row = load(outbox_id) if outbox_id is not None else None
        if row is not None:
            return _sent(row, "verp")
    if not message_id:
        return None
    outbox_id = outbox_id_of_message_id(signer, message_id)
    row = load(outbox_id) if outbox_id is not None else None
    if row is not None:
        return _sent(row, "message_id")
    forms = _message_id_forms(message_id)
    if not forms:
        return None
    stmt = select(OutboxMessage).where(OutboxMessage.message_id.in_(forms))
    if workspace_id is not None:
        stmt = stmt.where(OutboxMessage.workspace_id == workspace_id)
    row = session.scalars(stmt.order_by(OutboxMessage.id).limit(1)).first()
    return _sent(row, "message_id") if row is not None else None
