"""Storing a checked batch: identity calls first, then every event in one INSERT.

One batch is one transaction. The identity calls (identify, group, alias) go through
the contact actions in batch order; if any is refused the caller's transaction rolls
back and nothing of the batch is stored. The events are then written with one
multi-row ``INSERT ... ON CONFLICT DO NOTHING`` (deduplicating on ``messageId``), with
Core rows rather than ORM objects: this is the hot path (docs/tracking.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from postwise.core.errors import PostwiseError, ValidationFailed
from postwise.segments import changes as segment_changes
from postwise.storage import tenancy
from postwise.storage.tables import Event
from postwise.storage.tenancy import workspace_of
from postwise.tracking import identity
from postwise.tracking.events import BadBatch, Call, EventError

IDENTITY_CALLS = {"identify": identity.identify, "alias": identity.alias, "group": identity.group}
_COLUMNS = (
    "workspace_id", "contact_id", "anonymous_id", "user_id", "type", "name", "properties",
    "context", "message_id", "occurred_at", "received_at", "sent_at", "original_timestamp",
)  # fmt: skip


@dataclass(frozen=True)
class Stored:
    received: int
    stored: int  # the rest were duplicates of stored messageIds


# PostgreSQL: the whole batch travels as ONE jsonb parameter and is unpacked server-side,
# so Python neither compiles a statement per batch nor binds 13 parameters per row; the
# contact of each event is resolved by the same statement (the userId's contact, else the
# anonymous id's), saving the look-up round trip. Rows keep their batch order.
_PG_INSERT = text(
    f"INSERT INTO events ({', '.join(_COLUMNS)}) "
    "SELECT r.workspace_id, COALESCE(r.contact_id, cu.id, ce.id, i.contact_id), "
    f"{', '.join('r.' + c for c in _COLUMNS[2:])} "
    "FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS ("
    "workspace_id bigint, contact_id bigint, anonymous_id text, user_id text, type text, "
    "name text, properties jsonb, context jsonb, message_id text, occurred_at timestamptz, "
    "received_at timestamptz, sent_at timestamptz, original_timestamp timestamptz, "
    f"user_email text)) WITH ORDINALITY AS r({', '.join(_COLUMNS)}, user_email, n) "
    "LEFT JOIN contacts cu ON cu.workspace_id = r.workspace_id AND cu.external_id = r.user_id "
    "LEFT JOIN contacts ce ON ce.workspace_id = r.workspace_id AND ce.email = r.user_email "
    "LEFT JOIN identities i ON i.workspace_id = r.workspace_id "
    "AND i.anonymous_id = r.anonymous_id AND i.contact_id IS NOT NULL "
    "ORDER BY r.n "
    "ON CONFLICT (workspace_id, message_id) WHERE message_id IS NOT NULL DO NOTHING "
    "RETURNING contact_id, name"
)
_SQLITE_INSERT = sqlite.insert(Event).on_conflict_do_nothing(
    index_elements=["workspace_id", "message_id"],
    index_where=Event.message_id.is_not(None),
)


def _rows_json(rows: list[dict[str, Any]], calls: list[Call]) -> str:
    """The rows as one JSON array for ``_PG_INSERT``. ``properties`` and ``context`` are
    spliced in as the text ``parse_batch`` already encoded (``Call.properties_json``):
    only the short scalar fields are encoded here, so no event is encoded twice."""
    texts: dict[datetime, str] = {}  # a batch shares receivedAt, sentAt and often timestamps

    def iso(value: datetime) -> str:
        text = texts.get(value)
        if text is None:
            text = texts[value] = value.isoformat()
        return text

    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=iso).encode
    parts = [
        f'{encode(row)[:-1]},"properties":{call.properties_json},"context":{call.context_json}}}'
        for row, call in zip(rows, calls, strict=True)
    ]
    return f"[{','.join(parts)}]"


def _insert(session: Session, rows: list[dict[str, Any]], calls: list[Call]) -> int:
    """Insert the rows, skipping stored messageIds; how many were new.

    The (contact, event name) pairs of the new rows are noted for segment membership
    (``segments/changes.py``): one job per batch, sent when the batch commits.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        stored = connection.execute(_PG_INSERT, {"rows": _rows_json(rows, calls)}).all()
        segment_changes.note_pairs(
            session, ((cid, segment_changes.event_key(name)) for cid, name in stored)
        )
        return len(stored)
    for row, call in zip(rows, calls, strict=True):
        row["properties"], row["context"] = call.properties, call.context
    result = connection.execute(_SQLITE_INSERT, rows)
    # SQLite: contacts were resolved in Python; a duplicate noted too only costs a no-op.
    segment_changes.note_pairs(
        session, ((r["contact_id"], segment_changes.event_key(r["name"])) for r in rows)
    )
    return int(result.rowcount)


