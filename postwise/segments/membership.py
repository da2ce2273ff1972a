"""Who is in each segment, and when they came and went.

Two ways in, one way to write:

* ``refresh`` recomputes a whole segment: the compiled SQL (``compiler.compile_members``)
  gives the members now, the open stays give the members stored; the difference is
  written in batches of ``BATCH``.
* ``reevaluate`` takes the contacts a transaction changed (``changes``) and re-runs, for
  those contacts only, the segments whose references can see the change: the same
  compiled SQL restricted to ``contact_ids``, so real-time and full refresh can never
  disagree. Segments are visited in dependency order; a contact whose membership
  changed in segment S is re-evaluated in every segment that references S. For
  account-level (ABM) segments the contact's colleagues (same company) are
  re-evaluated too, since one person's act can tip their whole account.

Every entry inserts a stay (``segment_memberships`` with ``exited_at`` NULL) and a
``segment.entered`` event; every exit closes the stay and writes ``segment.exited``.
The insert skips a stay another worker opened meanwhile (the partial unique index) and
the exit only counts stays it closed itself, so two concurrent evaluations never emit
an event twice. See docs/segments.md.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import structlog
from sqlalchemy import String, Table, bindparam, column, func, insert, select, text, update
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postwise.core.clock import utcnow
from postwise.core.errors import NotFound
from postwise.core.pagination import Page, check_limit, decode_cursor, encode_cursor
from postwise.segments import catalog, changes
from postwise.segments.compiler import compile_members, without_jit
from postwise.segments.evaluator import evaluate
from postwise.segments.facts import ContactFacts, load_facts
from postwise.segments.references import References, merged
from postwise.storage.tables import Contact, Event, Segment, SegmentMembership
from postwise.storage.tenancy import workspace_of

log = structlog.get_logger(__name__)

BATCH = 2000
# Up to this many contacts per segment are decided in memory (``matching``).
EVALUATE_AT_MOST = 20
ENTERED = "segment.entered"
EXITED = "segment.exited"
EVENT_TYPE = "segment"


@dataclass(frozen=True)
class Moves:
    """What one evaluation changed in one segment."""

    segment_id: int
    entered: list[int] = field(default_factory=list)
    exited: list[int] = field(default_factory=list)

    @property
    def moved(self) -> set[int]:
        return {*self.entered, *self.exited}


@dataclass(frozen=True)
class RefreshResult:
    segment_id: int
    members: int
    entered: int
    exited: int
    seconds: float


def _chunks(ids: Sequence[int], size: int = BATCH) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _events(
    segment: catalog.Loaded | Segment, name: str, contact_ids: Sequence[int], now: datetime
) -> list[dict[str, Any]]:
    props = {"segment_id": segment.id, "segment": segment.name, "version": segment.version}
    return [
        {
            "workspace_id": segment.workspace_id,
            "contact_id": cid,
            "type": EVENT_TYPE,
            "name": name,
            "properties": props,
            "context": {},
            "occurred_at": now,
            "received_at": now,
        }
        for cid in contact_ids
    ]


# Core statements on the session's connection, run as executemany: compiled once and
# cached (a multi-row VALUES would compile anew for every batch size), and outside the
# ORM's bulk machinery, which costs more than the insert itself at these volumes.
_STAYS = cast(Table, SegmentMembership.__table__)
_EVENTS = cast(Table, Event.__table__)
_SEGMENTS = cast(Table, Segment.__table__)
_EXIT = (
    update(_STAYS)
    .where(
        _STAYS.c.segment_id == bindparam("segment"),
        _STAYS.c.contact_id.in_(bindparam("contacts", expanding=True)),
        _STAYS.c.exited_at.is_(None),
    )
    .values(exited_at=bindparam("now"))
    .returning(_STAYS.c.contact_id)
)


def _build_stay_insert(dialect: str) -> Any:
    ins: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        ins(_STAYS)
        .on_conflict_do_nothing(
            index_elements=["segment_id", "contact_id"],
            index_where=_STAYS.c.exited_at.is_(None),
        )
        .returning(_STAYS.c.contact_id)
    )


_STAY_INSERTS = {dialect: _build_stay_insert(dialect) for dialect in ("postgresql", "sqlite")}


def _stay_insert(dialect: str) -> Any:
    """One INSERT of a stay, skipping a contact whose stay another worker just opened."""
    return _STAY_INSERTS[dialect]


def _enter(
    session: Session, segment: catalog.Loaded | Segment, contact_ids: Sequence[int], now: datetime
) -> list[int]:
    entered: list[int] = []
    connection = session.connection()
    stmt = _stay_insert(connection.dialect.name)
    for chunk in _chunks(sorted(contact_ids)):
        rows = [
            {
                "workspace_id": segment.workspace_id,
                "segment_id": segment.id,
                "contact_id": cid,
                "entered_at": now,
            }
            for cid in chunk
        ]
        done = sorted(int(c) for c in connection.execute(stmt, rows).scalars())
        if done:
            connection.execute(insert(_EVENTS), _events(segment, ENTERED, done, now))
            # Workflows trigger on these events; the note routes them like tracked ones.
            changes.note(
                session, done, [changes.event_key(ENTERED)], workspace_id=segment.workspace_id
            )
        entered.extend(done)
    return entered


def _exit(
    session: Session, segment: catalog.Loaded | Segment, contact_ids: Sequence[int], now: datetime
) -> list[int]:
    exited: list[int] = []
    connection = session.connection()
    for chunk in _chunks(sorted(contact_ids)):
        found = connection.execute(_EXIT, {"segment": segment.id, "contacts": chunk, "now": now})
        done = sorted(int(c) for c in found.scalars())
        if done:
            connection.execute(insert(_EVENTS), _events(segment, EXITED, done, now))
            changes.note(
                session, done, [changes.event_key(EXITED)], workspace_id=segment.workspace_id
            )
        exited.extend(done)
    return exited


_COUNT = (
    update(_SEGMENTS)
    .where(_SEGMENTS.c.id == bindparam("segment"))
    .values(member_count=_SEGMENTS.c.member_count + bindparam("delta"))
)
_CURRENT = select(_STAYS.c.contact_id).where(
    _STAYS.c.segment_id == bindparam("segment"), _STAYS.c.exited_at.is_(None)
)
_CURRENT_AMONG = _CURRENT.where(_STAYS.c.contact_id.in_(bindparam("contacts", expanding=True)))


# Advisory lock keys of segment decisions: a fixed high tag ORed with the contact id,
# so they cannot meet another feature's locks (ids stay far below 2**48). Segments have
# keys of their own, above every contact key: a refresh holds its segment's (and its
# dependents') exclusively, a real-time job shares those of the segments it may write.
_LOCK_SPACE = 0x5E67 << 48
_SEGMENT_LOCK_SPACE = 0x5E68 << 48
# Taken in key order (contacts first), so two jobs, or a job and a refresh, cannot deadlock.
_LOCK_SQL = (
    "SELECT CASE WHEN k.shared THEN pg_advisory_xact_lock_shared(k.key) "
    "ELSE pg_advisory_xact_lock(k.key) END AS taken "
    "FROM unnest(CAST(:keys AS bigint[]), CAST(:shared AS boolean[])) AS k(key, shared) "
    "ORDER BY k.key"
)
_LOCK = text(_LOCK_SQL)
# The same locks as a column of the catalog's stamp statement (``catalog.load(rider=)``):
# a job that some segment wants saves a round trip.
_LOCK_COLUMN = (
    select(func.count())
    .select_from(text(_LOCK_SQL).columns(column("taken")).subquery("locks"))
    .scalar_subquery()
)


def _lock_params(exclusive: Sequence[int], shared: Sequence[int] = ()) -> dict[str, Any]:
    keys = sorted({*exclusive, *shared})
    wanted = set(shared) - set(exclusive)
    return {"keys": keys, "shared": [k in wanted for k in keys]}


def _take_locks(session: Session, exclusive: Sequence[int], shared: Sequence[int] = ()) -> None:
    session.connection().execute(_LOCK, _lock_params(exclusive, shared))


def _triggered(segments: Sequence[catalog.Loaded], contacts: Mapping[int, set[str]]) -> set[int]:
    return {s.id for s in segments if any(s.triggered_by(k) for k in contacts.values())}


def _downstream(segments: Sequence[catalog.Loaded], ids: Iterable[int]) -> set[int]:
    """These segments and every active segment that uses them, directly or not."""
    found = set(ids)
    grew = True
    while grew:
        more = {s.id for s in segments if s.id not in found and s.uses_segments & found}
        found |= more
        grew = bool(more)
    return found


def _segment_keys(ids: Iterable[int]) -> list[int]:
    return [_SEGMENT_LOCK_SPACE | int(sid) for sid in ids]


_OPEN_OF = select(_STAYS.c.contact_id, _STAYS.c.segment_id).where(
    _STAYS.c.workspace_id == bindparam("workspace"),
    _STAYS.c.contact_id.in_(bindparam("contacts", expanding=True)),
    _STAYS.c.exited_at.is_(None),
)
Stays = dict[int, set[int]]  # contact id -> segment ids with an open stay


def _open_stays(session: Session, workspace_id: int, contact_ids: Sequence[int]) -> Stays:
    """Every open stay of these contacts, all segments at once: one statement per job
    instead of one per (segment, job) (the (workspace, contact) index serves it)."""
    out: Stays = {int(cid): set() for cid in contact_ids}
    connection = session.connection()
    for chunk in _chunks(sorted(out)):
        found = connection.execute(_OPEN_OF, {"workspace": workspace_id, "contacts": chunk})
        for cid, sid in found:
            out[int(cid)].add(int(sid))
    return out


def _count_delta(session: Session, segment_id: int, delta: int) -> None:
    if delta:
        session.connection().execute(_COUNT, {"segment": segment_id, "delta": delta})


def current_members(
    session: Session, segment_id: int, contact_ids: Sequence[int] | None = None
) -> set[int]:
    """Contacts with an open stay (all, or among ``contact_ids``); the caller has checked
    that the segment is the session's workspace's."""
    connection = session.connection()
    if contact_ids is None:
        return {int(c) for c in connection.execute(_CURRENT, {"segment": segment_id}).scalars()}
    found: set[int] = set()
    for chunk in _chunks(sorted(contact_ids)):
        rows = connection.execute(_CURRENT_AMONG, {"segment": segment_id, "contacts": chunk})
        found.update(int(c) for c in rows.scalars())
    return found


@dataclass
class Shared:
    """What one job reads once for all the segments it decides (``segments``): each
    contact's facts, loaded for all their references at once, and its open stays, read
    in the same statement as its contact row."""

    segments: frozenset[int]
    refs: References
    facts: dict[int, ContactFacts | None] = field(default_factory=dict)
    stays: Stays = field(default_factory=dict)

    @classmethod
    def of(cls, segments: Sequence[catalog.Loaded], ids: set[int]) -> Shared:
        chosen = tuple(s for s in segments if s.id in ids)
        key = tuple(s.id for s in chosen)
        with _merged_lock:
            found = _merged.get(key)
            if found is None or any(a is not b for a, b in zip(found[0], chosen, strict=True)):
                # parsed segments are cached objects: same objects, same references
                found = (chosen, merged([s.refs for s in chosen]))
                _merged[key] = found
                while len(_merged) > 1024:
                    _merged.popitem(last=False)
        return cls(frozenset(ids), found[1])

    def forget(self, contact_ids: Iterable[int]) -> None:
        """Facts read before this job wrote segment events that some segment reads."""
        if {ENTERED, EXITED} & self.refs.all_event_names:
            for cid in contact_ids:
                self.facts.pop(cid, None)


# segment ids -> (those parsed segments, their merged references): one object per set,
# so the fact load's statement, built per references object, is built once.
_merged: OrderedDict[tuple[int, ...], tuple[tuple[catalog.Loaded, ...], References]] = OrderedDict()
_merged_lock = threading.Lock()
_OPEN_LABEL = "postwise_open_segments"


# The contact's open stays as one text column of its row ("3,7"), read with it.
_OPEN_COLUMN = (
    select(func.aggregate_strings(cast_(_STAYS.c.segment_id, String()), ","))
    .where(
        _STAYS.c.workspace_id == bindparam("ws"),
        _STAYS.c.contact_id == cast(Table, Contact.__table__).c.id,
        _STAYS.c.exited_at.is_(None),
    )
    .scalar_subquery()
)
_WITH_STAYS = {_OPEN_LABEL: _OPEN_COLUMN}


def _facts(
    session: Session, workspace_id: int, contact_id: int, now: datetime, shared: Shared
) -> ContactFacts | None:
    if contact_id in shared.facts:
        return shared.facts[contact_id]
    try:
        # Core on the session's connection: the statement names its workspace itself,
        # and the ORM's tenancy criteria would cost more than the read.
        facts = load_facts(
            session.connection(), workspace_id, contact_id, now, shared.refs, extra=_WITH_STAYS
        )
    except NotFound:
        facts = None  # deleted meanwhile: its stays went with it
    if facts is not None:
        row = cast(dict[str, Any], facts.contact)
        listed = row.pop(_OPEN_LABEL, None)
        if contact_id not in shared.stays:
            shared.stays[contact_id] = {int(x) for x in str(listed or "").split(",") if x}
    shared.facts[contact_id] = facts
    return facts


def _holds(
    session: Session,
    segment: catalog.Loaded,
    contact_id: int,
    now: datetime,
    shared: Shared | None = None,
) -> bool:
    if shared is not None and segment.id in shared.segments:
        facts = _facts(session, segment.workspace_id, contact_id, now, shared)
        return facts is not None and evaluate(segment.definition, facts, now)
    try:
        found = load_facts(session, segment.workspace_id, contact_id, now, segment.refs)
    except NotFound:
        return False  # deleted meanwhile: its stays went with it
    return evaluate(segment.definition, found, now)


def matching(
    session: Session,
    segment: catalog.Loaded,
    *,
    now: datetime,
    contact_ids: Sequence[int] | None = None,
    by_sql: bool = False,
    shared: Shared | None = None,
) -> set[int]:
    """Contacts that match the definition now (all of them, or among ``contact_ids``).

    A few contacts are decided by the evaluator from their own facts (index probes by
    contact), many by the compiled SQL restricted to them (``by_sql`` forces it).
    """
    if contact_ids is None:
        stmt = compile_members(segment.definition, workspace_id=segment.workspace_id, now=now)
        return {int(c) for c in session.scalars(stmt)}
    if len(contact_ids) <= EVALUATE_AT_MOST and not by_sql:
        return {cid for cid in set(contact_ids) if _holds(session, segment, cid, now, shared)}
    found: set[int] = set()
    for chunk in _chunks(sorted(contact_ids)):
        stmt = compile_members(
            segment.definition, workspace_id=segment.workspace_id, now=now, contact_ids=chunk
        )
        found.update(int(c) for c in session.scalars(stmt))
    return found


def apply(
    session: Session,
    segment: catalog.Loaded,
    contact_ids: Sequence[int],
    *,
    now: datetime,
    stays: Stays | None = None,
    shared: Shared | None = None,
) -> Moves:
    """Re-evaluate ``segment`` for these contacts only and record who entered or left.

    ``stays`` (the contacts' open stays, read once per job with their facts or by
    ``_open_stays``) saves the per-segment read of current members; contacts it lacks
    are read into it, and it is kept current with what this call writes. ``shared``:
    the job's facts, loaded once for all its segments.
    """
    ids = sorted(set(contact_ids))
    if not ids:
        return Moves(segment.id)
    if shared is not None:
        stays = shared.stays
    should = matching(session, segment, now=now, contact_ids=ids, shared=shared)
    if stays is None:
        stored = current_members(session, segment.id, ids)
    else:
        missing = [cid for cid in ids if cid not in stays]
        if missing:
            stays.update(_open_stays(session, segment.workspace_id, missing))
        stored = {cid for cid in ids if segment.id in stays[cid]}
    entered = _enter(session, segment, sorted(should - stored), now)
    exited = _exit(session, segment, sorted(stored - should), now)
    _count_delta(session, segment.id, len(entered) - len(exited))
    if stays is not None:
        for cid in entered:
            stays[cid].add(segment.id)
        for cid in exited:
            stays[cid].discard(segment.id)
    if shared is not None:
        shared.forget([*entered, *exited])
    return Moves(segment.id, entered, exited)


def refresh(session: Session, segment_id: int, *, now: datetime | None = None) -> RefreshResult:
    """Recompute the whole segment, then re-evaluate its dependents for the contacts that moved."""
    started = time.perf_counter()
    now = now or utcnow()
    row = session.get(Segment, segment_id)
    if row is None or row.workspace_id != workspace_of(session):
        raise NotFound(f"no segment {segment_id}", code="segment_not_found", field="segment_id")
    segment = catalog.loaded(session, row)
    if session.get_bind().dialect.name == "postgresql":
        # A real-time job that decided about a contact while this refresh's query ran
        # would be overwritten by the older answer; the lock orders them instead, so
        # whichever decides later decides from what the other committed.
        _take_locks(session, _segment_keys(_downstream(catalog.load(session), [segment.id])))
    without_jit(session)
    should = matching(session, segment, now=now)
    stored = current_members(session, segment.id)
    entered = _enter(session, segment, sorted(should - stored), now)
    exited = _exit(session, segment, sorted(stored - should), now)
    session.execute(
        update(Segment)
        .where(Segment.id == segment.id)
        .values(member_count=len(should), refreshed_at=now)
        .execution_options(synchronize_session=False)
    )
    session.expire(row)
    moved = {*entered, *exited}
    if moved:
        _flow(session, {segment.id: moved}, {}, now=now, skip={segment.id})
    seconds = time.perf_counter() - started
    log.info(
        "segments.refreshed",
        segment_id=segment.id,
        members=len(should),
        entered=len(entered),
        exited=len(exited),
        seconds=round(seconds, 3),
    )
    return RefreshResult(segment.id, len(should), len(entered), len(exited), seconds)


def colleagues(session: Session, contact_ids: Iterable[int]) -> set[int]:
    """Contacts of the same companies as these contacts (themselves included)."""
    ids = sorted(set(contact_ids))
    companies: set[int] = set()
    for chunk in _chunks(ids):
        companies.update(
            int(c or 0)
            for c in session.scalars(
                select(Contact.company_id).where(
                    Contact.id.in_(chunk), Contact.company_id.is_not(None)
                )
            )
        )
    found = set(ids)
    for chunk in _chunks(sorted(companies)):
        found.update(
            int(c) for c in session.scalars(select(Contact.id).where(Contact.company_id.in_(chunk)))
        )
    return found


def _flow(
    session: Session,
    moved: dict[int, set[int]],
    contacts: Mapping[int, set[str]],
    *,
    now: datetime,
    skip: set[int] | None = None,
    lock: list[int] | None = None,
) -> list[Moves]:
    """Visit active segments in dependency order; evaluate the contacts each must see.

    ``lock`` (the contacts' advisory lock keys) is taken before the first decision, with
    shared locks on the segments the job may write (``refresh`` takes them exclusively),
    so a job that no segment can see costs the catalog stamp alone. When this process
    has seen the workspace's catalog, the locks ride in the stamp's own statement
    (guessed from that catalog; a segment saved since adds its locks afterwards). A job about a few
    contacts reads each one's facts and open stays once for every segment (``Shared``)."""
    out: list[Moves] = []
    skip = skip or set()
    locked: set[int] | None = None  # segments whose shared locks the stamp took
    rider: catalog.Rider | None = None
    guess = catalog.last_loaded(workspace_of(session)) if lock else None
    if lock and guess is not None:
        # The catalog is most likely what this process saw last: take the locks in
        # the stamp's statement; the stamp then says whether the guess held.
        triggered = _triggered(guess, contacts)
        if triggered:
            locked = _downstream(guess, triggered)
            rider = (_LOCK_COLUMN, _lock_params(lock, _segment_keys(locked)))
    segments = catalog.load(session, rider=rider)
    shared: Shared | None = None
    reach: set[int] | None = None
    for segment in segments:
        if segment.id in skip:
            continue
        wanted = {cid for cid, keys in contacts.items() if segment.triggered_by(keys)}
        for used in segment.uses_segments:
            wanted |= moved.get(used, set())
        if not wanted:
            continue
        if segment.account_level:
            wanted = colleagues(session, wanted)
        if reach is None:  # the first decision: what the job may write
            reach = _downstream(segments, _triggered(segments, contacts) | set(moved)) - skip
            if lock and locked is None:
                _take_locks(session, lock, _segment_keys(reach))
            elif lock and locked is not None and reach - locked:
                # A segment saved since the guess: its locks come after the others'
                # (out of key order; a deadlock, if one ever formed, fails one job,
                # which is retried).
                _take_locks(session, lock, _segment_keys(reach - locked))
        if shared is None and len(wanted) <= EVALUATE_AT_MOST:
            shared = Shared.of(segments, reach)  # filled on first use
        moves = apply(session, segment, sorted(wanted), now=now, shared=shared)
        if moves.moved:
            moved[segment.id] = moved.get(segment.id, set()) | moves.moved
            out.append(moves)
    return out


def reevaluate(
    session: Session, contacts: Mapping[int, set[str]], *, now: datetime | None = None
) -> list[Moves]:
    """Re-evaluate the segments that these changes can affect, for these contacts only.

    On PostgreSQL the contacts are locked for the transaction before the first decision
    (advisory locks, in id order so two jobs cannot deadlock): a concurrent job about the
    same contact waits, then decides from what this one committed, so an older decision
    never lands last. The same holds against a refresh of a segment the job may write
    (shared segment locks here, exclusive in ``refresh``).
    SQLite's single writer serializes jobs already.
    """
    keys = None
    if contacts and session.get_bind().dialect.name == "postgresql":
        keys = [_LOCK_SPACE | int(cid) for cid in sorted(contacts)]
    return _flow(session, {}, contacts, now=now or utcnow(), lock=keys)


def history(session: Session, contact_id: int, *, limit: int = 200) -> list[Any]:
    """A contact's stays, newest first: (segment id, segment name, entered_at, exited_at)."""
    return list(
        session.execute(
            select(
                SegmentMembership.segment_id,
                Segment.name,
                SegmentMembership.entered_at,
                SegmentMembership.exited_at,
            )
            .join(Segment, Segment.id == SegmentMembership.segment_id)
            .where(SegmentMembership.contact_id == contact_id)
            .order_by(SegmentMembership.entered_at.desc(), SegmentMembership.id.desc())
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class Member:
    contact_id: int
    email: str
    entered_at: datetime


def members_page(
    session: Session, segment_id: int, *, cursor: str | None, limit: int
) -> Page[Member]:
    """Current members by contact id, a keyset page (the partial unique index serves it)."""
    limit = check_limit(limit)
    after = decode_cursor(cursor)
    stmt = (
        select(SegmentMembership.contact_id, Contact.email, SegmentMembership.entered_at)
        .join(Contact, Contact.id == SegmentMembership.contact_id)
        .where(SegmentMembership.segment_id == segment_id, SegmentMembership.exited_at.is_(None))
    )
    if after is not None:
        stmt = stmt.where(SegmentMembership.contact_id > after)
    rows = session.execute(stmt.order_by(SegmentMembership.contact_id).limit(limit + 1)).all()
    more = len(rows) > limit
    items = [Member(int(r.contact_id), r.email, r.entered_at) for r in rows[:limit]]
    return Page(items, encode_cursor(items[-1].contact_id) if more else None)
