"""A workflow definition: the versioned JSON document, its Pydantic models and the parser.

A workflow is a graph of steps with ids. The document lists them; a step without an
explicit ``next`` falls through to the one listed after it, and the last one ends the
journey ("completed"). Branching steps (``condition``, ``wait_for_event``, ``split``)
name every branch. The reference is docs/workflows.md.

``parse_workflow(doc, ctx)`` checks what the shape cannot say, and every refusal is an
``InvalidWorkflow`` (422, code ``invalid_workflow`` or a more precise one) whose ``field``
is the path at fault (``steps[3].next``) and whose message names the step id:
unreachable steps, missing branches, dangling ids, loops that never wait, unknown
templates, lists and segments, percentages that do not add up to 100, durations that
are zero or longer than ten years. Conditions and goals use the segmentation engine's
own format and parser (``postwise.segments.definition``), so a condition means exactly
what the same document means as a segment.

Only JSON: PyYAML is not a dependency of Postwise; a YAML front end would parse to the
same ``doc`` and call ``parse_workflow``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from postwise.core.errors import FieldError, PostwiseError
from postwise.segments.definition import (
    Definition,
    InvalidSegment,
    PropertyFilter,
    SchemaContext,
    parse_definition,
)

FORMAT_VERSION = 1
MAX_STEPS = 200
MAX_DURATION_MINUTES = 3660 * 24 * 60  # ten years, as the segment engine's longest window
STEP_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
EVENT_NAME_LIMIT = 255
ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class InvalidWorkflow(PostwiseError):
    status = 422
    title = "Invalid workflow definition"
    default_code = "invalid_workflow"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --- building blocks -------------------------------------------------------------------


class Duration(_Model):
    """``{"days": 3}``, ``{"hours": 1}``, ``{"minutes": 30}`` or a sum of them; never zero,
    at most ten years."""

    days: int = Field(default=0, ge=0)
    hours: int = Field(default=0, ge=0)
    minutes: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> Duration:
        total = self.total_minutes
        if total <= 0:
            raise ValueError("a duration must be longer than zero")
        if total > MAX_DURATION_MINUTES:
            raise ValueError("a duration is at most ten years (3660 days)")
        return self

    @property
    def total_minutes(self) -> int:
        return (self.days * 24 + self.hours) * 60 + self.minutes

    @property
    def seconds(self) -> int:
        return self.total_minutes * 60


def _time_of_day(value: str) -> time:
    match = TIME_OF_DAY.fullmatch(value)
    if match is None:
        raise ValueError(f"expected a time of day HH:MM (24-hour), got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


EventName = Annotated[str, Field(min_length=1, max_length=EVENT_NAME_LIMIT)]
EventNames = EventName | Annotated[list[EventName], Field(min_length=1, max_length=20)]


def event_names(value: str | list[str]) -> tuple[str, ...]:
    """One event name or several (any of them)."""
    return (value,) if isinstance(value, str) else tuple(value)


ListRef = Annotated[int, Field(ge=1)] | Annotated[str, Field(min_length=1, max_length=200)]


# --- triggers ---------------------------------------------------------------------------


class EventTrigger(_Model):
    """The contact performed an event (tracked via /v1), optionally with property filters
    in the segment engine's format."""

    type: Literal["event"]
    event: str = Field(min_length=1, max_length=EVENT_NAME_LIMIT)
    where: list[PropertyFilter] = Field(default_factory=list)


class SegmentTrigger(_Model):
    type: Literal["segment_entered", "segment_exited"]
    segment: int = Field(ge=1)


class ListTrigger(_Model):
    type: Literal["list_subscribed"]
    list: ListRef


class DateTrigger(_Model):
    """A date attribute is reached: every year on its month-day (``yearly``, birthdays,
    purchase anniversaries) or once, ``offset_days`` before (negative) or after it (trial
    ends in 3 days: ``-3``). The daily date job enrolls at ``at`` in the contact's zone."""

    type: Literal["date"]
    attribute: str
    yearly: bool = False
    offset_days: int = Field(default=0, ge=-366, le=366)
    at: str = "09:00"


