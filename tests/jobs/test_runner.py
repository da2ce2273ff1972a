"""Running handlers: effects commit with completion, and a lost lease takes them back."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Table, insert, select, update

from postwise.core.clock import utcnow
from postwise.core.settings import Settings
from postwise.jobs import builtin, queue
from postwise.jobs.registry import JobContext, PermanentFailure, TaskRegistry, UnknownTask
from postwise.jobs.runner import Outcome, Worker, run_job
from postwise.storage import tenancy
from postwise.storage.database import Database
from postwise.storage.tables import Job, Workspace
from tests.jobs.conftest import effect_counts
from tests.jobs.tasks import RECORD, effects, record_effect

SETTINGS = Settings(worker_poll_seconds=0.05, worker_batch_size=10, job_lease_seconds=30)


@pytest.fixture
def registry() -> TaskRegistry:
    reg = TaskRegistry()
    reg.register(RECORD, record_effect)
    return reg


def add(db: Database, task: str = RECORD, **kwargs: object) -> int:
    with db.system() as s:
        return queue.enqueue(s, task, {}, **kwargs)  # type: ignore[arg-type]


def job_row(db: Database, job_id: int) -> Job:
    with db.system() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def worker(db: Database, registry: TaskRegistry, **kwargs: object) -> Worker:
    return Worker(db, SETTINGS, registry=registry, **kwargs)  # type: ignore[arg-type]


def test_registry_refuses_a_second_handler_for_a_name(registry: TaskRegistry) -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(RECORD, lambda ctx: None)
    registry.register(RECORD, record_effect)  # the same function again is harmless
    with pytest.raises(UnknownTask, match="--import"):
        registry.get("nope")


def test_handler_effects_commit_with_the_completion(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    job_id = add(db)
    (job,) = queue.claim(db, "w1", ["default"], 1, 30)
    assert run_job(db, job, registry=registry) is Outcome.DONE
    assert effect_counts(db) == {job_id: 1}
    assert job_row(db, job_id).status == "done"


def test_a_failing_handler_leaves_no_effects_and_is_retried(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    @registry.task("flaky")
    def flaky(ctx: JobContext) -> None:
        ctx.session.execute(insert(effects).values(job_id=ctx.job_id, worker_id="x", attempt=1))
        raise ConnectionError("smtp relay down")

    job_id = add(db, "flaky")
    (job,) = queue.claim(db, "w1", ["default"], 1, 30)
    assert run_job(db, job, registry=registry) is Outcome.RETRY
    assert effect_counts(db) == {}
    row = job_row(db, job_id)
    assert row.status == "queued"
    assert row.last_error is not None
    assert "ConnectionError: smtp relay down" in row.last_error
    assert "Traceback" in row.last_error


def test_permanent_failure_dead_letters_at_once(db: Database, registry: TaskRegistry) -> None:
    @registry.task("strict")
    def strict(ctx: JobContext) -> None:
        raise PermanentFailure("payload lacks 'to'")

    job_id = add(db, "strict", max_attempts=5)
    (job,) = queue.claim(db, "w1", ["default"], 1, 30)
    assert run_job(db, job, registry=registry) is Outcome.DEAD
    row = job_row(db, job_id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert "payload lacks 'to'" in (row.last_error or "")


def test_unknown_task_is_dead_lettered_and_the_worker_carries_on(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    unknown = add(db, "not.registered")
    known = add(db)
    assert worker(db, registry).run_until_idle() == 2
    row = job_row(db, unknown)
    assert row.status == "dead"
    assert "no handler registered for task 'not.registered'" in (row.last_error or "")
    assert job_row(db, known).status == "done"


def test_a_handler_may_not_commit_the_jobs_transaction(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    @registry.task("eager")
    def eager(ctx: JobContext) -> None:
        ctx.session.execute(insert(effects).values(job_id=ctx.job_id, worker_id="x", attempt=1))
        ctx.session.commit()

    job_id = add(db, "eager", max_attempts=1)
    (job,) = queue.claim(db, "w1", ["default"], 1, 30)
    assert run_job(db, job, registry=registry) is Outcome.DEAD
    assert effect_counts(db) == {}
    assert "must not commit ctx.session" in (job_row(db, job_id).last_error or "")


def test_lost_lease_rolls_back_a_late_finisher(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    """A hangs past its lease, B takes the job over; A's writes must not survive."""
    job_id = add(db)
    (slow,) = queue.claim(db, "A", ["default"], 1, 30)
    (fast,) = queue.claim(db, "B", ["default"], 1, 30, now=utcnow() + timedelta(seconds=31))
    assert (slow.attempt, fast.attempt) == (1, 2)

    # A finishes while B still runs the job, then B finishes.
    assert run_job(db, slow, registry=registry) is Outcome.LEASE_LOST
    assert effect_counts(db) == {}
    assert job_row(db, job_id).status == "running"
    assert run_job(db, fast, registry=registry) is Outcome.DONE

    with db.system() as s:
        assert s.execute(select(effects.c.worker_id)).scalars().all() == ["B"]
    assert job_row(db, job_id).status == "done"