def _unique(calls: list[Call]) -> list[Call]:
    """The calls without repeats of a messageId within the batch (the first one counts)."""
    seen: set[str] = set()
    unique: list[Call] = []
    for call in calls:
        if call.message_id is not None:
            if call.message_id in seen:
                continue
            seen.add(call.message_id)
        unique.append(call)
    return unique


def _rows(
    workspace_id: int,
    calls: list[Call],
    received_at: datetime,
    contact_of: Callable[[Call], int | None],
    *,
    on_postgres: bool,
) -> list[dict[str, Any]]:
    rows = [
        {
            "workspace_id": workspace_id,
            "contact_id": contact_of(c),
            "anonymous_id": c.anonymous_id,
            "user_id": c.user_id,
            "type": c.type,
            "name": c.name,
            "message_id": c.message_id,
            "occurred_at": c.occurred_at,
            "received_at": received_at,
            "sent_at": c.sent_at,
            "original_timestamp": c.original_timestamp,
        }
        for c in calls
    ]
    if on_postgres:
        for row, call in zip(rows, calls, strict=True):
            row["user_email"] = identity.user_email(call.user_id)
    return rows


def needs_session(calls: list[Call], dialect: str) -> bool:
    """Whether a batch needs ``ingest`` (an ORM session) rather than ``ingest_events``:
    identity calls go through the contact actions, and SQLite resolves contacts in Python."""
    return dialect != "postgresql" or any(c.type in IDENTITY_CALLS for c in calls)


def ingest_events(
    connection: Connection, workspace_id: int, calls: list[Call], *, received_at: datetime
) -> Stored:
    """A PostgreSQL batch without identity calls (most of them): the one INSERT on a Core
    connection in the caller's transaction, no ORM session. Events that reached a contact
    are noted for segments through a session joined to the same transaction, only then."""
    unique = _unique(calls)
    if not unique:
        return Stored(0, 0)
    rows = _rows(workspace_id, unique, received_at, lambda c: None, on_postgres=True)
    stored = connection.execute(_PG_INSERT, {"rows": _rows_json(rows, unique)}).all()
    pairs = [(cid, segment_changes.event_key(name)) for cid, name in stored if cid is not None]
    if pairs:
        with Session(bind=connection, join_transaction_mode="rollback_only") as session:
            tenancy.bind(session, workspace_id)
            segment_changes.note_pairs(session, pairs)
            session.commit()  # sends the notes (segments' before_commit), in our transaction
    return Stored(len(calls), len(stored))


def ingest(session: Session, calls: list[Call], *, received_at: datetime) -> Stored:
    """Apply ``calls`` (already checked by ``events.parse_batch``) in the session's workspace."""
    if not calls:
        return Stored(0, 0)
    workspace_id = workspace_of(session)
    unique = _unique(calls)
    on_postgres = session.get_bind().dialect.name == "postgresql"
    identity_calls = [c for c in unique if c.type in IDENTITY_CALLS]
    resolver = identity.Resolver()
    if identity_calls or not on_postgres:
        user_ids = {c.user_id for c in unique if c.user_id}
        anonymous_ids = {c.anonymous_id for c in unique if c.anonymous_id}
        anonymous_ids.update(c.previous_id for c in unique if c.previous_id)
        resolver = identity.Resolver.load(session, user_ids, anonymous_ids)

    contacts: dict[int, int | None] = {}
    if identity_calls:
        _apply_identity_calls(session, identity_calls, resolver, contacts)

    def contact_of(c: Call) -> int | None:
        if on_postgres or c.index in contacts:
            return contacts.get(c.index)
        return resolver.contact_of(c.user_id, c.anonymous_id)

    rows = _rows(workspace_id, unique, received_at, contact_of, on_postgres=on_postgres)
    return Stored(len(calls), _insert(session, rows, unique))


def _apply_identity_calls(
    session: Session,
    calls: list[Call],
    resolver: identity.Resolver,
    contacts: dict[int, int | None],
) -> None:
    """Run identify/alias/group in order; a retried call (its messageId stored) is skipped."""
    ids = [c.message_id for c in calls if c.message_id]
    done = (
        set(session.scalars(select(Event.message_id).where(Event.message_id.in_(ids))))
        if ids
        else set()
    )
    problems: list[EventError] = []
    for call in calls:
        if call.message_id in done:
            continue
        try:
            contacts[call.index] = IDENTITY_CALLS[call.type](session, call, resolver)
        except ValidationFailed as exc:
            problems.extend(
                EventError(call.index, e.field, e.code, e.message)
                for e in identity.field_errors(exc)
            )
        except PostwiseError as exc:
            problems.append(EventError(call.index, exc.field, exc.code, exc.message))
    if problems:
        raise BadBatch(problems)