class ManualTrigger(_Model):
    """Enrollment through the API or CLI only."""

    type: Literal["manual"]


Trigger = Annotated[
    EventTrigger | SegmentTrigger | ListTrigger | DateTrigger | ManualTrigger,
    Field(discriminator="type"),
]


# --- steps ------------------------------------------------------------------------------


class _Step(_Model):
    id: str
    next: str | None = None


class SendEmail(_Step):
    """Send a template. ``marketing`` mail counts toward the frequency cap and respects
    quiet hours; ``marketing: false`` (a receipt, a booked-demo confirmation) does not."""

    type: Literal["send_email"]
    template: str = Field(min_length=1, max_length=200)
    sender: str | None = Field(default=None, min_length=1, max_length=320)
    marketing: bool = True


class Wait(_Step):
    type: Literal["wait"]
    duration: Duration


class WaitUntil(_Step):
    """Wait until a time of day in the contact's zone (``time``: its next occurrence, or
    with ``days_later`` N, that time on the local calendar day N days after today), or
    until a date
    attribute (``attribute`` plus ``offset_days``, at ``time`` or 09:00 local). A date
    already past continues at once; a missing one follows ``if_missing``."""

    type: Literal["wait_until"]
    time: str | None = None
    days_later: int = Field(default=0, ge=0, le=366)
    attribute: str | None = None
    offset_days: int = Field(default=0, ge=-366, le=366)
    if_missing: Literal["continue", "exit"] = "continue"

    @model_validator(mode="after")
    def _what(self) -> WaitUntil:
        if self.time is None and self.attribute is None:
            raise ValueError('give "time" (HH:MM), "attribute", or both')
        if self.time is not None:
            _time_of_day(self.time)
        if self.days_later and (self.time is None or self.attribute is not None):
            raise ValueError('"days_later" goes with "time" alone')
        return self


class WaitForEvent(_Step):
    """Wait for an event (one name or a list: any of them; with property filters) up to
    ``timeout``; ``on_event`` if it
    arrives in time, ``on_timeout`` otherwise. There is no plain ``next``."""

    type: Literal["wait_for_event"]
    event: EventNames
    where: list[PropertyFilter] = Field(default_factory=list)
    timeout: Duration
    on_event: str | None = None
    on_timeout: str | None = None


class Condition(_Step):
    """Branch on a segment definition evaluated for the contact at that moment."""

    type: Literal["condition"]
    segment: dict[str, Any]
    yes: str | None = None
    no: str | None = None


class SplitBranch(_Model):
    percent: float = Field(gt=0, le=100)
    next: str


class Split(_Step):
    """Random split by percentages; the draw is a hash of (enrollment, step), so a replay
    takes the same branch."""

    type: Literal["split"]
    branches: list[SplitBranch] = Field(min_length=2, max_length=10)


class UpdateAttribute(_Step):
    type: Literal["update_attribute"]
    attribute: str
    value: str | int | float | bool | None


class AddToList(_Step):
    type: Literal["add_to_list"]
    list: ListRef


class RemoveFromList(_Step):
    type: Literal["remove_from_list"]
    list: ListRef


class Unsubscribe(_Step):
    """Unsubscribe the contact: from one list, or (no ``list``) from all marketing. The
    sunset playbook's list hygiene."""

    type: Literal["unsubscribe"]
    list: ListRef | None = None


class CallWebhook(_Step):
    """POST a JSON body signed with HMAC-SHA256 under the workspace secret named
    ``secret``; retried ``max_attempts`` times with exponential backoff from ``backoff``
    seconds, then recorded as failed. The journey does not wait for it."""

    type: Literal["webhook"]
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")
    secret: str = Field(min_length=1, max_length=200)
    body: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff: int = Field(default=30, ge=1, le=3600)


class ExitStep(_Step):
    type: Literal["exit"]
    reason: str = Field(default="exit_step", min_length=1, max_length=100)


