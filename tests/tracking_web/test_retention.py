"""The event purge: only events older than the retention go, in bounded id ranges, and the
job chains itself (continuation now, next day at 04:00) on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from postwise.core.clock import utcnow
from postwise.core.settings import Settings
from postwise.jobs import queue
from postwise.jobs.registry import TaskRegistry
from postwise.jobs.runner import Worker
from postwise.storage.database import Database
from postwise.storage.tables import Event, Job
from postwise.tracking import retention
from postwise.workspaces.actions import create_workspace

SETTINGS = Settings(worker_poll_seconds=0.05, worker_batch_size=10, job_lease_seconds=30)


def registry() -> TaskRegistry:
    reg = TaskRegistry()
    reg.register(retention.PURGE, retention.purge)
    return reg


def seed(db: Database, ages_days: list[float]) -> dict[int, list[int]]:
    """Events of the given ages in two workspaces, interleaved; workspace id -> event ids."""
    now = utcnow()
    with db.system() as s:
        spaces = [create_workspace(s, name).workspace_id for name in ("Acme", "Globex")]
    out: dict[int, list[int]] = {ws: [] for ws in spaces}
    for i, age in enumerate(ages_days):
        ws = spaces[i % 2]
        with db.tenant(ws) as s:
            event = Event(
                type="track", name="Seen", anonymous_id=f"a{i}", occurred_at=now - timedelta(age)
            )
            s.add(event)
            s.flush()
            out[ws].append(event.id)
    return out


def remaining(db: Database) -> list[str]:
    with db.system() as s:
        return sorted(s.scalars(select(Event.anonymous_id)))  # type: ignore[arg-type]


def purge_jobs(db: Database) -> list[Job]:
    with db.system() as s:
        jobs = list(s.scalars(select(Job).where(Job.task == retention.PURGE).order_by(Job.id)))
        s.expunge_all()
        return jobs


def test_the_purge_deletes_only_events_older_than_the_retention(db: Database) -> None:
    ages = [1, 800, 10, 731, 729.9, 2000, 0, 900]
    seed(db, ages)
    with db.system() as s:
        deleted, continue_after = retention.purge_events(s, utcnow() - timedelta(days=730))
    assert (deleted, continue_after) == (4, None)
    assert remaining(db) == ["a0", "a2", "a4", "a6"]


def test_small_batches_continue_where_they_stopped(db: Database) -> None:
    seed(db, [1000] * 7 + [1])
    cutoff = utcnow() - timedelta(days=730)
    with db.system() as s:
        first_id = s.scalar(select(func.min(Event.id)))
        assert first_id is not None
        deleted, after = retention.purge_events(s, cutoff, batch_size=2, batches=2)
    assert (deleted, after) == (4, first_id - 1 + 4)
    with db.system() as s:
        deleted, after = retention.purge_events(s, cutoff, after_id=after, batch_size=2, batches=5)
    assert (deleted, after) == (3, None)
    assert remaining(db) == ["a7"]


def test_gaps_left_by_earlier_purges_cost_nothing(db: Database) -> None:
    seed(db, [1000, 1, 1, 1000])
    with db.system() as s:
        ids = list(s.scalars(select(Event.id).order_by(Event.id)))
        s.execute(Event.__table__.delete().where(Event.id.in_(ids[:3])))
        # One range of one id reaches the last event however far the first id is.
        deleted, after = retention.purge_events(
            s, utcnow() - timedelta(days=730), batch_size=1, batches=1
        )
    assert (deleted, after) == (1, None)
    assert remaining(db) == []


def test_the_job_chains_through_the_table_then_schedules_tomorrow(db: Database) -> None:
    seed(db, [1000] * 5 + [3] * 2)
    with db.system() as s:
        queue.enqueue(s, retention.PURGE, {"retention_days": 730, "batch_size": 2, "batches": 1})
    assert Worker(db, SETTINGS, registry=registry()).run_until_idle() == 4
    assert remaining(db) == ["a5", "a6"]
    jobs = purge_jobs(db)
    assert [j.status for j in jobs] == ["done"] * 4 + ["queued"]
    tomorrow = jobs[-1]
    today = utcnow().date()
    assert tomorrow.run_at == datetime.combine(
        today + timedelta(days=1), retention.RUN_AT, tzinfo=tomorrow.run_at.tzinfo
    )
    assert tomorrow.dedupe_key == f"{retention.PURGE}:{(today + timedelta(days=1)).isoformat()}"
    # Explicit settings travel with the chain, the position does not.
    assert tomorrow.payload == {"retention_days": 730, "batch_size": 2, "batches": 1,
                                "day": (today + timedelta(days=1)).isoformat()}  # fmt: skip


def test_zero_days_keeps_everything_and_the_setting_is_the_default(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, [5000, 1])
    with db.system() as s:
        queue.enqueue(s, retention.PURGE, {"retention_days": 0})
    assert Worker(db, SETTINGS, registry=registry()).run_until_idle() == 1
    assert remaining(db) == ["a0", "a1"]

    monkeypatch.setenv("POSTWISE_EVENT_RETENTION_DAYS", "10")
    retention.get_settings.cache_clear()
    try:
        with db.system() as s:
            queue.enqueue(s, retention.PURGE, {})
        assert Worker(db, SETTINGS, registry=registry()).run_until_idle() == 1
    finally:
        retention.get_settings.cache_clear()
    assert remaining(db) == ["a1"]


def test_seeding_is_idempotent_per_day(db: Database) -> None:
    with db.system() as s:
        first = retention.ensure_purge_scheduled(s)
        assert retention.ensure_purge_scheduled(s) == first


@pytest.mark.parametrize(
    "payload",
    [{"retention_days": -1}, {"batch_size": 0}, {"batches": "many"}, {"after_id": True}],
)
def test_a_bad_payload_is_dead_at_once(db: Database, payload: dict[str, object]) -> None:
    with db.system() as s:
        queue.enqueue(s, retention.PURGE, payload, max_attempts=3)
    Worker(db, SETTINGS, registry=registry()).run_until_idle()
    (job,) = purge_jobs(db)
    assert job.status == "dead"
    assert job.attempts == 1
