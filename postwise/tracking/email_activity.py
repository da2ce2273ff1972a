"""Email opens and clicks: a signed token from the message -> one labelled event.

The open pixel (``/o/{token}``) and click redirect (``/c/{token}``) carry tokens signed by
``tokens.TokenSigner`` naming the outbox row (and, for clicks, the link index). The
token is the only authority: the outbox row it names gives the workspace and contact,
so an event always lands in the workspace that sent the message. Anything that does not
verify, names no row, or names a link the message does not have returns ``None`` (the
caller answers 404 and never redirects). Each request is one read (the outbox row; for a
click joined with that contact's clicks of the last seconds) and one insert, statements of
Core SQL built once; on PostgreSQL in autocommit with the insert committed asynchronously:
two round trips and no wait for the disk. See docs/tracking.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, func, insert, select

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
    contact_id: int | None = None  # for segments, re-evaluated after the response


_COLUMNS = (
    _OUTBOX.c.id,
    _OUTBOX.c.workspace_id,
    _OUTBOX.c.contact_id,
    _OUTBOX.c.campaign_key,
    _OUTBOX.c.workflow_key,
    _OUTBOX.c.sent_at,
    _OUTBOX.c.links,
)
# Built once: constructing a statement costs more CPU than running a cached one.
_OPEN_ROW = select(*_COLUMNS).where(_OUTBOX.c.id == bindparam("outbox_id"))
# A click's row joined with that contact's clicks since ``since`` (one row with NULL
# properties when there are none): the row and the burst rule's input in one round trip.
_CLICK_ROWS = (
    select(*_COLUMNS, _EVENTS.c.properties)
    .select_from(
        _OUTBOX.outerjoin(
            _EVENTS,
            and_(
                _EVENTS.c.workspace_id == _OUTBOX.c.workspace_id,
                _EVENTS.c.contact_id == _OUTBOX.c.contact_id,
                _EVENTS.c.occurred_at >= bindparam("since"),
                _EVENTS.c.name == CLICKED,
            ),
        )
    )
    .where(_OUTBOX.c.id == bindparam("outbox_id"))
)
_INSERT = insert(_EVENTS)
_FIELDS = (
    "workspace_id",
    "contact_id",
    "type",
    "name",
    "properties",
    "context",
    "occurred_at",
    "received_at",
)
# PostgreSQL: the same insert, committed without waiting for the WAL flush. The click's
# redirect does not depend on it, and a database crash can lose at most the last fraction
# of a second of opens and clicks (wal_writer_delay); waiting for the disk is most of a
# click's latency on a busy machine. ``set_config(..., true)`` inside the statement sets
# it for the statement's own (autocommit) transaction: no extra round trip.
_INSERT_ASYNC_COMMIT = insert(_EVENTS).from_select(
    list(_FIELDS),
    select(*(bindparam(f, type_=_EVENTS.c[f].type) for f in _FIELDS)).where(
        func.set_config("synchronous_commit", "off", True).is_not(None)
    ),
)


def _since(sent_at: datetime | None, now: datetime) -> float | None:
    return None if sent_at is None else (now - sent_at).total_seconds()


def _connect(db: Database) -> Any:
    """A connection for one hit. On PostgreSQL in autocommit: the read needs no
    transaction and the insert is one, so BEGIN and COMMIT cost no round trips of their
    own. SQLite keeps its explicit ``BEGIN IMMEDIATE`` (storage/database.py)."""
    if db.dialect == "postgresql":
        return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    return db.engine.begin()


def _insert(
    conn: Connection, row: Any, name: str, hit: Hit, now: datetime, props: dict[str, Any]
) -> None:
    context: dict[str, Any] = {"userAgent": hit.user_agent}
    if hit.ip:
        context["ip"] = hit.ip
    conn.execute(
        _INSERT_ASYNC_COMMIT if conn.dialect.name == "postgresql" else _INSERT,
        {
            "workspace_id": row.workspace_id,
            "contact_id": row.contact_id,
            "type": "email",
            "name": name,
            "properties": {
                "outbox_id": row.id,
                "campaign_key": row.campaign_key,
                # segments select opens and clicks by workflow (docs/segments.md)
                **({"workflow_key": row.workflow_key} if row.workflow_key else {}),
                **props,
            },
            "context": context,
            "occurred_at": now,
            "received_at": now,
        },
    )


def record_open(db: Database, signer: TokenSigner, token: str, hit: Hit) -> Recorded | None:
    values = signer.verify(TokenKind.OPEN, token)
    if values is None or len(values) != 1:
        return None
    now = clock.utcnow()
    with _connect(db) as conn:
        row = conn.execute(_OPEN_ROW, {"outbox_id": values[0]}).first()
        if row is None:
            return None
        machine, reason = machines.classify(
            machines.Facts(hit.method, hit.user_agent, _since(row.sent_at, now), ip=hit.ip)
        )
        _insert(conn, row, OPENED, hit, now, {MACHINE_KEY: machine, MACHINE_REASON_KEY: reason})
    return Recorded(row.workspace_id, row.id, machine, reason, contact_id=row.contact_id)


def _recent_links(rows: list[Any]) -> set[int]:
    """Link indexes of this message among the clicks ``_row`` joined."""
    found: set[int] = set()
    for r in rows:
        p = r.properties
        if (
            isinstance(p, dict)
            and p.get("outbox_id") == r.id
            and isinstance(p.get("link_index"), int)
        ):
            found.add(p["link_index"])
    return found


def record_click(db: Database, signer: TokenSigner, token: str, hit: Hit) -> Recorded | None:
    values = signer.verify(TokenKind.CLICK, token)
    if values is None or len(values) != 2:
        return None
    outbox_id, index = values
    now = clock.utcnow()
    with _connect(db) as conn:
        since = now - timedelta(seconds=machines.BURST_SECONDS)
        rows = conn.execute(_CLICK_ROWS, {"outbox_id": outbox_id, "since": since}).all()
        if not rows:
            return None
        row = rows[0]
        links = row.links
        if not isinstance(links, list) or index >= len(links):
            return None
        url = links[index]
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            return None
        recent = _recent_links(rows) | {index}
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
    return Recorded(row.workspace_id, row.id, machine, reason, url, row.contact_id)
