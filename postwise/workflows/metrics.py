"""What a workflow did: a contact's journeys (history API) and counts per workflow and step.

Counts come from the enrollment rows (status, exit reason), the step history
(``enrollment_steps``: entries per step, branch outcomes) and the outbox rows the
workflow queued (``workflow_key``), joined to the email events of those messages for
human opens and clicks. Conversions per step: journeys that reached the goal after
passing the step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.storage.tables import Enrollment, EnrollmentStep, Event, OutboxMessage, Workflow
from postwise.workflows import store

OPENED = ("Email Opened",)
CLICKED = ("Email Link Clicked", "Email Clicked")


def _iso(value: Any) -> str | None:
    return clock.as_utc(value).isoformat() if value is not None else None


def history(session: Session, contact_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    """The contact's journeys, newest first: steps taken with their outcomes (branches,
    waits, sends with their outbox id) and the exit reason."""
    keys = {w.id: w.key for w in session.scalars(select(Workflow))}
    rows = session.scalars(
        select(Enrollment)
        .where(Enrollment.contact_id == contact_id)
        .order_by(Enrollment.id.desc())
        .limit(limit)
    ).all()
    out = []
    for row in rows:
        steps = session.scalars(
            select(EnrollmentStep)
            .where(EnrollmentStep.enrollment_id == row.id)
            .order_by(EnrollmentStep.id)
        ).all()
        out.append(
            {
                "id": row.id,
                "workflow": keys.get(row.workflow_id),
                "version": row.version,
                "status": row.status,
                "exit_reason": row.exit_reason,
                "enrolled_at": _iso(row.enrolled_at),
                "exited_at": _iso(row.exited_at),
                "next_wake_at": _iso(row.next_wake_at),
                "current_step": (row.state or {}).get("step"),
                "steps": [
                    {"step": s.step, "at": _iso(s.at), "outcome": s.outcome, **s.command}
                    for s in steps
                ],
                "emails_sent": sum(1 for s in steps if s.outcome == "sent"),
            }
        )
    return out


def workflow_metrics(session: Session, ref: int | str) -> dict[str, Any]:
    wf = store.get_workflow(session, ref)
    by_status = dict(
        session.execute(
            select(Enrollment.status, func.count())
            .where(Enrollment.workflow_id == wf.id)
            .group_by(Enrollment.status)
        ).all()
    )
    goal = (
        session.scalar(
            select(func.count()).where(
                Enrollment.workflow_id == wf.id, Enrollment.exit_reason == "goal"
            )
        )
        or 0
    )
    enrolled = sum(int(v) for v in by_status.values())
    completed = int(by_status.get("completed", 0))
    exited = int(by_status.get("exited", 0))
    sent_ids = select(OutboxMessage.id).where(OutboxMessage.workflow_key == wf.key)
    emails = session.scalar(select(func.count()).select_from(sent_ids.subquery())) or 0

    def human(names: tuple[str, ...]) -> int:
        messages = select(OutboxMessage.message_id).where(
            OutboxMessage.workflow_key == wf.key, OutboxMessage.message_id.is_not(None)
        )
        return int(
            session.scalar(
                select(func.count(func.distinct(Event.contact_id))).where(
                    Event.name.in_(names),
                    Event.properties["message_id"].as_string().in_(messages),
                )
            )
            or 0
        )

    steps = []
    entered = dict(
        session.execute(
            select(EnrollmentStep.step, func.count(func.distinct(EnrollmentStep.enrollment_id)))
            .where(EnrollmentStep.workflow_id == wf.id)
            .group_by(EnrollmentStep.step)
        ).all()
    )
    outcomes: dict[str, dict[str, int]] = {}
    for step_id, outcome, count in session.execute(
        select(EnrollmentStep.step, EnrollmentStep.outcome, func.count())
        .where(EnrollmentStep.workflow_id == wf.id)
        .group_by(EnrollmentStep.step, EnrollmentStep.outcome)
    ).all():
        outcomes.setdefault(step_id, {})[outcome] = int(count)
    conversions = dict(
        session.execute(
            select(EnrollmentStep.step, func.count(func.distinct(EnrollmentStep.enrollment_id)))
            .join(Enrollment, Enrollment.id == EnrollmentStep.enrollment_id)
            .where(EnrollmentStep.workflow_id == wf.id, Enrollment.exit_reason == "goal")
            .group_by(EnrollmentStep.step)
        ).all()
    )
    for step_id, count in sorted(entered.items()):
        steps.append(
            {
                "step": step_id,
                "entered": int(count),
                "outcomes": outcomes.get(step_id, {}),
                "conversions": int(conversions.get(step_id, 0)),
            }
        )
    finished = completed + exited
    return {
        "workflow": wf.key,
        "version": wf.version,
        "status": wf.status,
        "enrolled": enrolled,
        "active": int(by_status.get("active", 0)),
        "completed": completed,
        "exited_goal": int(goal),
        "exited_other": exited - int(goal),
        "emails_sent": int(emails),
        "human_opens": human(OPENED),
        "human_clicks": human(CLICKED),
        "completion_rate": round((completed + int(goal)) / finished, 4) if finished else None,
        "steps": steps,
    }
