"""Engagement score: exponentially decayed counts of a contact's human activity.

score = sum over the last ``WINDOW_DAYS`` of weight(event) * 0.5 ** (age_days / HALF_LIFE_DAYS)
with weights human open 1, human click 3, site visit (``page`` event) 2. Machine opens
and clicks (``properties.machine``) count nothing. Stored per contact with ``scored_at``
and recomputed by the rollup job for the contacts a batch touched and daily for stale
scores (docs/analytics.md). Contacts whose score moved are noted as a change of
``contact.engagement_score`` (segments/changes.py), so segments on it re-evaluate them
in the same transaction's job, not at their next full refresh.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postwise.analytics.fields import ENGAGEMENT_ATTRIBUTE, ENGAGEMENT_FIELD
from postwise.core import clock
from postwise.segments import changes
from postwise.storage.tables import Contact, ContactEngagement, Event, SegmentMembership
from postwise.storage.tenancy import workspace_of

HALF_LIFE_DAYS = 14.0
WINDOW_DAYS = 180
WEIGHTS = {"Email Opened": 1.0, "Email Clicked": 3.0}
PAGE_WEIGHT = 2.0


def decayed(weight: float, age: timedelta) -> float:
    days = max(age.total_seconds(), 0.0) / 86400.0
    return weight * 0.5 ** (days / HALF_LIFE_DAYS)


def rescore(session: Session, contact_ids: Sequence[int], *, now: datetime | None = None) -> None:
    """Recompute and store the score of these contacts (a bounded read of their events)."""
    if not contact_ids:
        return
    ws = workspace_of(session)
    now = now or clock.utcnow()
    since = now - timedelta(days=WINDOW_DAYS)
    scores: dict[int, float] = defaultdict(float)
    for start in range(0, len(contact_ids), 1000):
        chunk = list(contact_ids[start : start + 1000])
        rows = session.execute(
            select(
                Event.contact_id, Event.type, Event.name, Event.properties, Event.occurred_at
            ).where(
                Event.workspace_id == ws,
                Event.contact_id.in_(chunk),
                Event.occurred_at >= since,
                or_(Event.type == "page", Event.name.in_(list(WEIGHTS))),
            )
        )
        for r in rows:
            props = r.properties if isinstance(r.properties, dict) else {}
            if r.type == "page":
                weight = PAGE_WEIGHT
            elif props.get("machine") is True:
                continue
            else:
                weight = WEIGHTS[r.name]
            scores[int(r.contact_id)] += decayed(weight, now - r.occurred_at)
    before = _stored(session, contact_ids)
    postgres = session.get_bind().dialect.name == "postgresql"
    insert_fn: Any = postgresql.insert if postgres else sqlite.insert
    values = [
        {
            "workspace_id": ws,
            "contact_id": c,
            "score": round(scores.get(c, 0.0), 6),
            "scored_at": now,
        }
        for c in sorted(set(contact_ids))
    ]
    stmt = insert_fn(ContactEngagement.__table__).values(values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["workspace_id", "contact_id"],
            set_={"score": stmt.excluded.score, "scored_at": stmt.excluded.scored_at},
        )
    )
    _mirror(session, ws, values, postgres)
    moved = [int(c) for c in set(contact_ids) if before.get(c) != round(scores.get(c, 0.0), 6)]
    changes.note(session, moved, [changes.field_key(ENGAGEMENT_FIELD)])


def _stored(session: Session, contact_ids: Sequence[int]) -> dict[int, float]:
    """Scores as stored now, so only contacts whose score moved notify segments."""
    out: dict[int, float] = {}
    for start in range(0, len(contact_ids), 1000):
        chunk = list(contact_ids[start : start + 1000])
        rows = session.execute(
            select(ContactEngagement.contact_id, ContactEngagement.score).where(
                ContactEngagement.contact_id.in_(chunk)
            )
        )
        out.update({int(c): float(s) for c, s in rows})
    return out


STALE_AFTER = timedelta(days=1)


def stale_contacts(session: Session, *, now: datetime, limit: int) -> list[int]:
    """Contacts whose stored score is older than ``STALE_AFTER`` and not yet 0: decay
    without new touches is only seen when someone rescores them (a score of 0 can only
    rise again through an event, which the rollup rescores anyway)."""
    return [
        int(c)
        for c in session.scalars(
            select(ContactEngagement.contact_id)
            .where(ContactEngagement.scored_at < now - STALE_AFTER, ContactEngagement.score > 0)
            .order_by(ContactEngagement.scored_at, ContactEngagement.contact_id)
            .limit(limit)
        )
    ]


def rescore_stale(session: Session, *, now: datetime | None = None, limit: int = 5000) -> int:
    """Rescore one batch of stale contacts; returns how many (the job repeats while full)."""
    now = now or clock.utcnow()
    contacts = stale_contacts(session, now=now, limit=limit)
    rescore(session, contacts, now=now)
    return len(contacts)


def _mirror(session: Session, ws: int, values: list[dict[str, Any]], postgres: bool) -> None:
    """Copy each score into ``contacts.attributes`` so segments read it (analytics/fields.py)."""
    for v in values:
        if postgres:
            merged: Any = Contact.attributes.op("||")(
                func.jsonb_build_object(ENGAGEMENT_ATTRIBUTE, v["score"])
            )
        else:
            merged = func.json_set(
                func.coalesce(Contact.attributes, "{}"), f"$.{ENGAGEMENT_ATTRIBUTE}", v["score"]
            )
        session.execute(
            update(Contact)
            .where(Contact.workspace_id == ws, Contact.id == v["contact_id"])
            .values(attributes=merged)
        )


def score_of(session: Session, contact_id: int) -> float:
    value = session.execute(
        select(ContactEngagement.score).where(ContactEngagement.contact_id == contact_id)
    ).scalar_one_or_none()
    return float(value or 0.0)


def segment_mean(session: Session, segment_id: int) -> float:
    """Mean stored score of a segment's current members (members never scored count 0)."""
    count, total = session.execute(
        select(func.count(SegmentMembership.contact_id), func.sum(ContactEngagement.score))
        .select_from(SegmentMembership)
        .outerjoin(
            ContactEngagement,
            (ContactEngagement.contact_id == SegmentMembership.contact_id)
            & (ContactEngagement.workspace_id == SegmentMembership.workspace_id),
        )
        .where(SegmentMembership.segment_id == segment_id, SegmentMembership.exited_at.is_(None))
    ).one()
    return float(total or 0.0) / count if count else 0.0
