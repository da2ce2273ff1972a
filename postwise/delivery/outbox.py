"""The outbox: one row per message and recipient, from queued to a final state.

States: ``queued`` → ``sending`` (leased to one worker) → ``sent`` | ``deferred`` (back
in line at ``next_attempt_at``) | ``bounced`` (5xx, or ``expired`` after retrying too
long) | ``failed`` (the message could not be built) | ``suppressed`` (never handed to a
transport) | ``cancelled``.

Workers claim rows directly, with the technique of ``postwise/jobs/queue.py``: one short
transaction selects due rows ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite takes the
write lock), marks them ``sending`` with a lease and ``attempts + 1``, and commits. Every
later change is fenced by ``(id, locked_by, attempts, status='sending')``: a worker that
lost its lease changes nothing, and ``still_ours`` is asked right before each hand-over
to a transport, so a row is handed over by one worker at a time. A killed worker's rows
come back when their lease expires. See docs/delivery.md for why rows are not jobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    Connection,
    CursorResult,
    Table,
    and_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.errors import NotFound, ValidationFailed
from postwise.delivery.preferences import TOPIC_KEY
from postwise.segments import changes as segment_changes
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage
from postwise.storage.tenancy import workspace_of

REPLY_MAX_CHARS = 4000


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    # A paused campaign's unsent rows: never claimed (``claim`` reads queued, deferred
    # and expired sending rows only) until resume makes them queued again.
    HELD = "held"


KINDS = ("transactional", "marketing")
PENDING = (Status.QUEUED.value, Status.DEFERRED.value, Status.SENDING.value)


@dataclass(frozen=True)
class NewMessage:
    email: str
    kind: str = "transactional"
    contact_id: int | None = None
    template_id: str | None = None
    template_version: int | None = None
    data: dict[str, Any] | None = None
    list_id: int | None = None
    campaign_key: str | None = None
    workflow_key: str | None = None
    idempotency_key: str | None = None
    raw: bytes | None = None  # prebuilt bytes (tests, benchmarks, resends)
    mail_from: str | None = None
    message_id: str | None = None
    # A workspace topic (``preferences``): contacts who left it are not sent this message.
    topic: str | None = None


def _values(message: NewMessage, workspace_id: int, now: datetime) -> dict[str, Any]:
    if message.kind not in KINDS:
        raise ValidationFailed(
            f"kind must be one of {', '.join(KINDS)}", code="invalid_kind", field="kind"
        )
    if message.raw is not None and not message.mail_from:
        raise ValidationFailed("a prebuilt message needs mail_from", field="mail_from")
    return {
        "workspace_id": workspace_id,
        "contact_id": message.contact_id,
        "email": message.email,
        "kind": message.kind,
        "template_id": message.template_id,
        "template_version": message.template_version,
        "data": (
            {**(message.data or {}), TOPIC_KEY: message.topic}
            if message.topic
            else message.data or {}
        ),
        "list_id": message.list_id,
        "campaign_key": message.campaign_key,
        "workflow_key": message.workflow_key,
        "idempotency_key": message.idempotency_key,
        "raw": message.raw,
        "mail_from": message.mail_from,
        "message_id": message.message_id,
        "status": Status.QUEUED.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def enqueue(session: Session, messages: Sequence[NewMessage]) -> list[int]:
    """Queue messages in the caller's (tenant) transaction; returns their ids in order.

    A message whose ``idempotency_key`` is already in this workspace's outbox is not
    added again: its existing row's id comes back instead.
    """
    workspace_id = workspace_of(session)
    now = clock.utcnow()
    rows = [_values(m, workspace_id, now) for m in messages]
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    ids: list[int] = []
    for row in rows:
        stmt = insert_fn(OutboxMessage).values(row)
        if row["idempotency_key"] is not None:
            stmt = stmt.on_conflict_do_nothing(index_elements=["workspace_id", "idempotency_key"])
        new_id = session.execute(stmt.returning(OutboxMessage.id)).scalar_one_or_none()
        if new_id is None:
            new_id = session.scalar(
                select(OutboxMessage.id).where(
                    OutboxMessage.workspace_id == workspace_id,
                    OutboxMessage.idempotency_key == row["idempotency_key"],
                )
            )
        ids.append(int(cast(int, new_id)))
    return ids


@dataclass(frozen=True)
class Claimed:
    """A row this worker holds: ``(id, worker_id, attempt)`` is the fence."""

    id: int
    workspace_id: int
    contact_id: int | None
    email: str
    kind: str
    list_id: int | None
    template_id: str | None
    data: dict[str, Any]
    raw: bytes | None
    mail_from: str | None
    message_id: str | None
    attempt: int
    first_attempt_at: datetime
    worker_id: str
    campaign_key: str | None = None  # copied onto the row's email events for segments
    workflow_key: str | None = None

    @property
    def domain(self) -> str:
        return self.email.rsplit("@", 1)[-1].lower()


def claim(
    db: Database,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    *,
    now: datetime | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due rows (queued or deferred and due, or sending with an
    expired lease) to ``worker_id`` in one short transaction."""
    now = now or clock.utcnow()
    # Two reads: rows whose lease expired (rare; ``ix_outbox_lease``), then queued or
    # deferred rows that are due, read off the front of ``ix_outbox_claim`` in its own
    # order. One read with an OR of the three made the database collect and sort every
    # due row for each claim (12 ms per claim of 200 with 20,000 queued).
    expired = (
        select(OutboxMessage)
        .where(OutboxMessage.status == Status.SENDING.value, OutboxMessage.lease_expires_at < now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    # Written out, not bound: the planner must see the partial index's own predicate.
    waiting = text("outbox.status IN ('queued', 'deferred')")
    if db.dialect == "postgresql":
        expired = expired.with_for_update(skip_locked=True)
    with db.system() as session:
        rows = list(session.scalars(expired).all())
        if len(rows) < limit:
            due = (
                select(OutboxMessage)
                .where(waiting, OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(limit - len(rows))
            )
            if db.dialect == "postgresql":
                due = due.with_for_update(skip_locked=True)
            rows += session.scalars(due).all()
        if not rows:
            return []
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_([r.id for r in rows]))
            .values(
                status=Status.SENDING.value,
                locked_by=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=OutboxMessage.attempts + 1,
                first_attempt_at=func.coalesce(OutboxMessage.first_attempt_at, now),
            )
            .execution_options(synchronize_session=False)
        )
        return [
            Claimed(
                id=r.id,
                workspace_id=r.workspace_id,
                contact_id=r.contact_id,
                email=r.email,
                kind=r.kind,
                list_id=r.list_id,
                template_id=r.template_id,
                data=dict(r.data or {}),
                raw=bytes(r.raw) if r.raw is not None else None,
                mail_from=r.mail_from,
                message_id=r.message_id,
                attempt=r.attempts + 1,
                first_attempt_at=clock.as_utc(r.first_attempt_at or now),
                worker_id=worker_id,
                campaign_key=r.campaign_key,
                workflow_key=r.workflow_key,
            )
            for r in rows
        ]


def still_ours(session: Session | Connection, row: Claimed) -> bool:
    """Asked right before a hand-over: the lease holds and nobody suppressed the row."""
    conn = session.connection() if isinstance(session, Session) else session
    found = conn.execute(_STILL_OURS, _fence_params(row))
    return found.first() is not None


def fenced(conn: Connection, rows: Sequence[Claimed]) -> set[int]:
    """``still_ours`` for many rows in one read: the ids whose lease still holds (same
    worker, same attempt, still ``sending``: not suppressed by an unsubscribe since)."""
    if not rows:
        return set()
    wanted = {r.id: r.attempt for r in rows}
    found = conn.execute(_FENCED, {"ids": list(wanted), "worker": rows[0].worker_id}).all()
    return {int(i) for i, attempts in found if wanted.get(int(i)) == attempts}


def release(session: Session, rows: Sequence[tuple[Claimed, datetime]]) -> int:
    """Give claimed rows back untried (a stop, or a pace wait past the drain's deadline):
    ``queued`` again and due at the given time (when its pace would have let it go), the
    claim's ``attempts + 1`` undone, a first claim's ``first_attempt_at`` cleared.
    Fenced: a row taken over meanwhile is left alone."""
    if not rows:
        return 0
    params = [
        {
            **_fence_params(r),
            "v_first": None if r.attempt == 1 else r.first_attempt_at,
            "v_next": due,
        }
        for r, due in rows
    ]
    result = session.connection().execute(_RELEASE, params)
    return cast(CursorResult[Any], result).rowcount


def extend_leases(
    session: Session, worker_id: str, rows: Iterable[Claimed], lease_seconds: float
) -> int:
    ids = [(r.id) for r in rows]
    if not ids:
        return 0
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.locked_by == worker_id,
            OutboxMessage.status == Status.SENDING.value,
        )
        .values(lease_expires_at=clock.utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount


_TABLE = cast(Table, OutboxMessage.__table__)
_EVENTS = cast(Table, Event.__table__)


# Prebuilt statements with bound parameters: these run once or twice per message, and
# building the expression each time (coercion, cache key) cost ~0.3-0.7 ms of CPU per
# message (cProfile, benchmarks/send_pipeline.py); now only the parameters change.
_FENCE = and_(
    _TABLE.c.id == bindparam("f_id"),
    _TABLE.c.locked_by == bindparam("f_worker"),
    _TABLE.c.attempts == bindparam("f_attempt"),
    _TABLE.c.status == Status.SENDING.value,
)
_STILL_OURS = select(_TABLE.c.id).where(_FENCE)
_FENCED = select(_TABLE.c.id, _TABLE.c.attempts).where(
    _TABLE.c.id.in_(bindparam("ids", expanding=True)),
    _TABLE.c.locked_by == bindparam("worker"),
    _TABLE.c.status == Status.SENDING.value,
)
_RELEASE = (
    _TABLE.update()
    .where(_FENCE)
    .values(
        status=Status.QUEUED.value,
        locked_by=None,
        lease_expires_at=None,
        attempts=_TABLE.c.attempts - 1,
        first_attempt_at=bindparam("v_first", type_=_TABLE.c.first_attempt_at.type),
        next_attempt_at=bindparam("v_next", type_=_TABLE.c.next_attempt_at.type),
    )
)
_SETTLES: dict[tuple[str, ...], Any] = {}


def _fence_params(row: Claimed) -> dict[str, Any]:
    return {"f_id": row.id, "f_worker": row.worker_id, "f_attempt": row.attempt}


def _settle_statement(keys: tuple[str, ...]) -> Any:
    stmt = _SETTLES.get(keys)
    if stmt is None:
        stmt = _SETTLES[keys] = (
            _TABLE.update()
            .where(_FENCE)
            .values({k: bindparam(f"v_{k}", type_=_TABLE.c[k].type) for k in keys})
        )
    return stmt


def _settle(session: Session, row: Claimed, values: dict[str, Any]) -> bool:
    # Core on the session's connection: this runs once per message, and the ORM's
    # per-statement work (tenancy criteria, compilation) was most of its CPU cost. The
    # fence names the row by id, so no workspace filter is needed.
    values = {"locked_by": None, "lease_expires_at": None, **values}
    if values.get("last_reply") is not None:
        values["last_reply"] = str(values["last_reply"])[:REPLY_MAX_CHARS]
    keys = tuple(sorted(values))
    params = {**_fence_params(row), **{f"v_{k}": values[k] for k in keys}}
    result = session.connection().execute(_settle_statement(keys), params)
    return result.rowcount == 1


_EVENT_FIELDS = (
    "workspace_id",
    "contact_id",
    "type",
    "name",
    "properties",
    "context",
    "message_id",
    "occurred_at",
    "received_at",
)
_EVENT_INSERTS: dict[str, Any] = {}


def _event_insert(dialect: str) -> Any:
    stmt = _EVENT_INSERTS.get(dialect)
    if stmt is None:
        insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = _EVENT_INSERTS[dialect] = (
            insert_fn(_EVENTS)
            .values({f: bindparam(f, type_=_EVENTS.c[f].type) for f in _EVENT_FIELDS})
            .on_conflict_do_nothing(
                index_elements=["workspace_id", "message_id"],
                index_where=_EVENTS.c.message_id.is_not(None),
            )
        )
    return stmt


def _event_values(
    row: Claimed, name: str, key: str, properties: dict[str, Any], now: datetime
) -> dict[str, Any]:
    keys = {"campaign_key": row.campaign_key, "workflow_key": row.workflow_key}
    return {
        "workspace_id": row.workspace_id,
        "contact_id": row.contact_id,
        "type": "email",
        "name": name,
        "properties": {
            "outbox_id": row.id,
            "email": row.email,
            **{k: v for k, v in keys.items() if v is not None},
            **properties,
        },
        "context": {},
        "message_id": f"outbox:{row.id}:{key}",
        "occurred_at": now,
        "received_at": now,
    }


def _event(session: Session, row: Claimed, name: str, key: str, properties: dict[str, Any]) -> None:
    """An ``email`` event for timelines and segments; ``message_id`` makes a redo a no-op.

    The campaign and workflow keys ride along so a segment such as "opened campaign X"
    or "was sent workflow Y" reads the event alone (docs/segments.md#email-engagement).
    """
    values = _event_values(row, name, key, properties, clock.utcnow())
    connection = session.connection()
    connection.execute(_event_insert(connection.dialect.name), values)
    segment_changes.note(
        session, [row.contact_id], [segment_changes.event_key(name)], workspace_id=row.workspace_id
    )


def mark_sent(
    session: Session,
    row: Claimed,
    *,
    message_id: str | None,
    transport: str,
    reply: str,
    final_hop: bool,
    links: Sequence[str] | None = None,
) -> bool:
    now = clock.utcnow()
    values: dict[str, Any] = {
        "status": Status.SENT.value,
        "sent_at": now,
        "last_reply": reply,
        "message_id": message_id,
        "transport": transport,
        "reason": None,
    }
    if links:
        values["links"] = list(links)
    if not _settle(session, row, values):
        return False
    props = {"message_id": message_id, "transport": transport, "reply": reply}
    _event(session, row, "Email Sent", "sent", props)
    if final_hop:
        _event(session, row, "Email Delivered", "delivered", props)
    return True


@dataclass(frozen=True)
class Accepted:
    """One delivery the next hop accepted, waiting to be settled as ``sent``."""

    row: Claimed
    message_id: str | None
    transport: str
    reply: str
    links: Sequence[str] | None = None


# PostgreSQL: a whole group settled by one UPDATE over unnested arrays (one statement,
# one plan, parameters that do not grow with the group), fenced per row in its WHERE.
_SENT_MANY = text(
    """
    UPDATE outbox AS o
    SET status = 'sent', sent_at = :now, last_reply = u.reply, message_id = u.mid,
        transport = u.transport, reason = NULL, links = u.links::jsonb,
        locked_by = NULL, lease_expires_at = NULL
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:attempts AS integer[]), CAST(:replies AS text[]),
        CAST(:mids AS text[]), CAST(:transports AS text[]), CAST(:links AS text[])
    ) AS u(id, attempts, reply, mid, transport, links)
    WHERE o.id = u.id AND o.locked_by = :worker AND o.attempts = u.attempts
      AND o.status = 'sending'
    RETURNING o.id
    """
)


# The group's events the same way: one INSERT ... SELECT over unnested arrays, redo-safe
# by message_id like the single-row insert.
_EVENTS_MANY = text(
    """
    INSERT INTO events (workspace_id, contact_id, type, name, properties, context, message_id,
                        occurred_at, received_at)
    SELECT :ws, u.contact_id, 'email', u.name, u.props::jsonb, '{}'::jsonb, u.mid, :now, :now
    FROM unnest(
        CAST(:contacts AS bigint[]), CAST(:names AS text[]), CAST(:props AS text[]),
        CAST(:mids AS text[])
    ) AS u(contact_id, name, props, mid)
    ON CONFLICT (workspace_id, message_id) WHERE message_id IS NOT NULL DO NOTHING
    """
)


def mark_sent_many(session: Session, accepted: Sequence[Accepted], *, final_hop: bool) -> set[int]:
    """Settle a group of accepted deliveries of one workspace as ``sent`` and write their
    events: on PostgreSQL one fenced UPDATE and one INSERT for the whole group
    (SQLite: ``mark_sent`` per row). Returns the ids settled; the others lost their lease."""
    if not accepted:
        return set()
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return {
            a.row.id
            for a in accepted
            if mark_sent(
                session,
                a.row,
                message_id=a.message_id,
                transport=a.transport,
                reply=a.reply,
                final_hop=final_hop,
                links=a.links,
            )
        }
    now = clock.utcnow()
    settled = {
        int(i)
        for (i,) in connection.execute(
            _SENT_MANY,
            {
                "now": now,
                "worker": accepted[0].row.worker_id,
                "ids": [a.row.id for a in accepted],
                "attempts": [a.row.attempt for a in accepted],
                "replies": [a.reply[:REPLY_MAX_CHARS] for a in accepted],
                "mids": [a.message_id for a in accepted],
                "transports": [a.transport for a in accepted],
                "links": [json.dumps(list(a.links)) if a.links else None for a in accepted],
            },
        )
    }
    names = (("Email Sent", "sent"), ("Email Delivered", "delivered"))[: 2 if final_hop else 1]
    events = []
    for a in accepted:
        if a.row.id not in settled:
            continue
        props = {"message_id": a.message_id, "transport": a.transport, "reply": a.reply}
        for name, key in names:
            events.append(_event_values(a.row, name, key, props, now))
    if events:
        connection.execute(
            _EVENTS_MANY,
            {
                "ws": accepted[0].row.workspace_id,
                "now": now,
                "contacts": [e["contact_id"] for e in events],
                "names": [e["name"] for e in events],
                "props": [json.dumps(e["properties"]) for e in events],
                "mids": [e["message_id"] for e in events],
            },
        )
        segment_changes.note_pairs(
            session,
            [(e["contact_id"], segment_changes.event_key(e["name"])) for e in events],
            workspace_id=accepted[0].row.workspace_id,
        )
    return settled


def mark_deferred(
    session: Session,
    row: Claimed,
    *,
    next_attempt_at: datetime,
    reply: str,
    transport: str,
    message_id: str | None = None,
) -> bool:
    """A 4xx: retried later. The first deferral of a message writes ``Email Deferred``
    (later ones are no-ops by its ``message_id``), so reports count messages deferred."""
    if not _settle(
        session,
        row,
        {
            "status": Status.DEFERRED.value,
            "next_attempt_at": next_attempt_at,
            "last_reply": reply,
            "transport": transport,
            "reason": "deferred",
            "message_id": message_id,
        },
    ):
        return False
    props = {"reply": reply, "transport": transport, "attempt": row.attempt}
    _event(session, row, "Email Deferred", "deferred", props)
    return True


def mark_bounced(
    session: Session,
    row: Claimed,
    *,
    code: int | None,
    enhanced_code: str | None,
    reply: str,
    phase: str,
    transport: str,
    reason: str = "rejected",
    message_id: str | None = None,
) -> bool:
    """A 5xx at send time, or ``reason='expired'``; the bounce intake reads the event."""
    if not _settle(
        session,
        row,
        {
            "status": Status.BOUNCED.value,
            "last_reply": reply,
            "transport": transport,
            "reason": reason,
            "message_id": message_id,
        },
    ):
        return False
    _event(
        session,
        row,
        "Email Bounced",
        "bounced",
        {
            "reply": reply,
            "code": code,
            "enhanced_code": enhanced_code,
            "phase": phase,
            "reason": reason,
            "transport": transport,
            "message_id": message_id,
        },
    )
    return True


def mark_failed(session: Session, row: Claimed, error: str) -> bool:
    return _settle(
        session, row, {"status": Status.FAILED.value, "last_reply": error, "reason": "build"}
    )


def mark_suppressed(session: Session, row: Claimed, reason: str) -> bool:
    return _settle(session, row, {"status": Status.SUPPRESSED.value, "reason": reason[:64]})


def suppress_pending_for_contact(
    session: Session, contact_id: int, *, marketing_only: bool, list_id: int | None = None
) -> int:
    """Unsubscribe, bounce or complaint: rows not yet sent never go (leased ones included,
    which makes their worker's ``still_ours`` check fail before the hand-over)."""
    stmt = update(OutboxMessage).where(
        OutboxMessage.workspace_id == workspace_of(session),
        OutboxMessage.contact_id == contact_id,
        OutboxMessage.status.in_(PENDING),
    )
    if marketing_only:
        stmt = stmt.where(OutboxMessage.kind == "marketing")
    if list_id is not None:
        stmt = stmt.where(OutboxMessage.list_id == list_id)
    result = session.execute(
        stmt.values(
            status=Status.SUPPRESSED.value,
            reason="unsubscribed",
            locked_by=None,
            lease_expires_at=None,
        ).execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], result).rowcount