Step = Annotated[
    SendEmail
    | Wait
    | WaitUntil
    | WaitForEvent
    | Condition
    | Split
    | UpdateAttribute
    | AddToList
    | RemoveFromList
    | Unsubscribe
    | CallWebhook
    | ExitStep,
    Field(discriminator="type"),
]
WAITING_STEPS = (Wait, WaitUntil, WaitForEvent)


# --- goal and policies -----------------------------------------------------------------


class Goal(_Model):
    """Met when the contact performs ``event`` (a name or a list: any of them; with
    filters), or when ``segment`` (a segment definition) holds; either way the contact
    leaves wherever they are."""

    event: EventNames | None = None
    where: list[PropertyFilter] = Field(default_factory=list)
    segment: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Goal:
        if (self.event is None) == (self.segment is None):
            raise ValueError('a goal is either "event" or "segment"')
        if self.where and self.event is None:
            raise ValueError('"where" filters an event goal')
        return self


class Reentry(_Model):
    mode: Literal["once", "always", "cooldown"] = "once"
    cooldown: Duration | None = None

    @model_validator(mode="after")
    def _cooldown(self) -> Reentry:
        if (self.mode == "cooldown") != (self.cooldown is not None):
            raise ValueError('"cooldown" is given exactly when mode is "cooldown"')
        return self


class FrequencyCap(_Model):
    """At most ``per_day`` marketing emails in any 24 hours and ``per_week`` in any 7 days
    per contact, across all workflows and campaigns."""

    per_day: int | None = Field(default=None, ge=1, le=100)
    per_week: int | None = Field(default=None, ge=1, le=500)


class QuietHours(_Model):
    """No marketing email between ``start`` and ``end`` local time (may cross midnight)."""

    start: str
    end: str

    @model_validator(mode="after")
    def _times(self) -> QuietHours:
        if _time_of_day(self.start) == _time_of_day(self.end):
            raise ValueError("quiet hours need start and end to differ")
        return self


class Policies(_Model):
    reentry: Reentry = Field(default_factory=Reentry)
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    timezone: str = "UTC"  # for contacts without a valid time zone


class WorkflowDoc(_Model):
    version: Literal[1] = FORMAT_VERSION  # type: ignore[assignment]
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    triggers: list[Trigger] = Field(min_length=1, max_length=20)
    start: str | None = None
    steps: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_STEPS)
    goal: Goal | None = None
    policies: Policies = Field(default_factory=Policies)


# --- parse result -----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowContext:
    """What a definition is checked against in one workspace. ``None`` skips a check
    (a playbook is loaded before it is installed anywhere).

    ``templates``: the ids and names/keys of templates (as text); ``senders``: sender
    identities (ids or addresses, as text); ``lists``: list ids and
    names; ``webhook_secrets``: names of configured webhook secrets; ``segments``: the
    segment engine's context (attributes, stored segments for ``{"segment": id}``).
    """

    templates: frozenset[str] | None = None
    senders: frozenset[str] | None = None
    lists: frozenset[int | str] | None = None
    webhook_secrets: frozenset[str] | None = None
    segments: SchemaContext = field(default_factory=SchemaContext)


@dataclass(frozen=True)
class Workflow:
    """A checked workflow: steps by id, the start, each step's successors, the parsed
    segment definitions of conditions (by step id) and of the goal."""

    name: str
    description: str
    triggers: tuple[Any, ...]
    start: str
    steps: Mapping[str, Any]
    order: tuple[str, ...]
    goal: Goal | None
    goal_segment: Definition | None
    conditions: Mapping[str, Definition]
    policies: Policies
    doc: Mapping[str, Any]

    def step(self, step_id: str) -> Any:
        return self.steps[step_id]

    def following(self, step_id: str) -> str | None:
        """Where a non-branching step goes: its ``next``, else the step listed after it,
        else nowhere (the journey is complete)."""
        step = self.steps[step_id]
        if step.next is not None:
            return str(step.next)
        index = self.order.index(step_id)
        return self.order[index + 1] if index + 1 < len(self.order) else None

    def successors(self, step_id: str) -> list[str]:
        step = self.steps[step_id]
        if isinstance(step, Condition):
            return [s for s in (step.yes, step.no) if s is not None]
        if isinstance(step, WaitForEvent):
            return [s for s in (step.on_event, step.on_timeout) if s is not None]
        if isinstance(step, Split):
            return [b.next for b in step.branches]
        if isinstance(step, ExitStep):
            return []
        after = self.following(step_id)
        return [after] if after is not None else []


