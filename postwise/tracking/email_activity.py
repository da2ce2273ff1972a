"""Email opens and clicks: a signed token from the message -> one labelled event.

The open pixel (``/o/{token}``) and click redirect (``/c/{token}``) carry tokens signed by
``tokens.TokenSigner`` naming the outbox row (and, for clicks, the link index). The
token is the only authority: the outbox row it names gives the workspace and contact,
so an event always lands in the workspace that sent the message. Anything that does not
verify, names no row, or names a link the message does not have returns ``None`` (the
caller answers 404 and never redirects). Each request is one read of the outbox row
(plus, for a click, one read of that contact's last seconds of clicks) and one insert,
in one short transaction of Core SQL. See docs/tracking.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from postwise.core import clock
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage
from postwise.tracking import machines
from postwise.tracking.actors import MACHINE_KEY, MACHINE_REASON_KEY
from postwise.tracking.tokens import TokenKind, TokenSigner

OPENED = "Email Opened"
CLICKED = "Email Clicked"

_OUTBOX = cast(Table, OutboxMessage.__table__)
_EVENTS = cast(Table, Event.__table__)


@dataclass(frozen=True)
class Hit:
    """What the HTTP request says about who is asking."""

    method: str
    user_agent: str
    ip: str | None


@dataclass(frozen=True)
class Recorded:
    workspace_id: int
    outbox_id: int
    machine: bool
    reason: str | None
    url: str | None = None  # clicks: where to send the browser


def _row(conn: Connection, outbox_id: int) -> Any:
    return conn.execute(
        select(
            _OUTBOX.c.id,
            _OUTBOX.c.workspace_id,
            _OUTBOX.c.contact_id,
            _OUTBOX.c.campaign_key,
            _OUTBOX.c.sent_at,
            _OUTBOX.c.links,
        ).where(_OUTBOX.c.id == outbox_id)
    ).first()


def _since(sent_at: datetime | None, now: datetime) -> float | None:
    return None if sent_at is None else (now - sent_at).total_seconds()


def _insert(
    conn: Connection, row: Any, name: str, hit: Hit, now: datetime, props: dict[str, Any]
) -> None:
    context: dict[str, Any] = {"userAgent": hit.user_agent}
    if hit.ip:
        context["ip"] = hit.ip
    conn.execute(
        insert(_EVENTS).values(
            workspace_id=row.workspace_id,
            contact_id=row.contact_id,
            type="email",
            name=name,
            properties={"outbox_id": row.id, "campaign_key": row.campaign_key, **props},
            context=context,
            occurred_at=now,
            received_at=now,
        )
    )


def record_open(db: Database, signer: TokenSigner, token: str, hit: Hit) -> Recorded | None:
    values = signer.verify(TokenKind.OPEN, token)
    if values is None or len(values) != 1:
        return None
    now = clock.utcnow()
    with db.engine.begin() as conn:
        row = _row(conn, values[0])
        if row is None:
            return None
        machine, reason = machines.classify(
            machines.Facts(hit.method, hit.user_agent, _since(row.sent_at, now), ip=hit.ip)
        )
        _insert(conn, row, OPENED, hit, now, {MACHINE_KEY: machine, MACHINE_REASON_KEY: reason})
    return Recorded(row.workspace_id, row.id, machine, reason)


def _recent_links(conn: Connection, row: Any, now: datetime) -> set[int]:
    """Link indexes of this message clicked in the last ``BURST_SECONDS``."""
    if row.contact_id is None:
        return set()
    found = conn.execute(
        select(_EVENTS.c.properties).where(
            _EVENTS.c.workspace_id == row.workspace_id,
            _EVENTS.c.contact_id == row.contact_id,
            _EVENTS.c.occurred_at >= now - timedelta(seconds=machines.BURST_SECONDS),
            _EVENTS.c.name == CLICKED,
        )
    )
    return {
        int(p["link_index"])
        for (p,) in found
        if isinstance(p, dict) and p.get("outbox_id") == row.id and "link_index" in p
    }


def record_click(db: Database, signer: TokenSigner, token: str, hit: Hit) -> Recorded | None:
    values = signer.verify(TokenKind.CLICK, token)
    if values is None or len(values) != 2:
        return None
    outbox_id, index = values
    now = clock.utcnow()
    with db.engine.begin() as conn:
        row = _row(conn, outbox_id)
        links = row.links if row is not None else None
        if not isinstance(links, list) or index >= len(links):
            return None
        url = links[index]
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            return None
        recent = _recent_links(conn, row, now) | {index}
        machine, reason = machines.classify(
            machines.Facts(
                hit.method,
                hit.user_agent,
                _since(row.sent_at, now),
                recent_distinct_links=len(recent),
                is_click=True,
                ip=hit.ip,
            )
        )
        props = {"url": url, "link_index": index, MACHINE_KEY: machine, MACHINE_REASON_KEY: reason}
        _insert(conn, row, CLICKED, hit, now, props)
    return Recorded(row.workspace_id, row.id, machine, reason, url)
