"""Deciding condition steps and segment goals with the segmentation engine's evaluator.

The engine takes condition outcomes as facts; this is how the runtime produces them for
one contact from ``ContactFacts`` (``postwise.segments.facts.load_facts``), so a
condition means exactly what the same definition means as a segment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from postwise.segments.evaluator import evaluate
from postwise.segments.facts import ContactFacts
from postwise.workflows.definition import Workflow


def evaluator_for(contact: ContactFacts) -> Callable[[str, Workflow, datetime], bool]:
    """A ``Facts.decide`` that evaluates a condition step's definition for ``contact``."""

    def decide(step_id: str, wf: Workflow, now: datetime) -> bool:
        return evaluate(wf.conditions[step_id], contact, now)

    return decide


def goal_holds(wf: Workflow, contact: ContactFacts, now: datetime) -> bool:
    """A segment goal evaluated for ``contact`` (``Facts.goal_met``); event goals are
    decided by the engine from the event itself."""
    if wf.goal_segment is None:
        return False
    return evaluate(wf.goal_segment, contact, now)