_STEP_TYPES: Mapping[str, type[_Step]] = {
    "send_email": SendEmail,
    "wait": Wait,
    "wait_until": WaitUntil,
    "wait_for_event": WaitForEvent,
    "condition": Condition,
    "split": Split,
    "update_attribute": UpdateAttribute,
    "add_to_list": AddToList,
    "remove_from_list": RemoveFromList,
    "unsubscribe": Unsubscribe,
    "webhook": CallWebhook,
    "exit": ExitStep,
}


def parse_workflow(doc: Any, ctx: WorkflowContext | None = None) -> Workflow:
    """Check ``doc`` against ``ctx``; raises ``InvalidWorkflow`` naming the step at fault."""
    ctx = ctx or WorkflowContext()
    if not isinstance(doc, Mapping):
        raise InvalidWorkflow("a workflow is a JSON object")
    try:
        top = WorkflowDoc.model_validate(dict(doc))
    except ValidationError as exc:
        raise _from_pydantic(exc, "", None) from None
    steps: dict[str, Any] = {}
    order: list[str] = []
    paths: dict[str, str] = {}
    for index, raw in enumerate(top.steps):
        path = f"steps[{index}]"
        step = _parse_step(raw, path)
        if step.id in steps:
            raise _fail(f"{path}.id", step.id, "two steps share this id", "duplicate_step")
        steps[step.id] = step
        order.append(step.id)
        paths[step.id] = path
    start = top.start if top.start is not None else order[0]
    if start not in steps:
        raise _fail("start", None, f"start names no step: {start!r}", "dangling_step")
    for index, trigger in enumerate(top.triggers):
        _check_trigger(trigger, f"triggers[{index}]", ctx)
    _check_policies(top.policies)
    conditions: dict[str, Definition] = {}
    for step_id, step in steps.items():
        conditions.update(_check_step(step, paths[step_id], steps, ctx))
    wf = Workflow(
        name=top.name,
        description=top.description,
        triggers=tuple(top.triggers),
        start=start,
        steps=steps,
        order=tuple(order),
        goal=top.goal,
        goal_segment=_goal_segment(top.goal, ctx),
        conditions=conditions,
        policies=top.policies,
        doc=dict(doc),
    )
    _check_graph(wf, paths)
    return wf


# --- checks -----------------------------------------------------------------------------


def _fail(path: str, step_id: str | None, message: str, code: str = "invalid_workflow") -> Any:
    text = f"step {step_id!r}: {message}" if step_id is not None else message
    return InvalidWorkflow(text, code=code, field=path or None)


def _from_pydantic(exc: ValidationError, path: str, step_id: str | None) -> InvalidWorkflow:
    errors = []
    for err in exc.errors():
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        where = path
        for part in loc:
            if isinstance(part, int):
                where = f"{where}[{part}]"
            else:
                where = f"{where}.{part}" if where else str(part)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}" if loc else "unknown key"
        prefix = f"step {step_id!r}: " if step_id is not None else ""
        code = "invalid_duration" if "duration" in message or "timeout" in where else None
        errors.append(
            FieldError(where or None, code or "invalid_workflow", f"{prefix}{where}: {message}")
        )
    first = errors[0]
    return InvalidWorkflow(first.message, code=first.code, field=first.field, errors=errors)


