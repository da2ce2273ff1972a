"""A miniature runtime over a simulated clock: drives ``advance`` for one contact.

It does what the durable runtime will do, in memory: enroll on triggers (re-entry
policy included, one active enrollment at a time), deliver events, wake enrollments at
their ``ScheduleWake``, feed the contact's recent marketing sends back as facts, and
record every command. Ties at one instant: a due wake-up runs before an event, so a
timeout at the deadline wins over an event at the same moment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from postwise.workflows.definition import DateTrigger, Workflow
from postwise.workflows.engine import (
    AddToListCommand,
    CallWebhookCommand,
    Command,
    EventArrived,
    ExitCommand,
    Facts,
    ScheduleWake,
    SegmentChanged,
    SendEmailCommand,
    State,
    UnsubscribeCommand,
    Wake,
    advance,
    local_moment,
    parse_hhmm,
    zone,
)
from postwise.workflows.engine import (
    Enroll as EnrollStimulus,
)
from postwise.workflows.triggers import (
    PastEnrollments,
    date_trigger_due,
    event_trigger,
    list_trigger,
    may_enroll,
    segment_trigger,
)


@dataclass(frozen=True)
class Event:
    at: datetime
    name: str
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentEntry:
    at: datetime
    segment: int
    entered: bool = True


@dataclass(frozen=True)
class Subscribed:
    at: datetime
    list: int | str


@dataclass(frozen=True)
class ManualEnroll:
    at: datetime


Happening = Event | SegmentEntry | Subscribed | ManualEnroll


@dataclass
class Contact:
    name: str
    script: Sequence[Happening] = ()
    timezone: str | None = "UTC"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    other_sends: Sequence[datetime] = ()  # marketing mail from campaigns/other workflows
    conditions: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    at: datetime
    template: str
    key: str
    marketing: bool
    data: Mapping[str, Any]


@dataclass
class Journey:
    contact: Contact
    tz: ZoneInfo
    sends: list[Sent] = field(default_factory=list)
    commands: list[tuple[datetime, Command]] = field(default_factory=list)
    exits: list[tuple[datetime, str]] = field(default_factory=list)
    states: list[State] = field(default_factory=list)

    def local(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    @property
    def mails(self) -> list[tuple[str, str]]:
        """(local time, template) of every email, in order."""
        return [(self.local(s.at), s.template) for s in self.sends]

    @property
    def ends(self) -> list[tuple[str, str]]:
        return [(self.local(at), reason) for at, reason in self.exits]

    def actions(self, kind: type) -> list[tuple[str, Any]]:
        return [(self.local(at), c) for at, c in self.commands if isinstance(c, kind)]


def run(
    wf: Workflow, contact: Contact, start: datetime, days: int = 60, *, check: bool = True
) -> Journey:
    end = start + timedelta(days=days)
    tz = zone(Facts(timezone=contact.timezone), wf)
    journey = Journey(contact, tz)
    happenings: list[Happening] = sorted(
        [*contact.script, *_date_enrollments(wf, contact, tz, start, end)], key=lambda h: h.at
    )
    marketing: list[datetime] = list(contact.other_sends)
    keys: set[str] = set()
    state: State | None = None
    wake: datetime | None = None
    past = PastEnrollments()
    serial = 0

    def facts(now: datetime) -> Facts:
        recent = [t for t in marketing if now - timedelta(days=7) < t <= now]
        return Facts(
            timezone=contact.timezone,
            attributes=contact.attributes,
            recent_sends=recent,
            conditions=contact.conditions,
        )

    def apply(now: datetime, outcome_state: State, commands: Sequence[Command]) -> None:
        nonlocal state, wake, past
        wake = None
        for cmd in commands:
            journey.commands.append((now, cmd))
            if isinstance(cmd, SendEmailCommand):
                if check:
                    assert cmd.key not in keys, f"idempotency key sent twice: {cmd.key}"
                keys.add(cmd.key)
                journey.sends.append(Sent(now, cmd.template, cmd.key, cmd.marketing, cmd.data))
                if cmd.marketing:
                    marketing.append(now)
            elif isinstance(cmd, ScheduleWake):
                if check:
                    assert cmd.at >= now, "a wake-up in the past"
                wake = cmd.at
            elif isinstance(cmd, ExitCommand):
                journey.exits.append((now, cmd.reason))
        if check:
            waits = sum(isinstance(c, ScheduleWake) for c in commands)
            exits = sum(isinstance(c, ExitCommand) for c in commands)
            assert (waits, exits) in ((1, 0), (0, 1)), "an advance must either wait or exit"
        state = outcome_state
        journey.states.append(outcome_state)
        if outcome_state.finished:
            state = None
            past = PastEnrollments(False, past.count, past.last_entered_at)

    def enroll(now: datetime, event: Event | None) -> None:
        nonlocal serial, past
        if not may_enroll(wf.policies.reentry, past, now):
            return
        serial += 1
        fresh = State.new(
            f"{contact.name}-{serial}",
            event=event.name if event else None,
            properties=event.properties if event else None,
        )
        past = PastEnrollments(True, past.count + 1, now)
        out = advance(wf, fresh, EnrollStimulus(), now, facts(now))
        apply(now, out.state, out.commands)

    index = 0
    while True:
        nxt = happenings[index] if index < len(happenings) else None
        if wake is not None and wake <= end and (nxt is None or wake <= nxt.at):
            now = wake
            assert state is not None
            out = advance(wf, state, Wake(), now, facts(now))
            apply(now, out.state, out.commands)
            continue
        if nxt is None or nxt.at > end:
            break
        index += 1
        now = nxt.at
        if isinstance(nxt, Event):
            if state is not None:
                out = advance(wf, state, EventArrived(nxt.name, nxt.properties), now, facts(now))
                apply(now, out.state, out.commands)
            elif event_trigger(wf, nxt.name, nxt.properties) is not None:
                enroll(now, nxt)
        elif isinstance(nxt, SegmentEntry):
            if state is not None:
                changed = SegmentChanged(nxt.segment, nxt.entered)
                out = advance(wf, state, changed, now, facts(now))
                apply(now, out.state, out.commands)
            elif segment_trigger(wf, nxt.segment, nxt.entered):
                enroll(now, None)
        elif isinstance(nxt, Subscribed):
            list_id = nxt.list if isinstance(nxt.list, int) else 0
            list_name = nxt.list if isinstance(nxt.list, str) else None
            if state is None and list_trigger(wf, list_id, list_name):
                enroll(now, None)
        elif state is None:
            enroll(now, None)
    return journey


def _date_enrollments(
    wf: Workflow, contact: Contact, tz: ZoneInfo, start: datetime, end: datetime
) -> list[Happening]:
    """What the daily date job would do: enroll at the trigger's local time on each day
    the attribute fires it."""
    found: list[Happening] = []
    first: date = start.astimezone(tz).date()
    for offset in range((end - start).days + 2):
        day = first + timedelta(days=offset)
        for trigger in wf.triggers:
            if not isinstance(trigger, DateTrigger):
                continue
            if date_trigger_due(trigger, contact.attributes.get(trigger.attribute), day):
                at = local_moment(day, parse_hhmm(trigger.at), tz)
                if start <= at <= end:
                    found.append(ManualEnroll(at))
    return found


__all__ = [
    "AddToListCommand",
    "CallWebhookCommand",
    "Contact",
    "Event",
    "Journey",
    "ManualEnroll",
    "SegmentEntry",
    "Subscribed",
    "UnsubscribeCommand",
    "run",
]
