"""What a transaction changed that may move contacts in or out of segments.

Writers (contact actions, list subscriptions, tracking ingest, email opens and clicks)
call ``note`` with the contact ids and *what* changed, as change keys: ``event:NAME``,
``field:NAME``, ``list``, ``company``, or ``*`` (a new contact: anything may match).
Notes collect in the session; just before the transaction commits they become
``segments.reevaluate`` jobs (one per ``MAX_CONTACTS_PER_JOB`` contacts) in that same
transaction, so the writer pays for one INSERT per batch, not a segment evaluation,
and a rolled-back write leaves no job behind. Only contacts whose changes some active
segment can see are sent (``relevant``: the segments' triggers, from their parsed
definitions, cached per process); a workspace without active segments costs one
indexed probe. See docs/segments.md (real time).

The open pixel and click redirect, which write with a bare connection on their hot
path, call ``note_now`` from a background task after their response instead, and only
when ``may_matter``: each ``relevant`` call remembers, per process and for
``SEEN_SECONDS``, which change keys the workspace's active segments can see, so opens and
clicks that no segment names cost no task and no query (a segment saved in another
process is seen within that time).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from postwise.storage import tenancy
from postwise.storage.database import Database
from postwise.storage.tables import Segment, SegmentMembership

REEVALUATE = "segments.reevaluate"
QUEUE = "default"
MAX_CONTACTS_PER_JOB = 1000
ANYTHING = "*"
LIST = "list"
COMPANY = "company"
ANY_EVENT = "event:*"
_INFO_KEY = "postwise.segment_changes"
SEEN_SECONDS = 2.0
# workspace id -> (monotonic time seen, change keys its active segments can see)
_seen: dict[int, tuple[float, frozenset[str]]] = {}

Pending = dict[int, dict[int, set[str]]]  # workspace id -> contact id -> change keys


def event_key(name: str) -> str:
    return f"event:{name}"


def field_key(name: str) -> str:
    return f"field:{name}"


def contact_keys(diff: Mapping[str, Any]) -> list[str]:
    """Change keys for a contact diff (``{column: [old, new]}``, attributes by name)."""
    keys = []
    for column, change in diff.items():
        if column == "attributes" and isinstance(change, list) and len(change) == 2:
            keys += [field_key(f"contact.attributes.{name}") for name in {*change[0], *change[1]}]
        else:
            keys.append(field_key(f"contact.{column}"))
            if column in ("email_domain", "company_id"):
                keys.append(COMPANY)
    return keys


def note(
    session: Session,
    contact_ids: Iterable[int | None],
    keys: Iterable[str],
    *,
    workspace_id: int | None = None,
) -> None:
    """Remember that ``keys`` changed for these contacts; sent as a job when the session commits."""
    keys = list(keys)
    ids = [c for c in contact_ids if c is not None]
    if not ids or not keys:
        return
    ws = workspace_id if workspace_id is not None else tenancy.workspace_of(session)
    pending: Pending = session.info.setdefault(_INFO_KEY, {})
    contacts = pending.setdefault(ws, {})
    for contact_id in ids:
        contacts.setdefault(int(contact_id), set()).update(keys)


def note_pairs(
    session: Session, pairs: Iterable[tuple[int | None, str]], *, workspace_id: int | None = None
) -> None:
    """``note`` for many (contact id, change key) pairs, e.g. the events of one batch."""
    ws = workspace_id if workspace_id is not None else tenancy.workspace_of(session)
    pending: Pending = session.info.setdefault(_INFO_KEY, {})
    contacts = pending.setdefault(ws, {})
    for contact_id, key in pairs:
        if contact_id is not None:
            contacts.setdefault(int(contact_id), set()).add(key)


def payloads(contacts: Mapping[int, set[str]]) -> list[dict[str, Any]]:
    """Job payloads for these changes, ``MAX_CONTACTS_PER_JOB`` contacts each."""
    items = sorted(contacts.items())
    return [
        {"contacts": {str(cid): sorted(keys) for cid, keys in items[i : i + MAX_CONTACTS_PER_JOB]}}
        for i in range(0, len(items), MAX_CONTACTS_PER_JOB)
    ]


def _has_segments(session: Session, workspace_id: int) -> bool:
    found = session.execute(
        select(Segment.id)
        .where(Segment.workspace_id == workspace_id, Segment.status == "active")
        .limit(1)
    ).first()
    return found is not None


@contextmanager
def _tenant_view(session: Session, workspace_id: int) -> Iterator[Session]:
    """``session`` if it is bound to the workspace, else a read-only tenant session on
    its connection (a system session's writer, e.g. the deliverer)."""
    try:
        bound: int | None = tenancy.workspace_of(session)
    except RuntimeError:
        bound = None
    if bound == workspace_id:
        yield session
        return
    scoped = Session(bind=session.connection(), join_transaction_mode="rollback_only")
    tenancy.bind(scoped, workspace_id)
    try:
        yield scoped
    finally:
        scoped.close()


def relevant(
    session: Session, workspace_id: int, contacts: Mapping[int, set[str]]
) -> dict[int, set[str]]:
    """The contacts whose changes at least one active segment can see (its triggers)."""
    if not contacts:
        return {}
    if not _has_segments(session, workspace_id):
        _seen[workspace_id] = (time.monotonic(), frozenset())
        return {}  # one indexed probe, and the segment engine is not even imported
    from postwise.segments import catalog

    with _tenant_view(session, workspace_id) as scoped:
        segments = catalog.load(scoped)  # one small aggregate; rows and parsing are cached
    _seen[workspace_id] = (time.monotonic(), frozenset().union(*(s.triggers for s in segments)))
    return {
        cid: keys
        for cid, keys in contacts.items()
        if any(segment.triggered_by(keys) for segment in segments)
    }


def learn(session: Session, workspace_id: int) -> None:
    """Fill ``may_matter``'s view of the workspace (the change keys its active segments can
    see) for a writer that noted nothing now but asks ``may_matter`` before its next write."""
    seen = _seen.get(workspace_id)
    if seen is None or time.monotonic() - seen[0] > SEEN_SECONDS:
        relevant(session, workspace_id, {0: set()})  # a probe (the catalog if any segment)


def _enqueue(session: Session, workspace_id: int, contacts: Mapping[int, set[str]]) -> None:
    from postwise.jobs import queue  # the queue imports storage; keep this module light

    wanted = relevant(session, workspace_id, contacts)
    if wanted:
        queue.enqueue_many(
            session, REEVALUATE, payloads(wanted), queue=QUEUE, workspace_id=workspace_id
        )


@event.listens_for(Session, "before_commit")
def _send_pending(session: Session) -> None:
    pending: Pending | None = session.info.pop(_INFO_KEY, None)
    if not pending:
        return
    for workspace_id, contacts in pending.items():
        _enqueue(session, workspace_id, contacts)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    discard(session)


def discard(session: Session) -> None:
    """Forget the session's notes: its commit will queue no re-evaluation."""
    session.info.pop(_INFO_KEY, None)


def contacts_leaving(session: Session, contact_ids: Iterable[int]) -> None:
    """Call before deleting contacts: their open stays go with them (ON DELETE CASCADE),
    so each segment they were in counts that many members fewer."""
    ids = sorted(set(contact_ids))
    if not ids:
        return
    open_stays = (
        select(SegmentMembership.segment_id, func.count())
        .where(SegmentMembership.contact_id.in_(ids), SegmentMembership.exited_at.is_(None))
        .group_by(SegmentMembership.segment_id)
    )
    for segment_id, count in session.execute(open_stays).all():
        session.execute(
            update(Segment)
            .where(Segment.id == segment_id)
            .values(member_count=Segment.member_count - count)
            .execution_options(synchronize_session=False)
        )


@event.listens_for(Segment, "after_insert")
@event.listens_for(Segment, "after_update")
@event.listens_for(Segment, "after_delete")
def _forget_seen(_mapper: Any, _connection: Any, target: Segment) -> None:
    """A segment saved in this process is seen at once, not ``SEEN_SECONDS`` later."""
    _seen.pop(target.workspace_id, None)


def may_matter(workspace_id: int, key: str) -> bool:
    """False only when, as seen in the last ``SEEN_SECONDS``, no active segment of the
    workspace can see ``key``; no query (unknown or stale: True, and the note will look)."""
    seen = _seen.get(workspace_id)
    if seen is None or time.monotonic() - seen[0] > SEEN_SECONDS:
        return True
    return ANYTHING in seen[1] or key in seen[1]


def note_now(db: Database, workspace_id: int, contact_id: int | None, event_name: str) -> None:
    """One event's note in a transaction of its own (the open pixel and click redirect,
    after their response): a job if a segment of the workspace can see the event."""
    if contact_id is None:
        return
    with db.tenant(workspace_id) as session:
        note(session, [contact_id], [event_key(event_name)])
