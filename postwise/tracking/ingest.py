"""Storing a checked batch: identity calls first, then every event in one INSERT.

One batch is one transaction. The identity calls (identify, group, alias) go through
the contact actions in batch order; if any is refused the caller's transaction rolls
back and nothing of the batch is stored. The events are then written with one
multi-row ``INSERT ... ON CONFLICT DO NOTHING`` (deduplicating on ``messageId``), with
Core rows rather than ORM objects: this is the hot path (docs/tracking.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select, text
from sqlalchemy.dialects import postgresql, sqlite
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


# PostgreSQL: the whole batch travels as ONE jsonb parameter (the ``Call`` objects as
# orjson writes them, about 3 microseconds an event) and is unpacked server-side, so
# Python neither compiles a statement per batch nor binds parameters per row; the contact
# of each event is resolved by the same statement (the userId's contact, else the
# anonymous id's), saving the look-up round trip. Rows keep their batch order. One row
# comes back: how many were stored, and the (contact, name) pairs that reached a contact.
_PG_INSERT = text(
    "WITH stored AS ("
    f"INSERT INTO events ({', '.join(_COLUMNS)}) "
    "SELECT :workspace_id, COALESCE(r.contact_id, cu.id, ce.id, i.contact_id), "
    f"{', '.join('r.' + c for c in _COLUMNS[2:10])}, :received_at, r.sent_at, "
    "r.original_timestamp "
    "FROM ROWS FROM (jsonb_to_recordset(CAST(:rows AS jsonb)) AS ("
    "contact_id bigint, anonymous_id text, user_id text, type text, name text, "
    "properties jsonb, context jsonb, message_id text, occurred_at timestamptz, "
    "sent_at timestamptz, original_timestamp timestamptz, user_email text)) "
    "WITH ORDINALITY AS r(contact_id, anonymous_id, user_id, type, name, properties, "
    "context, message_id, occurred_at, sent_at, original_timestamp, user_email, n) "
    "LEFT JOIN contacts cu ON cu.workspace_id = :workspace_id AND cu.external_id = r.user_id "
    "LEFT JOIN contacts ce ON ce.workspace_id = :workspace_id AND ce.email = r.user_email "
    "LEFT JOIN identities i ON i.workspace_id = :workspace_id "
    "AND i.anonymous_id = r.anonymous_id AND i.contact_id IS NOT NULL "
    "ORDER BY r.n "
    "ON CONFLICT (workspace_id, message_id) WHERE message_id IS NOT NULL DO NOTHING "
    "RETURNING contact_id, name) "
    "SELECT count(*), array_agg(contact_id) FILTER (WHERE contact_id IS NOT NULL), "
    "array_agg(name) FILTER (WHERE contact_id IS NOT NULL) FROM stored"
)
# The same statement in the driver's own parameter style, for lone batches run on a
# driver connection (the API's event-loop writer: SQLAlchemy's execution machinery cost
# about 0.3 ms of CPU per batch).
PG_INSERT_DBAPI = str(_PG_INSERT.compile(dialect=postgresql.dialect()))
_SQLITE_INSERT = sqlite.insert(Event).on_conflict_do_nothing(
    index_elements=["workspace_id", "message_id"],
    index_where=Event.message_id.is_not(None),
)


@dataclass(frozen=True)
class Encoded:
    """A batch's unique calls as the JSON rows of ``_PG_INSERT``.

    Encoding before the database wait lets the parsed objects go at once: kept alive across
    the wait, thousands per batch would be promoted and re-traversed by the cyclic garbage
    collector (measured at about 1 ms of CPU per 100-event batch).
    """

    received: int
    rows: str
    names: frozenset[str]  # the events' names, for ``alone``


def encode(calls: list[Call]) -> Encoded:
    """The PostgreSQL rows of ``calls``: the calls themselves as orjson writes them (the
    field names are the statement's columns), with the email a userId stands for."""
    unique = _unique(calls)
    for call in unique:
        if call.user_id is not None and "@" in call.user_id:
            call.user_email = identity.user_email(call.user_id)
    rows = orjson.dumps(unique).decode() if unique else ""
    return Encoded(len(calls), rows, frozenset([c.name for c in unique]))


def alone(workspace_id: int, batch: Encoded) -> bool:
    """Whether the batch is its one INSERT and nothing else: no active segment of the
    workspace can see its events' names (``segment_changes.may_matter``: as seen in the last
    two seconds; unknown counts as "may"), so no re-evaluation job would be written with it."""
    return not any(
        segment_changes.may_matter(workspace_id, segment_changes.event_key(name))
        for name in batch.names
    )


def _pg_insert(
    connection: Connection, workspace_id: int, rows: str, received_at: datetime
) -> tuple[int, list[tuple[int, str]]]:
    """Run ``_PG_INSERT``: (events stored, (contact id, change key) of those with a contact)."""
    params = {"workspace_id": workspace_id, "received_at": received_at, "rows": rows}
    count, contact_ids, names = connection.execute(_PG_INSERT, params).one()
    reached = zip(contact_ids or (), names or (), strict=True)
    pairs = [(cid, segment_changes.event_key(name)) for cid, name in reached]
    return int(count), pairs


def _insert_sqlite(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert the rows, skipping stored messageIds; how many were new.

    The (contact, event name) pairs of the new rows are noted for segment membership
    (``segments/changes.py``): one job per batch, sent when the batch commits.
    """
    result = session.connection().execute(_SQLITE_INSERT, rows)
    # Contacts were resolved in Python; a duplicate noted too only costs a no-op.
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
) -> list[dict[str, Any]]:
    return [
        {
            "workspace_id": workspace_id,
            "contact_id": contact_of(c),
            "anonymous_id": c.anonymous_id,
            "user_id": c.user_id,
            "type": c.type,
            "name": c.name,
            "properties": c.properties,
            "context": c.context,
            "message_id": c.message_id,
            "occurred_at": c.occurred_at,
            "received_at": received_at,
            "sent_at": c.sent_at,
            "original_timestamp": c.original_timestamp,
        }
        for c in calls
    ]


def needs_session(calls: list[Call], dialect: str) -> bool:
    """Whether a batch needs ``ingest`` (an ORM session) rather than ``ingest_events``:
    identity calls go through the contact actions, and SQLite resolves contacts in Python."""
    return dialect != "postgresql" or any(c.type in IDENTITY_CALLS for c in calls)


def ingest_events(
    connection: Connection, workspace_id: int, batch: Encoded, *, received_at: datetime
) -> Stored:
    """A PostgreSQL batch without identity calls (most of them), already ``encode``d: the
    one INSERT on a Core connection in the caller's transaction, no ORM session. Events
    that reached a contact are noted for segments through a session joined to the same
    transaction, only then."""
    if not batch.rows:
        return Stored(batch.received, 0)
    stored, pairs = _pg_insert(connection, workspace_id, batch.rows, received_at)
    with Session(bind=connection, join_transaction_mode="rollback_only") as session:
        tenancy.bind(session, workspace_id)
        if pairs:
            segment_changes.note_pairs(session, pairs)
            session.commit()  # sends the notes (segments' before_commit), in our transaction
        else:  # so that ``alone`` knows next time (one probe per two seconds)
            segment_changes.learn(session, workspace_id)
    return Stored(batch.received, stored)


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

    if on_postgres:
        for call in unique:
            call.contact_id = contacts.get(call.index)
        rows = encode(unique).rows
        stored, pairs = _pg_insert(session.connection(), workspace_id, rows, received_at)
        segment_changes.note_pairs(session, pairs)
        return Stored(len(calls), stored)

    def contact_of(c: Call) -> int | None:
        if c.index in contacts:
            return contacts[c.index]
        return resolver.contact_of(c.user_id, c.anonymous_id)

    return Stored(
        len(calls), _insert_sqlite(session, _rows(workspace_id, unique, received_at, contact_of))
    )


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
