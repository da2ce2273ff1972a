"""Real-time routing on both backends: every event of a batch reaches a running journey,
each once, and a goal met while the workflow is paused counts (the journey ends at once,
and nothing is sent on resume). On PostgreSQL an idle worker takes a trigger at commit."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from postwise.core import clock
from postwise.jobs.runner import Worker
from postwise.storage.database import Database
from postwise.storage.tables import Enrollment, Event, Job, WorkflowRoutedEvent
from postwise.tracking.events import parse_batch
from postwise.tracking.ingest import ingest
from postwise.workflows import store
from tests.workflows.test_runtime import Clock, live, moved, run_due, sent, setup  # noqa: F401


def batch(db: Database, ws: int, at: datetime, *events: tuple[str, dict[str, Any]]) -> None:
    """One /v1/batch of track calls of user u1, all received at ``at``."""
    raw = [
        {
            "type": "track",
            "event": name,
            "userId": "u1",
            "properties": props,
            "timestamp": (at + timedelta(seconds=i)).isoformat(),
            "messageId": f"{name}-{at.isoformat()}-{i}",
        }
        for i, (name, props) in enumerate(events)
    ]
    with db.tenant(ws) as s:
        ingest(s, parse_batch({"batch": raw}, received_at=at), received_at=at)


def cart(db: Database, ws: int) -> list[dict[str, Any]]:
    with db.tenant(ws) as s:
        [row] = s.scalars(select(Enrollment)).all()
        return list(row.state["data"]["events"]["Product Added"])


def test_two_events_of_one_name_in_one_batch_both_reach_the_journey(
    db: Database,
    moved: Clock,  # noqa: F811
) -> None:
    ws, _ = setup(db, "cart_abandonment")
    batch(
        db, ws, moved.now, ("Product Added", {"name": "Lamp"}), ("Product Added", {"name": "Desk"})
    )
    run_due(db, moved.now)
    # The first enrolled the contact; the second joined the running cart.
    assert cart(db, ws) == [{"name": "Lamp"}, {"name": "Desk"}]


def test_route_jobs_of_overlapping_windows_hand_on_each_event_once(
    db: Database,
    moved: Clock,  # noqa: F811
) -> None:
    ws, _ = setup(db, "cart_abandonment")
    batch(
        db, ws, moved.now, ("Product Added", {"name": "Lamp"}), ("Product Added", {"name": "Desk"})
    )
    moved.advance(minutes=1)
    batch(db, ws, moved.now, ("Product Added", {"name": "Chair"}))
    run_due(db, moved.now)  # both route jobs run after both batches committed
    assert cart(db, ws) == [{"name": "Lamp"}, {"name": "Desk"}, {"name": "Chair"}]
    with db.tenant(ws) as s:
        assert len(s.scalars(select(WorkflowRoutedEvent)).all()) == 3
    live(db, moved, days=2)
    [(template, _), _incentive] = sent(db, ws)
    assert template == "cart_reminder"
    with db.tenant(ws) as s:  # the marks go with their events (retention, erasure)
        s.execute(delete(Event))
    with db.tenant(ws) as s:
        assert s.scalars(select(WorkflowRoutedEvent)).all() == []


def test_a_goal_met_while_paused_ends_the_journey_and_resume_sends_nothing(
    db: Database,
    moved: Clock,  # noqa: F811
) -> None:
    ws, _ = setup(db, "cart_abandonment")
    batch(db, ws, moved.now, ("Product Added", {"name": "Lamp"}))
    run_due(db, moved.now)
    with db.tenant(ws) as s:
        store.set_status(s, "cart-abandonment", "paused", reason="holiday")
    moved.advance(minutes=20)
    batch(db, ws, moved.now, ("Order Completed", {"total": 49}))
    run_due(db, moved.now)
    with db.tenant(ws) as s:
        [row] = s.scalars(select(Enrollment)).all()
        assert (row.status, row.exit_reason) == ("exited", "goal")
        store.set_status(s, "cart-abandonment", "active")
    live(db, moved, days=2)
    assert sent(db, ws) == []


def test_a_paused_workflow_ignores_other_events_and_runs_held_wakes_on_resume(
    db: Database,
    moved: Clock,  # noqa: F811
) -> None:
    ws, _ = setup(db, "cart_abandonment")
    batch(db, ws, moved.now, ("Product Added", {"name": "Lamp"}))
    run_due(db, moved.now)
    with db.tenant(ws) as s:
        store.set_status(s, "cart-abandonment", "paused", reason="holiday")
    moved.advance(minutes=20)
    batch(db, ws, moved.now, ("Product Added", {"name": "Desk"}))  # not a goal: not now
    live(db, moved, days=0.1)
    assert sent(db, ws) == []
    with db.tenant(ws) as s:
        store.set_status(s, "cart-abandonment", "active")
    run_due(db, moved.now)
    assert [name for name, _ in sent(db, ws)] == ["cart_reminder"]
    assert cart(db, ws) == [{"name": "Lamp"}]


@pytest.mark.postgres_only
def test_an_idle_worker_takes_a_trigger_at_commit_not_at_its_next_poll(
    postgres_url: str,
) -> None:
    """PostgreSQL: the route job's NOTIFY ends an idle worker's 30-second poll."""
    db = Database(postgres_url)
    worker = Worker(db, worker_id="notify-test", poll_seconds=30, batch_size=1)
    try:
        ws, _ = setup(db, "cart_abandonment")
        with db.system() as s:  # the wake lanes set up above: not this test's business
            s.execute(delete(Job))
        worker.start_in_thread()
        time.sleep(1.5)  # the worker found nothing and listens now
        started = time.monotonic()
        batch(db, ws, clock.utcnow(), ("Product Added", {"name": "Lamp"}))
        enrolled = None
        while time.monotonic() - started < 20 and enrolled is None:
            time.sleep(0.05)
            with db.tenant(ws) as s:
                enrolled = s.scalars(select(Enrollment)).first()
        assert enrolled is not None
        assert time.monotonic() - started < 5, "the worker waited for its poll"
    finally:
        worker.stop(timeout=10)
        db.dispose()
