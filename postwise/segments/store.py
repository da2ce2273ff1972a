"""Segment actions: create, update, delete and read saved segments.

Every save parses the definition against the workspace's schema (fields, attributes,
lists, the other segments: so an unknown field or a cycle is a 422 naming the node's
path) before anything is written, so a stored definition always compiles. A save that
changes the definition bumps ``version`` and enqueues a full refresh of the membership
(``segments.refresh``, keyed by segment and version: one refresh per version however
often it is requested), and a second one a few seconds later (see ``SETTLE_SECONDS``).
See docs/segments.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.core.clock import utcnow
from postwise.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from postwise.segments import catalog
from postwise.segments.changes import SEEN_SECONDS
from postwise.segments.definition import Definition
from postwise.storage.tables import Segment
from postwise.storage.tenancy import workspace_of

STATUSES = ("active", "paused")
REFRESH = "segments.refresh"
# Writers in other processes skip the change notes of events no segment could see, as they
# saw the segments at most SEEN_SECONDS ago (changes.may_matter), and a write that checked
# just before a save may commit just after it. What they wrote unnoted for a new version is
# picked up by a second refresh once every such view has expired.
SETTLE_SECONDS = 2 * SEEN_SECONDS + 1
_EDITABLE = ("name", "description", "definition", "status")


@dataclass(frozen=True)
class SegmentInput:
    name: str
    definition: dict[str, Any]
    description: str = ""
    status: str = "active"


def _check_meta(values: Mapping[str, Any]) -> None:
    errors: list[FieldError] = []
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > 200:
            errors.append(FieldError("name", "invalid_name", "A name of 1 to 200 characters."))
    if "description" in values:
        text = values["description"]
        if not isinstance(text, str) or len(text) > 1000:
            errors.append(
                FieldError("description", "invalid_description", "At most 1,000 characters.")
            )
    if "status" in values and values["status"] not in STATUSES:
        errors.append(
            FieldError("status", "invalid_status", f"status is one of {', '.join(STATUSES)}.")
        )
    if errors:
        raise ValidationFailed.from_errors(errors)


def _name_taken(session: Session, name: str, *, other_than: int | None = None) -> None:
    stmt = select(Segment.id).where(Segment.name == name)
    if other_than is not None:
        stmt = stmt.where(Segment.id != other_than)
    if session.scalar(stmt) is not None:
        raise Conflict(f"a segment named {name!r} exists", code="segment_exists", field="name")


def validate(
    session: Session, document: Mapping[str, Any], *, segment_id: int | None = None
) -> Definition:
    """Parse ``document`` as this workspace's segment ``segment_id`` would be (422 on error)."""
    return catalog.parse(session, document, segment_id=segment_id)


def enqueue_refresh(
    session: Session, segment: Segment, *, cause: str = "", run_at: datetime | None = None
) -> int:
    """A ``segments.refresh`` job, once per (segment version, cause)."""
    from postwise.jobs import queue

    return queue.enqueue(
        session,
        REFRESH,
        {"segment_id": segment.id, "version": segment.version},
        workspace_id=segment.workspace_id,
        run_at=run_at,
        priority=50,  # a user just saved it and is waiting for the count
        dedupe_key=f"{REFRESH}:{segment.workspace_id}:{segment.id}:v{segment.version}{cause}",
    )


def enqueue_version_refreshes(session: Session, segment: Segment, *, cause: str = "") -> None:
    """The refresh of a new version now, and its settling refresh ``SETTLE_SECONDS`` later."""
    enqueue_refresh(session, segment, cause=cause)
    later = utcnow() + timedelta(seconds=SETTLE_SECONDS)
    enqueue_refresh(session, segment, cause=f"{cause}:settle", run_at=later)


def refresh_all(session: Session, *, cause: str) -> int:
    """Enqueue a refresh of every active segment (after a bulk write that noted nothing,
    such as a CSV import); once per segment version and ``cause``. How many."""
    active = session.scalars(select(Segment).where(Segment.status == "active")).all()
    for segment in active:
        enqueue_refresh(session, segment, cause=f":{cause}")
    return len(active)


def create_segment(session: Session, data: SegmentInput, *, refresh: bool = True) -> Segment:
    values = {
        "name": data.name,
        "description": data.description,
        "status": data.status,
    }
    _check_meta(values)
    name = data.name.strip()
    _name_taken(session, name)
    validate(session, data.definition)
    now = utcnow()
    segment = Segment(
        workspace_id=workspace_of(session),
        name=name,
        description=data.description,
        definition=dict(data.definition),
        status=data.status,
        version=1,
        member_count=0,
        created_at=now,
        updated_at=now,
    )
    session.add(segment)
    session.flush()
    if refresh and segment.status == "active":
        enqueue_version_refreshes(session, segment)
    return segment


def update_segment(
    session: Session, segment_id: int, data: Mapping[str, Any], *, refresh: bool = True
) -> Segment:
    """Change what ``data`` names; a new definition bumps ``version`` and refreshes."""
    unknown = sorted(set(data) - set(_EDITABLE))
    if unknown:
        raise ValidationFailed(
            f"cannot change {', '.join(unknown)}", code="not_editable", field=unknown[0]
        )
    segment = get_segment(session, segment_id)
    _check_meta(data)
    if "name" in data and data["name"].strip() != segment.name:
        _name_taken(session, data["name"].strip(), other_than=segment.id)
        segment.name = data["name"].strip()
    if "description" in data:
        segment.description = data["description"]
    reactivated = "status" in data and data["status"] != segment.status == "paused"
    if "status" in data:
        segment.status = data["status"]
    changed = "definition" in data and data["definition"] != segment.definition
    if changed:
        validate(session, data["definition"], segment_id=segment.id)
        segment.definition = dict(data["definition"])
    if changed or reactivated:
        segment.version += 1
    segment.updated_at = utcnow()
    session.flush()
    if refresh and (changed or reactivated) and segment.status == "active":
        enqueue_version_refreshes(session, segment)
    if refresh and changed:
        # Definitions inline the segments they reference: those that use this one change too.
        cause = f":uses:{segment.id}:v{segment.version}"
        for user in catalog.dependents(session, segment.id, transitive=True):
            if user.status == "active":
                enqueue_version_refreshes(session, user, cause=cause)
    return segment


def get_segment(session: Session, segment_id: int) -> Segment:
    segment = session.get(Segment, segment_id)
    if segment is None or segment.workspace_id != workspace_of(session):
        raise NotFound(f"no segment {segment_id}", code="segment_not_found", field="segment_id")
    return segment


def find_segment(session: Session, ref: str) -> Segment:
    """A segment by id or by name (for the CLI)."""
    if ref.isdigit():
        return get_segment(session, int(ref))
    segment = session.scalar(select(Segment).where(Segment.name == ref))
    if segment is None:
        raise NotFound(f"no segment named {ref!r}", code="segment_not_found", field="segment")
    return segment


def list_segments(session: Session) -> list[Segment]:
    return list(session.scalars(select(Segment).order_by(Segment.name, Segment.id)))


def delete_segment(session: Session, segment_id: int) -> None:
    """Delete a segment and its membership history; segments that use it must change first."""
    segment = get_segment(session, segment_id)
    users = catalog.dependents(session, segment.id)
    if users:
        names = ", ".join(sorted(s.name for s in users))
        raise Conflict(
            f"segment {segment.name!r} is used by {names}; change those first",
            code="segment_in_use",
            field="segment_id",
        )
    session.delete(segment)
    session.flush()