def _parse_step(raw: Mapping[str, Any], path: str) -> Any:
    step_id = raw.get("id")
    if not isinstance(step_id, str) or not STEP_ID.fullmatch(step_id):
        raise _fail(
            f"{path}.id",
            None,
            f"{path}: every step needs an id of 1..64 letters, digits, '_', '.' or '-'",
            "invalid_step_id",
        )
    kind = raw.get("type")
    model = _STEP_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise _fail(
            f"{path}.type",
            step_id,
            f"unknown step type {kind!r}; use one of {', '.join(_STEP_TYPES)}",
        )
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise _from_pydantic(exc, path, step_id) from None


def _known_list(ref: int | str, ctx: WorkflowContext, path: str, step_id: str | None) -> None:
    if ctx.lists is not None and ref not in ctx.lists:
        raise _fail(path, step_id, f"unknown list {ref!r}", "unknown_list")


def _check_attribute(name: str, path: str, step_id: str | None) -> None:
    if not ATTRIBUTE_NAME.fullmatch(name):
        raise _fail(path, step_id, f"attribute name {name!r} is not a valid attribute name")


def _check_trigger(trigger: Any, path: str, ctx: WorkflowContext) -> None:
    if isinstance(trigger, EventTrigger):
        _check_filters(trigger.where, f"{path}.where", None, ctx)
    elif isinstance(trigger, ListTrigger):
        _known_list(trigger.list, ctx, f"{path}.list", None)
    elif isinstance(trigger, DateTrigger):
        _check_attribute(trigger.attribute, f"{path}.attribute", None)
        try:
            _time_of_day(trigger.at)
        except ValueError as exc:
            raise _fail(f"{path}.at", None, str(exc)) from None
    elif (
        isinstance(trigger, SegmentTrigger)
        and ctx.segments.segments
        and trigger.segment not in ctx.segments.segments
    ):
        raise _fail(f"{path}.segment", None, f"unknown segment {trigger.segment}")


def _check_filters(
    filters: Sequence[PropertyFilter], path: str, step_id: str | None, ctx: WorkflowContext
) -> None:
    """Property filters mean what they mean in a segment: let the segment parser judge
    them as the ``where`` of an event condition."""
    if not filters:
        return
    where = [f.model_dump(mode="json", exclude_none=True) for f in filters]
    doc = {"event": "x", "where": where}
    try:
        parse_definition(doc, ctx.segments)
    except InvalidSegment as exc:
        inner = (exc.field or "").removeprefix("where")
        raise _fail(f"{path}{inner}", step_id, exc.message, "invalid_filter") from None


def _segment(doc: Any, path: str, step_id: str | None, ctx: WorkflowContext) -> Definition:
    try:
        return parse_definition(doc, ctx.segments)
    except InvalidSegment as exc:
        where = f"{path}.{exc.field}" if exc.field else path
        raise _fail(where, step_id, f"segment condition: {exc.message}", exc.code) from None


def _goal_segment(goal: Goal | None, ctx: WorkflowContext) -> Definition | None:
    if goal is None:
        return None
    if goal.event is not None:
        _check_filters(goal.where, "goal.where", None, ctx)
        return None
    return _segment(goal.segment, "goal.segment", None, ctx)


