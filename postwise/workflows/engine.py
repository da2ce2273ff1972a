"""The pure core of the workflow engine: (workflow, state, stimulus, now, facts) -> outcome.

Nothing here reads the database, the clock or the network. The runtime loads an
enrollment's ``State`` (a JSON row), the contact's ``Facts`` (time zone, attributes,
recent marketing sends, evaluated conditions), calls ``advance`` and then carries out the
returned commands and stores the new state, all in one transaction; the side effects
(``SendEmail``, ``CallWebhook``) carry idempotency keys so a replay after a crash cannot
send twice. Because time is an argument, the whole engine runs under a simulated clock
(tests/workflows/).

``advance`` runs consecutive instant steps (sends, list changes, branches) until the
journey must wait (the outcome holds ``ScheduleWake``) or ends (``Exit``). Rules:

* the goal is checked first, on every stimulus: once met the contact exits wherever it
  is, with reason ``"goal"``;
* a marketing send outside the frequency cap or inside quiet hours is deferred to the
  first allowed instant (the enrollment stays on the send step and wakes then);
* a split draws from a hash of (enrollment id, step id), so replays are stable;
* "wait until 09:00" is 09:00 on the contact's wall clock, DST included.

The reference is docs/workflows.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from postwise.segments.definition import PropertyFilter
from postwise.segments.evaluator import property_holds
from postwise.workflows.definition import (
    AddToList,
    CallWebhook,
    Condition,
    EventTrigger,
    ExitStep,
    InvalidWorkflow,
    QuietHours,
    RemoveFromList,
    SendEmail,
    Split,
    Unsubscribe,
    UpdateAttribute,
    Wait,
    WaitForEvent,
    WaitUntil,
    Workflow,
    event_names,
)

MAX_INSTANT_STEPS = 1000  # a checked workflow cannot loop without waiting; this is a fuse
HISTORY_LIMIT = 500
EVENTS_KEPT = 50
DEFAULT_SEND_TIME = time(9, 0)


# --- state ------------------------------------------------------------------------------


class Waiting(BaseModel):
    """Why the enrollment is parked: ``duration``/``until`` (a wait step), ``event`` (a
    wait-for-event step: ``event`` by ``until``), ``send`` (a send deferred by the
    frequency cap or quiet hours)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["duration", "until", "event", "send"]
    until: datetime
    event: list[str] | None = None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    at: datetime
    outcome: str


