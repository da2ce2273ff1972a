"""Reading events: one contact's events page by page, and the workspace's event catalogue.

Both read through the two indexes the events table has for this: a contact's events by
``(workspace_id, contact_id, occurred_at)`` and one event name's by
``(workspace_id, name, occurred_at)``. Sessions are tenant sessions, so the workspace
filter is added by ``storage/tenancy.py``. Each event shows ``actor`` and ``actor_reason``
(human or machine, ``tracking/actors.py``). See docs/tracking-web.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from postwise.contacts.actions import get_contact
from postwise.core import clock
from postwise.core.errors import ValidationFailed
from postwise.storage.tables import Event
from postwise.tracking.actors import actor

RECENT_DAYS = 30
DEFAULT_SAMPLE = 100
MAX_SAMPLE = 1000


def event_dict(event: Event) -> dict[str, Any]:
    label, reason = actor(event.properties)
    return {
        "id": event.id,
        "type": event.type,
        "name": event.name,
        "contact_id": event.contact_id,
        "anonymous_id": event.anonymous_id,
        "user_id": event.user_id,
        "actor": label,
        "actor_reason": reason,
        "properties": event.properties,
        "context": event.context,
        "message_id": event.message_id,
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat(),
    }


@dataclass(frozen=True)
class EventPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def _encode_cursor(event: Event) -> str:
    raw = json.dumps({"at": event.occurred_at.isoformat(), "id": event.id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at, event_id = clock.as_utc(datetime.fromisoformat(value["at"])), value["id"]
        if not isinstance(event_id, int) or isinstance(event_id, bool):
            raise TypeError
        if not 0 <= event_id < 2**63:
            raise ValueError
        return at, event_id
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValidationFailed(
            "cursor is not one this API returned; pass next_cursor back unchanged",
            code="invalid_cursor",
            field="cursor",
        ) from None


def contact_events(
    session: Session,
    contact_id: int,
    *,
    names: Sequence[str] = (),
    types: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> EventPage:
    """The contact's events, newest first; ``since`` inclusive, ``until`` exclusive.

    Keyset pagination on ``(occurred_at, id)``: stable while events arrive, and each page
    is a range read of the contact index whatever page it is.
    """
    since = clock.as_utc(since) if since is not None else None
    until = clock.as_utc(until) if until is not None else None
    if since is not None and until is not None and since >= until:
        raise ValidationFailed(
            "since must be earlier than until", code="invalid_time_range", field="since"
        )
    contact = get_contact(session, contact_id)
    query = select(Event).where(Event.contact_id == contact.id)
    if names:
        query = query.where(Event.name.in_(list(names)))
    if types:
        query = query.where(Event.type.in_(list(types)))
    if since is not None:
        query = query.where(Event.occurred_at >= since)
    if until is not None:
        query = query.where(Event.occurred_at < until)
    if cursor:
        at, last_id = _decode_cursor(cursor)
        query = query.where(
            or_(Event.occurred_at < at, and_(Event.occurred_at == at, Event.id < last_id))
        )
    rows = list(
        session.scalars(query.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(
        items=[event_dict(e) for e in rows],
        next_cursor=_encode_cursor(rows[-1]) if more and rows else None,
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def event_catalog(
    session: Session, *, sample: int = DEFAULT_SAMPLE, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every event name of the workspace with counts, first and last time, and the
    property keys (with their JSON types) seen in its ``sample`` most recent events.

    Counts come from one GROUP BY over the ``(workspace_id, name, occurred_at)`` index (an
    index-only scan on PostgreSQL); property keys from one indexed read per name of at most
    ``sample`` rows, so their cost is bounded by names x sample, not by the table's size.
    """
    if not 1 <= sample <= MAX_SAMPLE:
        raise ValidationFailed(
            f"sample must be between 1 and {MAX_SAMPLE}", code="invalid_sample", field="sample"
        )
    now = now or clock.utcnow()
    cutoff = now - timedelta(days=RECENT_DAYS)
    counts = session.execute(
        select(
            Event.name,
            func.count(),
            func.coalesce(func.sum(case((Event.occurred_at >= cutoff, 1), else_=0)), 0),
            func.min(Event.occurred_at),
            func.max(Event.occurred_at),
        )
        .group_by(Event.name)
        .order_by(Event.name)
    ).all()
    catalog = []
    for name, total, recent, first_seen, last_seen in counts:
        types: set[str] = set()
        keys: dict[str, set[str]] = {}
        for event_type, properties in session.execute(
            select(Event.type, Event.properties)
            .where(Event.name == name)
            .order_by(Event.occurred_at.desc())
            .limit(sample)
        ):
            types.add(event_type)
            if isinstance(properties, dict):
                for key, value in properties.items():
                    keys.setdefault(key, set()).add(_json_type(value))
        catalog.append(
            {
                "name": name,
                "types": sorted(types),
                "total": int(total),
                "last_30_days": int(recent),
                "first_seen": clock.as_utc(first_seen).isoformat(),
                "last_seen": clock.as_utc(last_seen).isoformat(),
                "property_keys": [
                    {"key": key, "types": sorted(kinds)} for key, kinds in sorted(keys.items())
                ],
                "sampled": min(int(total), sample),
            }
        )
    return catalog