def _check_policies(policies: Policies) -> None:
    try:
        ZoneInfo(policies.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail("policies.timezone", None, f"unknown time zone {policies.timezone!r}") from None
    cap = policies.frequency_cap
    if cap is not None:
        if cap.per_day is None and cap.per_week is None:
            raise _fail("policies.frequency_cap", None, "give per_day, per_week or both")
        if cap.per_day is not None and cap.per_week is not None and cap.per_week < cap.per_day:
            raise _fail("policies.frequency_cap.per_week", None, "per_week is below per_day")
    quiet = policies.quiet_hours
    if quiet is not None:
        for key in ("start", "end"):
            try:
                _time_of_day(getattr(quiet, key))
            except ValueError as exc:
                raise _fail(f"policies.quiet_hours.{key}", None, str(exc)) from None


def _check_step(
    step: Any, path: str, steps: Mapping[str, Any], ctx: WorkflowContext
) -> dict[str, Definition]:
    sid = step.id

    def target(value: str | None, key: str, *, required: bool) -> None:
        if value is None:
            if required:
                raise _fail(f"{path}.{key}", sid, f"missing branch {key!r}", "missing_branch")
            return
        if value not in steps:
            raise _fail(f"{path}.{key}", sid, f"{key} names no step: {value!r}", "dangling_step")

    if isinstance(step, Condition | WaitForEvent | Split | ExitStep) and step.next is not None:
        raise _fail(f"{path}.next", sid, f"a {step.type} step takes no 'next'")
    target(step.next, "next", required=False)
    found: dict[str, Definition] = {}
    if isinstance(step, SendEmail):
        if ctx.templates is not None and step.template not in ctx.templates:
            raise _fail(
                f"{path}.template", sid, f"unknown template {step.template!r}", "unknown_template"
            )
        if step.sender is not None and ctx.senders is not None and step.sender not in ctx.senders:
            raise _fail(f"{path}.sender", sid, f"unknown sender {step.sender!r}", "unknown_sender")
    elif isinstance(step, WaitUntil):
        if step.attribute is not None:
            _check_attribute(step.attribute, f"{path}.attribute", sid)
    elif isinstance(step, WaitForEvent):
        _check_filters(step.where, f"{path}.where", sid, ctx)
        target(step.on_event, "on_event", required=True)
        target(step.on_timeout, "on_timeout", required=True)
    elif isinstance(step, Condition):
        found[sid] = _segment(step.segment, f"{path}.segment", sid, ctx)
        target(step.yes, "yes", required=True)
        target(step.no, "no", required=True)
    elif isinstance(step, Split):
        for i, branch in enumerate(step.branches):
            target(branch.next, f"branches[{i}].next", required=True)
        total = sum(b.percent for b in step.branches)
        if abs(total - 100) > 1e-6:
            raise _fail(
                f"{path}.branches",
                sid,
                f"split percentages add up to {total:g}, not 100",
                "invalid_percentages",
            )
    elif isinstance(step, UpdateAttribute):
        _check_attribute(step.attribute, f"{path}.attribute", sid)
    elif isinstance(step, AddToList | RemoveFromList | Unsubscribe):
        if step.list is not None:
            _known_list(step.list, ctx, f"{path}.list", sid)
    elif (
        isinstance(step, CallWebhook)
        and ctx.webhook_secrets is not None
        and step.secret not in ctx.webhook_secrets
    ):
        raise _fail(
            f"{path}.secret", sid, f"unknown webhook secret {step.secret!r}", "unknown_secret"
        )
    return found


def waits(step: Any) -> bool:
    """Does this step always hold the contact for some time? A loop is safe only through
    one. A ``wait_until`` on a date attribute does not (a past date continues at once);
    a time-of-day one does (its next occurrence is strictly in the future)."""
    if isinstance(step, Wait | WaitForEvent):
        return True
    return isinstance(step, WaitUntil) and step.attribute is None


def _check_graph(wf: Workflow, paths: Mapping[str, str]) -> None:
    seen = {wf.start}
    todo = [wf.start]
    while todo:
        for nxt in wf.successors(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for step_id in wf.order:
        if step_id not in seen:
            raise _fail(
                paths[step_id], step_id, "unreachable: no path from the start leads here",
                "unreachable_step",
            )  # fmt: skip
    # A loop is harmless only if it waits: look for a cycle among the instant steps.
    instant = {s for s in wf.order if not waits(wf.steps[s])}
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        trail.append(node)
        for nxt in wf.successors(node):
            if nxt not in instant:
                continue
            if state.get(nxt) == 1:
                loop = [*trail[trail.index(nxt) :], nxt]
                raise _fail(
                    paths[nxt],
                    nxt,
                    f"loop without a wait: {' -> '.join(loop)}",
                    "loop_without_wait",
                )
            if nxt not in state:
                visit(nxt, trail)
        trail.pop()
        state[node] = 2

    for step_id in wf.order:
        if step_id in instant and step_id not in state:
            visit(step_id, [])