class State(BaseModel):
    """An enrollment's journey so far; ``model_dump(mode="json")`` is what the runtime
    stores and ``State.model_validate`` reads it back.

    ``status``: ``new`` (not started), ``active`` (on ``step``, parked while ``waiting``
    is set), ``exited`` (``exit_reason`` says why). ``step`` is the step being executed
    or waited on (``None`` once finished);
    ``visits`` counts entries per step (part of every idempotency key); ``data`` is the
    enrollment's context (the trigger event's properties), passed to every send.
    """

    model_config = ConfigDict(extra="forbid")

    enrollment_id: str
    status: Literal["new", "active", "exited"] = "new"
    step: str | None = None
    waiting: Waiting | None = None
    visits: dict[str, int] = Field(default_factory=dict)
    history: list[HistoryEntry] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    entered_at: datetime | None = None
    exited_at: datetime | None = None
    exit_reason: str | None = None

    @classmethod
    def new(
        cls,
        enrollment_id: str | int,
        data: Mapping[str, Any] | None = None,
        *,
        event: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> State:
        """A fresh enrollment; ``event``/``properties``: the trigger event, kept in
        ``data["events"]`` for the templates."""
        state = cls(enrollment_id=str(enrollment_id), data=dict(data or {}))
        if event is not None:
            remember_event(state.data, event, properties or {})
        return state

    @property
    def finished(self) -> bool:
        return self.status == "exited"

    @property
    def wake_at(self) -> datetime | None:
        """When the enrollment next needs a ``Wake`` (the runtime's indexed column)."""
        return self.waiting.until if self.waiting is not None else None


# --- stimuli ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Enroll:
    """Start the journey (trigger fired, manual or API enrollment)."""


@dataclass(frozen=True)
class Wake:
    """A scheduled wake-up came due (an early or repeated one is harmless)."""


@dataclass(frozen=True)
class EventArrived:
    """The contact performed an event (checked against the goal and a wait-for-event)."""

    name: str
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentChanged:
    """The contact entered or left a segment; the runtime re-evaluated the goal into
    ``facts.goal_met``."""

    segment_id: int
    entered: bool


@dataclass(frozen=True)
class GoalCheck:
    """Re-check a segment goal (``facts.goal_met``) without anything else happening."""


@dataclass(frozen=True)
class Stop:
    """Take the contact out for an outside reason (unsubscribed, deleted, workflow
    stopped, migrated)."""

    reason: str


Stimulus = Enroll | Wake | EventArrived | SegmentChanged | GoalCheck | Stop


# --- facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the runtime knows about the contact now.

    ``timezone``: IANA name (invalid or missing: the workflow's policy zone).
    ``attributes``: contact attributes, for ``wait_until`` on a date attribute.
    ``recent_sends``: moments of the contact's marketing emails in the last 7 days across
    all workflows and campaigns (the frequency cap counts them).
    ``conditions``: condition step id -> evaluated segment definition; steps not in it are
    decided by ``decide`` (e.g. ``conditions.evaluator_for(contact_facts)``).
    ``goal_met``: a segment goal evaluated now.
    """

    timezone: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    recent_sends: Sequence[datetime] = ()
    conditions: Mapping[str, bool] = field(default_factory=dict)
    decide: Callable[[str, Workflow, datetime], bool] | None = None
    goal_met: bool = False


class MissingFact(LookupError):
    """The runtime did not supply what a step needs (a condition's value): a bug in the
    caller, never a user error."""


# --- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendEmailCommand:
    key: str
    step: str
    template: str
    sender: str | None
    marketing: bool
    data: Mapping[str, Any]


@dataclass(frozen=True)
class ScheduleWake:
    at: datetime


@dataclass(frozen=True)
class UpdateAttributeCommand:
    key: str
    step: str
    attribute: str
    value: Any


@dataclass(frozen=True)
class AddToListCommand:
    key: str
    step: str
    list: int | str


@dataclass(frozen=True)
class RemoveFromListCommand:
    key: str
    step: str
    list: int | str


@dataclass(frozen=True)
class UnsubscribeCommand:
    key: str
    step: str
    list: int | str | None


@dataclass(frozen=True)
class CallWebhookCommand:
    """POST ``body`` (plus the runtime's contact and enrollment envelope) to ``url`` with
    an HMAC-SHA256 signature under the secret named ``secret``; ``max_attempts`` tries,
    ``backoff`` * 2**n seconds apart; a failure is recorded, never blocks the journey."""

    key: str
    step: str
    url: str
    secret: str
    body: Mapping[str, Any]
    max_attempts: int
    backoff: int


@dataclass(frozen=True)
class ExitCommand:
    reason: str


@dataclass(frozen=True)
class RecordStep:
    """One history line (also in ``State.history``), for metrics and the history API."""

    step: str
    at: datetime
    outcome: str


Command = (
    SendEmailCommand
    | ScheduleWake
    | UpdateAttributeCommand
    | AddToListCommand
    | RemoveFromListCommand
    | UnsubscribeCommand
    | CallWebhookCommand
    | ExitCommand
    | RecordStep
)


@dataclass(frozen=True)
class Outcome:
    state: State
    commands: tuple[Command, ...]

    @property
    def wake_at(self) -> datetime | None:
        for cmd in self.commands:
            if isinstance(cmd, ScheduleWake):
                return cmd.at
        return None

    @property
    def exit_reason(self) -> str | None:
        for cmd in self.commands:
            if isinstance(cmd, ExitCommand):
                return cmd.reason
        return None


# --- time -------------------------------------------------------------------------------


def zone(facts: Facts, workflow: Workflow) -> ZoneInfo:
    for name in (facts.timezone, workflow.policies.timezone):
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def local_moment(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``at`` on ``day`` on the wall clock of ``tz``, in UTC. A time skipped by a DST jump
    (02:30 on a spring-forward night) lands where the clock shows it after the jump; a
    repeated one (autumn) means its first occurrence."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def next_time_of_day(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first instant strictly after ``now`` at which the local clock reads ``at``."""
    today = now.astimezone(tz).date()
    for offset in range(3):
        moment = local_moment(today + timedelta(days=offset), at, tz)
        if moment > now:
            return moment
    raise AssertionError("unreachable: a time of day recurs within three days")


def _in_quiet(moment: datetime, quiet: QuietHours, tz: ZoneInfo) -> bool:
    local = moment.astimezone(tz).time()
    start, end = parse_hhmm(quiet.start), parse_hhmm(quiet.end)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def after_quiet_hours(moment: datetime, quiet: QuietHours | None, tz: ZoneInfo) -> datetime:
    """``moment`` if it is outside quiet hours, else the end of the quiet period."""
    if quiet is None or not _in_quiet(moment, quiet, tz):
        return moment
    end = parse_hhmm(quiet.end)
    today = moment.astimezone(tz).date()
    for offset in range(3):
        candidate = local_moment(today + timedelta(days=offset), end, tz)
        if candidate > moment and not _in_quiet(candidate, quiet, tz):
            return candidate
    raise AssertionError("unreachable: quiet hours end within three days")


def cap_allows_at(
    now: datetime, sends: Sequence[datetime], per_day: int | None, per_week: int | None
) -> datetime:
    """The first instant >= ``now`` at which one more send keeps at most ``per_day`` in any
    24 hours and ``per_week`` in any 7 days (rolling windows; ``sends`` are in the past)."""
    ordered = sorted((_utc(s) for s in sends), reverse=True)
    earliest = now
    for limit, span in ((per_day, timedelta(days=1)), (per_week, timedelta(days=7))):
        if limit is not None and len(ordered) >= limit:
            earliest = max(earliest, ordered[limit - 1] + span)
    return earliest


def date_attribute(value: Any) -> tuple[date, time | None] | None:
    """A date attribute as (day, time of day or None); ``None`` if unset or malformed."""
    if isinstance(value, datetime):
        moment = _utc(value)
        return moment.date(), moment.time()
    if isinstance(value, date):
        return value, None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text), None
        moment = _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None
    return moment.date(), moment.time()


def split_draw(enrollment_id: str, step_id: str) -> float:
    """A number in [0, 100) fixed by (enrollment, step)."""
    digest = hashlib.sha256(f"{enrollment_id}\x00{step_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def event_matches(
    names: str | Sequence[str],
    filters: Sequence[PropertyFilter],
    event: str,
    properties: Mapping[str, Any],
) -> bool:
    """Property filters mean what they mean in a segment (the evaluator's own test)."""
    wanted = (names,) if isinstance(names, str) else names
    return event in wanted and all(property_holds(f, properties) for f in filters)


def remember_event(data: dict[str, Any], name: str, properties: Mapping[str, Any]) -> None:
    """Keep an event's properties in the enrollment's ``data["events"][name]`` (oldest
    first, at most ``EVENTS_KEPT``), where templates find them (the cart's items)."""
    events = dict(data.get("events") or {})  # copy on write: nested values are never
    events[name] = [*events.get(name, ()), dict(properties)][-EVENTS_KEPT:]  # changed in place
    data["events"] = events


def meets_goal(workflow: Workflow, event: EventArrived) -> bool:
    """Whether ``event`` is the workflow's goal event (its filters included): the runtime
    hands such an event to a paused workflow's enrollments too, so it is not missed."""
    goal = workflow.goal
    return (
        goal is not None
        and goal.event is not None
        and event_matches(goal.event, goal.where, event.name, event.properties)
    )


# --- advance ----------------------------------------------------------------------------


def advance(
    workflow: Workflow, state: State, stimulus: Stimulus, now: datetime, facts: Facts
) -> Outcome:
    """The next state and the commands to carry out; ``state`` is not modified.

    An enrollment that is live afterwards always gets exactly one ``ScheduleWake`` (its
    next wake-up, repeated when nothing moved) and one that ended exactly one ``Exit``;
    a finished enrollment ignores every stimulus (no commands)."""
    # Only the top-level containers are ever changed (nested values are replaced, not
    # mutated), so copying them is enough to leave the caller's state untouched.
    mine = state.model_copy(
        update={
            "visits": dict(state.visits),
            "history": list(state.history),
            "data": dict(state.data),
        }
    )
    run = _Run(workflow, mine, _utc(now), facts)
    run.handle(stimulus)
    if run.state.status == "active" and not any(isinstance(c, ScheduleWake) for c in run.commands):
        run.repark()  # every outcome of a live enrollment says when it wakes next
    return Outcome(run.state, tuple(run.commands))


class _Run:
    def __init__(self, wf: Workflow, state: State, now: datetime, facts: Facts) -> None:
        self.wf = wf
        self.state = state
        self.now = now
        self.facts = facts
        self.commands: list[Command] = []
        self.tz = zone(facts, wf)
        self.sent_now: list[datetime] = []
        self.pending: str | None = None  # the step to execute next, already entered

    # bookkeeping

    def record(self, step: str, outcome: str) -> None:
        entry = HistoryEntry(step=step, at=self.now, outcome=outcome)
        self.state.history.append(entry)
        if len(self.state.history) > HISTORY_LIMIT:
            del self.state.history[: len(self.state.history) - HISTORY_LIMIT]
        self.commands.append(RecordStep(step, self.now, outcome))

    def key(self, step: str) -> str:
        return f"{self.state.enrollment_id}:{step}:{self.state.visits.get(step, 0)}"

    def exit(self, reason: str) -> None:
        self.state.status = "exited"
        self.state.step = None
        self.state.waiting = None
        self.state.exited_at = self.now
        self.state.exit_reason = reason
        self.commands.append(ExitCommand(reason))

    def park(self, waiting: Waiting) -> None:
        self.state.waiting = waiting
        self.commands.append(ScheduleWake(waiting.until))

    # stimuli

    def handle(self, stimulus: Stimulus) -> None:
        if self.state.finished:
            return
        if isinstance(stimulus, Stop):
            if self.state.step is not None:
                self.record(self.state.step, f"stopped: {stimulus.reason}")
            self.exit(stimulus.reason)
            return
        if self.goal_met(stimulus):
            self.record(self.state.step or self.wf.start, "goal")
            self.exit("goal")
            return
        if isinstance(stimulus, Enroll):
            if self.state.status != "new":
                self.repark()
                return
            self.state.entered_at = self.now
            self.state.status = "active"
            self.enter(self.wf.start)
            self.run()
            return
        if self.state.status == "new":
            return  # nothing happens to an enrollment that has not started
        waiting = self.state.waiting
        step_id = self.state.step
        if waiting is None or step_id is None:
            return
        if isinstance(stimulus, EventArrived):
            remembered = self.fires_trigger(stimulus)
            if remembered:
                remember_event(self.state.data, stimulus.name, stimulus.properties)
            step = self.wf.step(step_id)
            if (
                waiting.kind == "event"
                and isinstance(step, WaitForEvent)
                and self.now < waiting.until  # at the deadline the timeout has won
                and event_matches(step.event, step.where, stimulus.name, stimulus.properties)
            ):
                self.state.waiting = None
                self.record(step_id, "event")
                if not remembered:
                    remember_event(self.state.data, stimulus.name, stimulus.properties)
                self.go(step.on_event)
                self.run()
            return
        if isinstance(stimulus, Wake):
            if self.now < waiting.until:
                self.repark()
                return
            self.resume(step_id, waiting)
            self.run()
            return
        # SegmentChanged / GoalCheck with the goal not met: nothing moves.

    def fires_trigger(self, event: EventArrived) -> bool:
        return any(
            isinstance(t, EventTrigger)
            and event_matches(t.event, t.where, event.name, event.properties)
            for t in self.wf.triggers
        )

    def repark(self) -> None:
        if self.state.waiting is not None:
            self.commands.append(ScheduleWake(self.state.waiting.until))

    def goal_met(self, stimulus: Stimulus) -> bool:
        goal = self.wf.goal
        if goal is None:
            return False
        if goal.event is not None:
            return isinstance(stimulus, EventArrived) and meets_goal(self.wf, stimulus)
        return self.facts.goal_met

    def resume(self, step_id: str, waiting: Waiting) -> None:
        """The wait that parked us is over: a wait step completes, a deferred send is
        retried (same visit, so the same idempotency key)."""
        step = self.wf.step(step_id)
        self.state.waiting = None
        if waiting.kind == "send":
            self.pending = step_id
            return
        if waiting.kind == "event" and isinstance(step, WaitForEvent):
            self.record(step_id, "timeout")
            self.go(step.on_timeout)
            return
        self.record(step_id, "waited")
        self.go(self.wf.following(step_id))

    # execution

    def enter(self, step_id: str) -> None:
        self.state.visits[step_id] = self.state.visits.get(step_id, 0) + 1
        self.state.step = step_id
        self.pending = step_id

    def go(self, step_id: str | None) -> None:
        if step_id is None:
            self.state.step = None
            self.pending = None
            self.exit("completed")
            return
        self.enter(step_id)

    def run(self) -> None:
        for _ in range(MAX_INSTANT_STEPS):
            step_id = self.pending
            if step_id is None or self.state.finished:
                return
            self.pending = None
            self.execute(step_id)
            if self.state.waiting is not None or self.state.finished:
                return
        raise RuntimeError(
            f"workflow {self.wf.name!r} ran {MAX_INSTANT_STEPS} steps without waiting"
        )

    def execute(self, step_id: str) -> None:
        step = self.wf.step(step_id)
        if isinstance(step, SendEmail):
            self.send(step)
        elif isinstance(step, Wait):
            self.park(
                Waiting(kind="duration", until=self.now + timedelta(seconds=step.duration.seconds))
            )
        elif isinstance(step, WaitUntil):
            self.wait_until(step)
        elif isinstance(step, WaitForEvent):
            until = self.now + timedelta(seconds=step.timeout.seconds)
            self.park(Waiting(kind="event", until=until, event=list(event_names(step.event))))
        elif isinstance(step, Condition):
            verdict = self.condition(step_id)
            self.record(step_id, "yes" if verdict else "no")
            self.go(step.yes if verdict else step.no)
        elif isinstance(step, Split):
            draw = split_draw(self.state.enrollment_id, step_id)
            bound = 0.0
            chosen = step.branches[-1]
            for branch in step.branches:
                bound += branch.percent
                if draw < bound:
                    chosen = branch
                    break
            self.record(step_id, f"branch:{chosen.next}")
            self.go(chosen.next)
        elif isinstance(step, ExitStep):
            self.record(step_id, "exit")
            self.exit(step.reason)
        else:
            self.command(step)
            self.go(self.wf.following(step_id))

    def command(self, step: Any) -> None:
        key, sid = self.key(step.id), step.id
        if isinstance(step, UpdateAttribute):
            self.commands.append(UpdateAttributeCommand(key, sid, step.attribute, step.value))
            self.record(sid, "updated")
        elif isinstance(step, AddToList):
            self.commands.append(AddToListCommand(key, sid, step.list))
            self.record(sid, "added")
        elif isinstance(step, RemoveFromList):
            self.commands.append(RemoveFromListCommand(key, sid, step.list))
            self.record(sid, "removed")
        elif isinstance(step, Unsubscribe):
            self.commands.append(UnsubscribeCommand(key, sid, step.list))
            self.record(sid, "unsubscribed")
        elif isinstance(step, CallWebhook):
            self.commands.append(
                CallWebhookCommand(
                    key,
                    sid,
                    step.url,
                    step.secret,
                    dict(step.body),
                    step.max_attempts,
                    step.backoff,
                )
            )
            self.record(sid, "webhook")
        else:  # pragma: no cover - every step type is handled above
            raise TypeError(f"not an action step: {step!r}")

    def condition(self, step_id: str) -> bool:
        if step_id in self.facts.conditions:
            return bool(self.facts.conditions[step_id])
        if self.facts.decide is not None:
            return bool(self.facts.decide(step_id, self.wf, self.now))
        raise MissingFact(f"condition {step_id!r} was not evaluated")

    def send(self, step: SendEmail) -> None:
        if step.marketing:
            policies = self.wf.policies
            allowed = self.now
            cap = policies.frequency_cap
            if cap is not None:
                sends = [*self.facts.recent_sends, *self.sent_now]
                allowed = cap_allows_at(allowed, sends, cap.per_day, cap.per_week)
            allowed = after_quiet_hours(allowed, policies.quiet_hours, self.tz)
            if allowed > self.now:
                self.record(step.id, "deferred")
                self.park(Waiting(kind="send", until=allowed))
                return
            self.sent_now.append(self.now)
        self.commands.append(
            SendEmailCommand(
                self.key(step.id), step.id, step.template, step.sender, step.marketing,
                dict(self.state.data),
            )
        )  # fmt: skip
        self.record(step.id, "sent")
        self.go(self.wf.following(step.id))

    def wait_until(self, step: WaitUntil) -> None:
        at = parse_hhmm(step.time) if step.time is not None else None
        if step.attribute is None:
            assert at is not None  # the parser requires one of the two
            until = next_time_of_day(self.now, at, self.tz)
            if step.days_later:
                day = self.now.astimezone(self.tz).date() + timedelta(days=step.days_later)
                until = max(until, local_moment(day, at, self.tz))
            self.park(Waiting(kind="until", until=until))
            return
        found = date_attribute(self.facts.attributes.get(step.attribute))
        if found is None:
            self.record(step.id, "missing")
            if step.if_missing == "exit":
                self.exit("missing_attribute")
            else:
                self.go(self.wf.following(step.id))
            return
        day, moment_time = found
        day += timedelta(days=step.offset_days)
        if at is not None or moment_time is None:
            target = local_moment(day, at or DEFAULT_SEND_TIME, self.tz)
        else:
            target = datetime.combine(day, moment_time, tzinfo=UTC)
        if target <= self.now:
            self.record(step.id, "passed")
            self.go(self.wf.following(step.id))
            return
        self.park(Waiting(kind="until", until=target))


# --- versions ---------------------------------------------------------------------------

_PARKED_ON: Mapping[str, tuple[type, ...]] = {
    "duration": (Wait, WaitUntil),
    "until": (Wait, WaitUntil),
    "event": (WaitForEvent,),
    "send": (SendEmail,),
}


def migrate(state: State, workflow: Workflow, now: datetime) -> State:
    """Move a running enrollment onto another version of its workflow (an explicit
    migration; by default enrollments finish on the version they started on).

    The enrollment keeps its step, visits, data and current wait (its deadline included)
    as long as the new version has a step of that id that parks the same way; otherwise
    ``InvalidWorkflow`` (``cannot_migrate``) names the step, and nothing changes.
    """
    if state.status != "active" or state.step is None:
        return state.model_copy(deep=True)
    step = workflow.steps.get(state.step)
    waiting = state.waiting
    fits = step is not None and (
        waiting is None or isinstance(step, _PARKED_ON.get(waiting.kind, ()))
    )
    if not fits:
        kind = f"waiting ({waiting.kind})" if waiting is not None else "on it"
        raise InvalidWorkflow(
            f"step {state.step!r}: enrollment {state.enrollment_id} is {kind} there and the "
            "new version has no such step of a matching type",
            code="cannot_migrate",
            field=state.step,
        )
    moved = state.model_copy(deep=True)
    moved.history.append(HistoryEntry(step=state.step, at=_utc(now), outcome="migrated"))
    return moved
