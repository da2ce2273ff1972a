"""A workflow as numbered lines a marketer can read (``postwise workflow show``, the API's
preview): triggers, each step with where it goes, the goal and the policies."""

from __future__ import annotations

from typing import Any

from postwise.segments.render import describe
from postwise.workflows.definition import (
    AddToList,
    CallWebhook,
    Condition,
    DateTrigger,
    Duration,
    EventTrigger,
    ExitStep,
    ListTrigger,
    ManualTrigger,
    RemoveFromList,
    SegmentTrigger,
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


def span(duration: Duration) -> str:
    parts = []
    for value, unit in (
        (duration.days, "day"),
        (duration.hours, "hour"),
        (duration.minutes, "minute"),
    ):
        if value:
            parts.append(f"{value} {unit}{'' if value == 1 else 's'}")
    return " ".join(parts)


def _events(value: str | list[str]) -> str:
    return " or ".join(event_names(value))


def trigger_line(trigger: Any) -> str:
    if isinstance(trigger, EventTrigger):
        where = f" where {len(trigger.where)} filter(s) hold" if trigger.where else ""
        return f"the contact performs {trigger.event}{where}"
    if isinstance(trigger, SegmentTrigger):
        verb = "enters" if trigger.type == "segment_entered" else "leaves"
        return f"the contact {verb} segment {trigger.segment}"
    if isinstance(trigger, ListTrigger):
        return f"the contact subscribes to list {trigger.list!r}"
    if isinstance(trigger, DateTrigger):
        when = "every year on" if trigger.yearly else "on"
        shift = ""
        if trigger.offset_days:
            side = "before" if trigger.offset_days < 0 else "after"
            shift = f"{abs(trigger.offset_days)} days {side} "
        return f"{when} {shift}the contact's {trigger.attribute}, at {trigger.at} local time"
    if isinstance(trigger, ManualTrigger):
        return "enrollment through the API or CLI"
    raise TypeError(trigger)


def step_line(wf: Workflow, step_id: str) -> str:
    step = wf.steps[step_id]
    after = wf.following(step_id)
    then = f" -> {after}" if after is not None else " -> end"
    if isinstance(step, SendEmail):
        kind = "" if step.marketing else " (transactional)"
        sender = f" from {step.sender}" if step.sender else ""
        return f"send {step.template!r}{sender}{kind}{then}"
    if isinstance(step, Wait):
        return f"wait {span(step.duration)}{then}"
    if isinstance(step, WaitUntil):
        if step.attribute is not None:
            shift = f" {step.offset_days:+d} days" if step.offset_days else ""
            at = f" at {step.time}" if step.time else ""
            return f"wait until {step.attribute}{shift}{at} (missing: {step.if_missing}){then}"
        later = f" {step.days_later} day(s) later" if step.days_later else ""
        return f"wait until {step.time} local{later}{then}"
    if isinstance(step, WaitForEvent):
        return (
            f"wait up to {span(step.timeout)} for {_events(step.event)}: "
            f"arrived -> {step.on_event}, timed out -> {step.on_timeout}"
        )
    if isinstance(step, Condition):
        return f"if {describe(wf.conditions[step_id])}: yes -> {step.yes}, no -> {step.no}"
    if isinstance(step, Split):
        return "split " + ", ".join(f"{b.percent:g}% -> {b.next}" for b in step.branches)
    if isinstance(step, UpdateAttribute):
        return f"set {step.attribute} = {step.value!r}{then}"
    if isinstance(step, AddToList):
        return f"add to list {step.list!r}{then}"
    if isinstance(step, RemoveFromList):
        return f"remove from list {step.list!r}{then}"
    if isinstance(step, Unsubscribe):
        target = f"list {step.list!r}" if step.list is not None else "all marketing"
        return f"unsubscribe from {target}{then}"
    if isinstance(step, CallWebhook):
        return f"call webhook {step.url} (signed with {step.secret!r}){then}"
    if isinstance(step, ExitStep):
        return f"exit ({step.reason})"
    raise TypeError(step)


def outline(wf: Workflow) -> list[str]:
    lines = [wf.name, "Starts: " + "; or ".join(map(trigger_line, wf.triggers))]
    for number, step_id in enumerate(wf.order, 1):
        lines.append(f"{number}. {step_id}: {step_line(wf, step_id)}")
    goal = wf.goal
    if goal is not None:
        if goal.event is not None:
            lines.append(f"Goal: performs {_events(goal.event)} (leaves at once)")
        elif wf.goal_segment is not None:
            lines.append(f"Goal: {describe(wf.goal_segment)} (leaves at once)")
    policies = wf.policies
    reentry = policies.reentry
    again = reentry.mode if reentry.cooldown is None else f"after {span(reentry.cooldown)}"
    lines.append(f"Re-entry: {again}")
    cap = policies.frequency_cap
    if cap is not None:
        limits = [f"{cap.per_day}/day" if cap.per_day else "", ""]
        limits[1] = f"{cap.per_week}/week" if cap.per_week else ""
        lines.append("Frequency cap: " + ", ".join(x for x in limits if x))
    if policies.quiet_hours is not None:
        quiet = policies.quiet_hours
        lines.append(f"Quiet hours: {quiet.start}-{quiet.end} local")
    return lines
