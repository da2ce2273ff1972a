"""The queue's state machine: enqueue, claim, settle, and the fence that guards each step."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from postwise.core.clock import utcnow
from postwise.jobs import queue
from postwise.jobs.queue import ClaimedJob, Status
from postwise.storage.database import Database
from postwise.storage.tables import Job, Workspace
from postwise.storage.tenancy import CrossWorkspaceWrite


def job_row(db: Database, job_id: int) -> Job:
    with db.system() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def add(db: Database, task: str = "t", **kwargs: object) -> int:
    with db.system() as s:
        return queue.enqueue(s, task, {"n": 1}, **kwargs)  # type: ignore[arg-type]


def claim_one(db: Database, worker: str = "w1", **kwargs: object) -> ClaimedJob:
    jobs = queue.claim(db, worker, ["default"], 1, 30, **kwargs)  # type: ignore[arg-type]
    assert len(jobs) == 1
    return jobs[0]


def test_enqueue_stores_a_queued_job(db: Database) -> None:
    job_id = add(db, "mail.send", priority=5, max_attempts=2, queue="mail")
    job = job_row(db, job_id)
    assert (job.task, job.queue, job.status, job.priority) == ("mail.send", "mail", "queued", 5)
    assert (job.attempts, job.max_attempts, job.payload) == (0, 2, {"n": 1})
    assert job.run_at <= utcnow()


def test_enqueue_from_tenant_session_belongs_to_that_workspace(db: Database) -> None:
    with db.system() as s:
        ws = Workspace(name="A")
        s.add(ws)
        s.flush()
        ws_id = ws.id
    with db.tenant(ws_id) as s:
        job_id = queue.enqueue(s, "t", {})
        with pytest.raises(CrossWorkspaceWrite):
            queue.enqueue(s, "t", {}, workspace_id=ws_id + 1)
    assert job_row(db, job_id).workspace_id == ws_id


def test_enqueue_rolls_back_with_the_callers_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError), db.system() as s:
        queue.enqueue(s, "t", {})
        raise RuntimeError("caller failed")
    with db.system() as s:
        assert s.scalar(select(Job.id)) is None


def test_dedupe_key_returns_the_existing_job(db: Database) -> None:
    first = add(db, dedupe_key="welcome:42")
    with db.system() as s:
        again = queue.enqueue(s, "t", {"other": True}, dedupe_key="welcome:42")
        in_same_tx = queue.enqueue(s, "t", {}, dedupe_key="new")
        assert queue.enqueue(s, "t", {}, dedupe_key="new") == in_same_tx
    assert again == first
    assert job_row(db, first).payload == {"n": 1}
    # Jobs without a key never collide.
    assert add(db) != add(db)
    with db.system() as s:
        assert len(s.scalars(select(Job.id)).all()) == 4


def test_enqueue_many_inserts_one_job_per_payload(db: Database) -> None:
    with db.system() as s:
        assert queue.enqueue_many(s, "fan", ({"i": i} for i in range(25)), priority=7) == 25
        assert queue.enqueue_many(s, "fan", []) == 0
    with db.system() as s:
        payloads = s.scalars(select(Job.payload).order_by(Job.id)).all()
    assert payloads == [{"i": i} for i in range(25)]


def test_claim_takes_due_jobs_by_priority_then_run_at(db: Database) -> None:
    now = utcnow()
    late = add(db, priority=100, run_at=now - timedelta(minutes=1))
    early = add(db, priority=100, run_at=now - timedelta(minutes=5))
    urgent = add(db, priority=1, run_at=now)
    add(db, run_at=now + timedelta(hours=1))  # not due
    add(db, queue="other")  # not our queue
    jobs = queue.claim(db, "w1", ["default"], 10, 30, now=now)
    assert [j.id for j in jobs] == [urgent, early, late]
    assert queue.claim(db, "w2", ["default"], 10, 30, now=now) == []


def test_claim_respects_the_limit_and_leases_to_the_worker(db: Database) -> None:
    ids = [add(db) for _ in range(5)]
    now = utcnow()
    jobs = queue.claim(db, "w1", ["default"], 3, 30, now=now)
    assert [j.id for j in jobs] == ids[:3]
    assert all(j.attempt == 1 and j.worker_id == "w1" for j in jobs)
    row = job_row(db, ids[0])
    assert (row.status, row.locked_by, row.attempts) == ("running", "w1", 1)
    assert row.lease_expires_at == now + timedelta(seconds=30)
    assert [j.id for j in queue.claim(db, "w2", ["default"], 10, 30)] == ids[3:]


def test_complete_marks_done_only_for_the_lease_holder(db: Database) -> None:
    job_id = add(db)
    job = claim_one(db)
    impostor = ClaimedJob(**{**job.__dict__, "worker_id": "w2"})
    stale = ClaimedJob(**{**job.__dict__, "attempt": job.attempt - 1})
    with db.system() as s:
        assert not queue.complete(s, impostor)
        assert not queue.complete(s, stale)
        assert queue.complete(s, job)
        assert not queue.complete(s, job)  # already done
    row = job_row(db, job_id)
    assert row.status == "done"
    assert row.finished_at is not None
    assert row.lease_expires_at is None


def test_fail_requeues_with_backoff_and_keeps_the_error(db: Database) -> None:
    job_id = add(db)
    job = claim_one(db)
    now = utcnow()
    with db.system() as s:
        assert queue.fail(s, job, "boom", now=now) is Status.QUEUED
    row = job_row(db, job_id)
    assert (row.status, row.last_error, row.locked_by) == ("queued", "boom", None)
    # First retry: between half and all of the 10 s base.
    assert now + timedelta(seconds=5) <= row.run_at <= now + timedelta(seconds=10)
    assert queue.claim(db, "w1", ["default"], 1, 30, now=now) == []
    again = claim_one(db, now=now + timedelta(seconds=11))
    assert again.attempt == 2


def test_fail_on_the_last_attempt_dead_letters(db: Database) -> None:
    job_id = add(db, max_attempts=2)
    later = utcnow()
    for attempt in (1, 2):
        later += timedelta(hours=2)
        job = claim_one(db, now=later)
        assert job.attempt == attempt
        with db.system() as s:
            status = queue.fail(s, job, f"failure {attempt}", now=later)
        assert status is (Status.QUEUED if attempt == 1 else Status.DEAD)
    row = job_row(db, job_id)
    assert (row.status, row.last_error, row.attempts) == ("dead", "failure 2", 2)
    assert row.finished_at == later
    assert queue.claim(db, "w1", ["default"], 1, 30, now=later + timedelta(days=1)) == []


def test_permanent_failure_skips_the_remaining_attempts(db: Database) -> None:
    job_id = add(db, max_attempts=5)
    job = claim_one(db)
    with db.system() as s:
        assert queue.fail(s, job, "bad payload", permanent=True) is Status.DEAD
    assert job_row(db, job_id).status == "dead"


def test_fail_after_losing_the_lease_changes_nothing(db: Database) -> None:
    job_id = add(db)
    first = claim_one(db, "w1")
    second = claim_one(db, "w2", now=utcnow() + timedelta(minutes=5))
    with db.system() as s:
        assert queue.fail(s, first, "late failure") is None
    row = job_row(db, job_id)
    assert (row.status, row.locked_by, row.attempts, row.last_error) == ("running", "w2", 2, None)
    assert second.attempt == 2


def test_backoff_doubles_is_capped_and_jittered() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (20, 3600)]:
        delays = [queue.backoff_seconds(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered, not a fixed step


def test_expired_lease_is_reclaimed_with_a_new_attempt(db: Database) -> None:
    job_id = add(db)
    claim_one(db, "dead-worker")
    now = utcnow()
    assert queue.claim(db, "w2", ["default"], 5, 30, now=now) == []  # lease still valid
    reclaimed = claim_one(db, "w2", now=now + timedelta(seconds=31))
    assert (reclaimed.id, reclaimed.attempt) == (job_id, 2)
    assert job_row(db, job_id).locked_by == "w2"


def test_expired_lease_on_the_last_attempt_goes_dead(db: Database) -> None:
    job_id = add(db, max_attempts=1)
    other = add(db)
    claim_one(db, "dead-worker")
    jobs = queue.claim(db, "w2", ["default"], 5, 30, now=utcnow() + timedelta(minutes=1))
    assert [j.id for j in jobs] == [other]
    row = job_row(db, job_id)
    assert row.status == "dead"
    assert row.last_error is not None
    assert "lease expired" in row.last_error


def test_extend_lease_keeps_a_job_from_being_reclaimed(db: Database) -> None:
    add(db)
    add(db)
    now = utcnow()
    held = queue.claim(db, "w1", ["default"], 2, 10, now=now)
    with db.system() as s:
        kept = queue.extend_lease(s, "w1", held, 10, now=now + timedelta(seconds=8))
    assert kept == {j.id for j in held}
    assert queue.claim(db, "w2", ["default"], 5, 10, now=now + timedelta(seconds=15)) == []
    with db.system() as s:
        assert queue.extend_lease(s, "w2", held, 10) == set()  # not w2's to extend
        assert queue.complete(s, held[0])
        assert queue.extend_lease(s, "w1", held, 10) == {held[1].id}


def test_release_returns_unstarted_jobs_without_spending_an_attempt(db: Database) -> None:
    ids = [add(db) for _ in range(3)]
    held = queue.claim(db, "w1", ["default"], 3, 30)
    with db.system() as s:
        assert queue.release(s, held[1:]) == 2
    assert [job_row(db, i).status for i in ids] == ["running", "queued", "queued"]
    assert job_row(db, ids[1]).attempts == 0
    assert job_row(db, ids[1]).locked_by is None


def test_retry_dead_requeues_with_fresh_attempts(db: Database) -> None:
    keep = add(db, "a", max_attempts=1)
    retry = add(db, "b", max_attempts=1)
    for job in queue.claim(db, "w1", ["default"], 5, 30):
        with db.system() as s:
            queue.fail(s, job, "broken")
    with db.system() as s:
        assert queue.retry_dead(s, task="b") == 1
    assert job_row(db, keep).status == "dead"
    row = job_row(db, retry)
    assert (row.status, row.attempts, row.last_error, row.finished_at) == (
        "queued",
        0,
        "broken",
        None,
    )
    assert claim_one(db).id == retry


def test_delete_finished_removes_only_old_settled_jobs(db: Database) -> None:
    ids = [add(db) for _ in range(4)]
    old = utcnow() - timedelta(days=10)
    with db.system() as s:
        s.execute(update(Job).where(Job.id.in_(ids[:2])).values(status="done", finished_at=old))
        s.execute(update(Job).where(Job.id == ids[2]).values(status="dead", finished_at=old))
    with db.system() as s:
        assert queue.delete_finished(s, timedelta(days=7)) == 2
        with pytest.raises(ValueError, match="only done and dead"):
            queue.delete_finished(s, timedelta(days=7), statuses=[Status.QUEUED])
    with db.system() as s:
        assert set(s.scalars(select(Job.id))) == {ids[2], ids[3]}


def test_stats_count_jobs_per_queue_and_status(db: Database) -> None:
    add(db)
    add(db)
    add(db, queue="mail")
    claim_one(db)
    with db.system() as s:
        rows = {(r.queue, r.status): r.count for r in queue.stats(s)}
    assert rows == {("default", "queued"): 1, ("default", "running"): 1, ("mail", "queued"): 1}


def test_long_errors_keep_head_and_tail() -> None:
    text_ = "Traceback head\n" + "x" * 10_000 + "\nValueError: the real reason"
    clipped = queue.clip_error(text_)
    assert len(clipped) < queue.ERROR_MAX_CHARS + 100
    assert clipped.startswith("Traceback head")
    assert clipped.endswith("ValueError: the real reason")


def test_claim_query_uses_the_claim_index(db: Database) -> None:
    """Among settled, scheduled and other queues' jobs, due ones are found by index range."""
    tomorrow = utcnow() + timedelta(days=1)
    with db.system() as s:
        queue.enqueue_many(s, "t", ({} for _ in range(4000)))
        s.execute(update(Job).values(status="done"))
        queue.enqueue_many(s, "t", ({} for _ in range(2000)), queue="mail")
        queue.enqueue_many(s, "t", ({} for _ in range(2000)), run_at=tomorrow)
        queue.enqueue_many(s, "t", ({} for _ in range(20)))
    stmt = queue.claim_query(["default"], 50, utcnow(), skip_locked=db.dialect == "postgresql")
    with db.engine.begin() as conn:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        if db.dialect == "postgresql":
            conn.execute(text("ANALYZE jobs"))
            result = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
            plan = "\n".join(str(row[0]) for row in result)
        else:
            conn.execute(text("ANALYZE"))
            positional = tuple(compiled.params[name] for name in compiled.positiontup or ())
            result = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", positional)
            plan = "\n".join(str(row[-1]) for row in result)
    assert "ix_jobs_claim" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "SCAN jobs" not in plan.replace("SCAN jobs USING", ""), plan