def test_lost_lease_after_the_new_owner_finished(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    job_id = add(db)
    (slow,) = queue.claim(db, "A", ["default"], 1, 30)
    (fast,) = queue.claim(db, "B", ["default"], 1, 30, now=utcnow() + timedelta(seconds=31))
    assert run_job(db, fast, registry=registry) is Outcome.DONE
    assert run_job(db, slow, registry=registry) is Outcome.LEASE_LOST
    assert effect_counts(db) == {job_id: 1}
    assert job_row(db, job_id).locked_by == "B"


def test_failure_after_lost_lease_does_not_requeue(db: Database, registry: TaskRegistry) -> None:
    @registry.task("boom")
    def boom(ctx: JobContext) -> None:
        raise RuntimeError("late and broken")

    job_id = add(db, "boom")
    (slow,) = queue.claim(db, "A", ["default"], 1, 30)
    queue.claim(db, "B", ["default"], 1, 30, now=utcnow() + timedelta(seconds=31))
    assert run_job(db, slow, registry=registry) is Outcome.LEASE_LOST
    row = job_row(db, job_id)
    assert (row.status, row.locked_by, row.last_error) == ("running", "B", None)


def test_jobs_of_a_workspace_get_a_session_scoped_to_it(
    db: Database, registry: TaskRegistry
) -> None:
    seen: list[int] = []

    @registry.task("scoped")
    def scoped(ctx: JobContext) -> None:
        seen.append(tenancy.workspace_of(ctx.session))
        assert ctx.workspace_id == seen[-1]

    with db.system() as s:
        ws = Workspace(name="A")
        s.add(ws)
        s.flush()
        ws_id = ws.id
    add(db, "scoped", workspace_id=ws_id)
    assert worker(db, registry).run_until_idle() == 1
    assert seen == [ws_id]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_worker_runs_every_due_job_once(
    db: Database, effects_table: Table, registry: TaskRegistry, concurrency: int
) -> None:
    with db.system() as s:
        queue.enqueue_many(s, RECORD, ({} for _ in range(60)))
        queue.enqueue(s, RECORD, {}, run_at=utcnow() + timedelta(hours=1))
    ran = worker(db, registry, concurrency=concurrency, batch_size=7).run_until_idle()
    assert ran == 60
    counts = effect_counts(db)
    assert len(counts) == 60
    assert set(counts.values()) == {1}


def test_worker_in_a_thread_works_until_stopped(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    w = worker(db, registry)
    thread = w.start_in_thread()
    job_id = add(db)
    deadline = time.monotonic() + 10
    while job_row(db, job_id).status != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job_row(db, job_id).status == "done"
    assert w.stop(timeout=10)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="already started"):
        w.start_in_thread()


def test_stopping_finishes_the_job_in_hand_and_releases_the_rest(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    holder: list[Worker] = []

    @registry.task("stopper")
    def stopper(ctx: JobContext) -> None:
        record_effect(ctx)
        holder[0].stop()  # as SIGTERM would, in the middle of a batch

    ids = [add(db, "stopper") for _ in range(4)]
    w = worker(db, registry, batch_size=4)
    holder.append(w)
    assert w.run_until_idle() == 1
    assert effect_counts(db) == {ids[0]: 1}
    rows = [job_row(db, i) for i in ids]
    assert [r.status for r in rows] == ["done", "queued", "queued", "queued"]
    assert [r.attempts for r in rows] == [1, 0, 0, 0]
    assert all(r.locked_by is None for r in rows[1:])


def test_heartbeat_keeps_a_long_job_from_being_taken_over(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    job_id = add(db)
    with db.system() as s:
        s.execute(update(Job).values(payload={"sleep": 1.6}))
    w = worker(db, registry, lease_seconds=0.6)
    thread = threading.Thread(target=w.run_until_idle)
    thread.start()
    started = time.monotonic() + 10
    while job_row(db, job_id).locked_by != w.worker_id and time.monotonic() < started:
        time.sleep(0.01)
    stolen: list[queue.ClaimedJob] = []
    deadline = time.monotonic() + 1.3
    while time.monotonic() < deadline:
        stolen += queue.claim(db, "thief", ["default"], 5, 30)
        time.sleep(0.1)
    thread.join(timeout=20)
    assert stolen == []
    row = job_row(db, job_id)
    assert (row.status, row.attempts, row.locked_by) == ("done", 1, w.worker_id)
    assert effect_counts(db) == {job_id: 1}


def test_cleanup_task_prunes_old_jobs_and_schedules_tomorrow(db: Database) -> None:
    now = utcnow()
    with db.system() as s:
        queue.enqueue_many(s, "old", ({} for _ in range(3)))
        queue.enqueue_many(s, "recent", ({} for _ in range(2)))
        queue.enqueue_many(s, "pending", [{}], run_at=now + timedelta(hours=1))
        s.execute(
            update(Job)
            .where(Job.task == "old")
            .values(status="done", finished_at=now - timedelta(days=8))
        )
        s.execute(
            update(Job)
            .where(Job.task == "recent")
            .values(status="dead", finished_at=now - timedelta(days=8))
        )
        first = builtin.ensure_cleanup_scheduled(s)
        assert builtin.ensure_cleanup_scheduled(s) == first
    reg = TaskRegistry()
    reg.register(builtin.CLEANUP, builtin.cleanup)
    assert Worker(db, SETTINGS, registry=reg).run_until_idle() == 1
    with db.system() as s:
        left = s.execute(select(Job.task, Job.status, Job.dedupe_key, Job.run_at)).all()
    tasks = sorted((task, status) for task, status, _, _ in left)
    assert tasks == [
        (builtin.CLEANUP, "done"),
        (builtin.CLEANUP, "queued"),
        ("pending", "queued"),
        ("recent", "dead"),
        ("recent", "dead"),
    ]
    (nxt,) = [row for row in left if row.task == builtin.CLEANUP and row.status == "queued"]
    assert nxt.run_at > now
    assert nxt.dedupe_key == f"jobs.cleanup:{nxt.run_at.date().isoformat()}"


def test_worker_counts_claims_completions_and_failures(
    db: Database, effects_table: Table, registry: TaskRegistry
) -> None:
    @registry.task("metered.fail")
    def metered_fail(ctx: JobContext) -> None:
        raise PermanentFailure("no")

    def sample(name: str, task: str) -> float:
        return REGISTRY.get_sample_value(f"postwise_jobs_{name}_total", {"task": task}) or 0.0

    before = {
        (n, t): sample(n, t)
        for n in ("claimed", "completed", "failed", "dead")
        for t in (RECORD, "metered.fail")
    }
    add(db)
    add(db)
    add(db, "metered.fail")
    worker(db, registry).run_until_idle()
    after = {key: sample(*key) - value for key, value in before.items()}
    assert after == {
        ("claimed", RECORD): 2,
        ("completed", RECORD): 2,
        ("failed", RECORD): 0,
        ("dead", RECORD): 0,
        ("claimed", "metered.fail"): 1,
        ("completed", "metered.fail"): 0,
        ("failed", "metered.fail"): 1,
        ("dead", "metered.fail"): 1,
    }
