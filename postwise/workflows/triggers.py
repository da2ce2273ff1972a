"""Which workflows a happening enrolls a contact into, and whether it may enter again.

Pure decisions shared by the runtime's real-time trigger path (tracked events, segment
changes, list subscriptions), its daily date job and the tests. The runtime supplies the
happening and, for re-entry, what it knows of the contact's earlier enrollments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from postwise.workflows.definition import (
    DateTrigger,
    EventTrigger,
    ListTrigger,
    Reentry,
    SegmentTrigger,
    Workflow,
)
from postwise.workflows.engine import date_attribute, event_matches


def event_trigger(wf: Workflow, name: str, properties: Mapping[str, Any]) -> EventTrigger | None:
    """The first event trigger of ``wf`` that this event fires, if any."""
    for trigger in wf.triggers:
        if isinstance(trigger, EventTrigger) and event_matches(
            trigger.event, trigger.where, name, properties
        ):
            return trigger
    return None


def segment_trigger(wf: Workflow, segment_id: int, entered: bool) -> bool:
    kind = "segment_entered" if entered else "segment_exited"
    return any(
        isinstance(t, SegmentTrigger) and t.type == kind and t.segment == segment_id
        for t in wf.triggers
    )


def list_trigger(wf: Workflow, list_id: int, list_name: str | None = None) -> bool:
    return any(isinstance(t, ListTrigger) and t.list in (list_id, list_name) for t in wf.triggers)


def date_trigger_due(trigger: DateTrigger, value: Any, day: date) -> bool:
    """Does the date attribute ``value`` fire ``trigger`` on the contact's local ``day``?

    ``yearly``: the attribute's month-day, shifted by ``offset_days``, falls on ``day``
    (a 29 February is celebrated on 28 February in common years). Otherwise the
    attribute's date plus ``offset_days`` is ``day`` (a trial ending in 3 days: -3).
    """
    found = date_attribute(value)
    if found is None:
        return False
    origin = found[0]
    if not trigger.yearly:
        return origin + timedelta(days=trigger.offset_days) == day
    target = day - timedelta(days=trigger.offset_days)
    month, dom = origin.month, origin.day
    if (month, dom) == (2, 29) and not _leap(target.year):
        dom = 28
    return (target.month, target.day) == (month, dom)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


@dataclass(frozen=True)
class PastEnrollments:
    """What the runtime knows of the contact's earlier enrollments in this workflow."""

    active: bool = False
    count: int = 0
    last_entered_at: datetime | None = None


def may_enroll(reentry: Reentry, past: PastEnrollments, now: datetime) -> bool:
    """Never twice at once; ``once``: never again; ``always``: whenever not active;
    ``cooldown``: not before the cooldown since the last entry has passed."""
    if past.active:
        return False
    if past.count == 0:
        return True
    if reentry.mode == "once":
        return False
    if reentry.mode == "always" or past.last_entered_at is None:
        return True
    assert reentry.cooldown is not None  # the parser requires it for this mode
    return now >= past.last_entered_at + timedelta(seconds=reentry.cooldown.seconds)
