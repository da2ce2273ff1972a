"""What a workflow depends on, for the runtime: which events to route to it, which
templates, lists, secrets and segments it uses (a deleted one pauses the workflow with an
alert), and the segment references of its conditions and goal (what to load as facts).
"""

from __future__ import annotations

from dataclasses import dataclass

from postwise.segments.references import References, references
from postwise.workflows.definition import (
    AddToList,
    CallWebhook,
    DateTrigger,
    EventTrigger,
    ListTrigger,
    RemoveFromList,
    SegmentTrigger,
    SendEmail,
    Unsubscribe,
    WaitForEvent,
    WaitUntil,
    Workflow,
    event_names,
)


@dataclass(frozen=True)
class WorkflowReferences:
    trigger_events: frozenset[str]  # an event of these names may enroll a contact
    live_events: frozenset[str]  # an event of these names matters to a running enrollment
    templates: frozenset[str]
    lists: frozenset[int | str]
    webhook_secrets: frozenset[str]
    trigger_segments: frozenset[int]
    date_attributes: frozenset[str]  # read by date triggers and date waits
    conditions: tuple[References, ...]  # of condition steps and a segment goal

    @property
    def segment_facts(self) -> bool:
        """Does advancing need the contact's segment facts (conditions or a segment goal)?"""
        return bool(self.conditions)


def workflow_references(wf: Workflow) -> WorkflowReferences:
    trigger_events: set[str] = set()
    live: set[str] = set()
    templates: set[str] = set()
    lists: set[int | str] = set()
    secrets: set[str] = set()
    segments: set[int] = set()
    dates: set[str] = set()
    for trigger in wf.triggers:
        if isinstance(trigger, EventTrigger):
            trigger_events.add(trigger.event)
        elif isinstance(trigger, SegmentTrigger):
            segments.add(trigger.segment)
        elif isinstance(trigger, ListTrigger):
            lists.add(trigger.list)
        elif isinstance(trigger, DateTrigger):
            dates.add(trigger.attribute)
    live |= trigger_events  # joins the running enrollment's data
    if wf.goal is not None and wf.goal.event is not None:
        live.update(event_names(wf.goal.event))
    for step in wf.steps.values():
        if isinstance(step, SendEmail):
            templates.add(step.template)
        elif isinstance(step, WaitForEvent):
            live.update(event_names(step.event))
        elif isinstance(step, AddToList | RemoveFromList | Unsubscribe):
            if step.list is not None:
                lists.add(step.list)
        elif isinstance(step, CallWebhook):
            secrets.add(step.secret)
        elif isinstance(step, WaitUntil) and step.attribute is not None:
            dates.add(step.attribute)
    conditions = [references(defn) for defn in wf.conditions.values()]
    if wf.goal_segment is not None:
        conditions.append(references(wf.goal_segment))
    return WorkflowReferences(
        trigger_events=frozenset(trigger_events),
        live_events=frozenset(live),
        templates=frozenset(templates),
        lists=frozenset(lists),
        webhook_secrets=frozenset(secrets),
        trigger_segments=frozenset(segments),
        date_attributes=frozenset(dates),
        conditions=tuple(conditions),
    )