def get_message(session: Session, outbox_id: int) -> OutboxMessage:
    row = session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.id == outbox_id, OutboxMessage.workspace_id == workspace_of(session)
        )
    )
    if row is None:
        raise NotFound(f"outbox message {outbox_id} does not exist", field="id")
    return row


def stats(session: Session, workspace_id: int | None = None) -> dict[str, int]:
    """Rows per status, for one workspace or (system session) all."""
    query = select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    if workspace_id is not None:
        query = query.where(OutboxMessage.workspace_id == workspace_id)
    return {status: int(n) for status, n in session.execute(query)}


def sent_since(session: Session, since: datetime) -> int:
    """Rows handed over and accepted since ``since``, in every workspace (warm-up)."""
    return int(
        session.scalar(
            select(func.count()).where(
                OutboxMessage.status == Status.SENT.value, OutboxMessage.sent_at >= since
            )
        )
        or 0
    )


def next_due(session: Session) -> datetime | None:
    """When the next row falls due (system session): a queued or deferred row's next
    attempt, or the lease expiry of a row a (possibly dead) worker holds."""
    waiting = session.scalar(
        select(func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.status.in_([Status.QUEUED.value, Status.DEFERRED.value])
        )
    )
    leased = session.scalar(
        select(func.min(OutboxMessage.lease_expires_at)).where(
            OutboxMessage.status == Status.SENDING.value
        )
    )
    times = [clock.as_utc(v) for v in (waiting, leased) if v is not None]
    return min(times) if times else None
