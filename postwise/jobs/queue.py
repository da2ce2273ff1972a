"""The job table as a queue: enqueue, claim under a lease, and settle.

Every state change after a claim is fenced by ``(id, locked_by, attempts)``: a worker
that lost its lease (it hung, the lease expired, another worker took the job) changes
nothing, so its late ``complete`` or ``fail`` cannot undo the new owner's work. Leases
only decide *when* a job may be taken over; the fence is what keeps completion
exactly-once, so worker clocks need to be roughly right (NTP), not exact.

Enqueue takes the caller's session: the job commits with the caller's writes or not at
all (an outbox). Claim takes the ``Database`` because it must be its own short
transaction: on PostgreSQL it holds row locks (``FOR UPDATE SKIP LOCKED``), on SQLite
the database write lock (``BEGIN IMMEDIATE``), and either must be released at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

import structlog
from sqlalchemy import (
    CursorResult,
    Select,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from postwise.core import clock
from postwise.jobs import metrics
from postwise.storage import tenancy
from postwise.storage.database import Database
from postwise.storage.tables import Job

log = structlog.get_logger(__name__)

ERROR_MAX_CHARS = 4000
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 3600.0


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds: ``(id, worker_id, attempt)`` is the fence for settling it."""

    id: int
    queue: str
    task: str
    payload: dict[str, Any]
    workspace_id: int | None
    attempt: int
    max_attempts: int
    worker_id: str
    lease_expires_at: datetime


def _now(now: datetime | None) -> datetime:
    return now if now is not None else clock.utcnow()


def _workspace_for(session: Session, workspace_id: int | None) -> int | None:
    """A tenant session enqueues for its own workspace and refuses to enqueue for another."""
    try:
        bound = tenancy.workspace_of(session)
    except RuntimeError:
        return workspace_id
    if workspace_id is not None and workspace_id != bound:
        raise tenancy.CrossWorkspaceWrite(
            f"job for workspace {workspace_id} enqueued from a session of workspace {bound}"
        )
    return bound


def enqueue(
    session: Session,
    task: str,
    payload: dict[str, Any],
    *,
    queue: str = "default",
    workspace_id: int | None = None,
    run_at: datetime | None = None,
    priority: int = 100,
    max_attempts: int = 5,
    dedupe_key: str | None = None,
) -> int:
    """Add a job in the caller's transaction and return its id.

    Lower ``priority`` runs first. A ``dedupe_key`` already present in the table
    (whatever that job's status, until cleanup deletes it) returns the existing job's
    id instead of adding one; put the workspace in the key if it must be per tenant.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    values: dict[str, Any] = {
        "queue": queue,
        "task": task,
        "payload": payload,
        "workspace_id": _workspace_for(session, workspace_id),
        "status": Status.QUEUED.value,
        "priority": priority,
        "run_at": run_at or clock.utcnow(),
        "attempts": 0,
        "max_attempts": max_attempts,
        "dedupe_key": dedupe_key,
        "created_at": clock.utcnow(),
    }
    if dedupe_key is None:
        return int(session.execute(insert(Job).values(values).returning(Job.id)).scalar_one())

    dialect = session.get_bind().dialect.name
    target, where = [Job.dedupe_key], Job.dedupe_key.is_not(None)
    returning: ReturningInsert[int]
    if dialect == "postgresql":
        returning = (
            postgresql.insert(Job)
            .values(values)
            .on_conflict_do_nothing(index_elements=target, index_where=where)
            .returning(Job.id)
        )
    elif dialect == "sqlite":
        returning = (
            sqlite.insert(Job)
            .values(values)
            .on_conflict_do_nothing(index_elements=target, index_where=where)
            .returning(Job.id)
        )
    else:
        raise NotImplementedError(f"dedupe_key is not supported on {dialect}")
    # Two tries: the holder of the key could be deleted by cleanup between the statements.
    for _ in range(2):
        new_id = session.execute(returning).scalar_one_or_none()
        if new_id is not None:
            return int(new_id)
        existing = session.execute(select(Job.id).where(Job.dedupe_key == dedupe_key)).scalar()
        if existing is not None:
            return int(existing)
    raise RuntimeError(f"could not insert or find the job with dedupe_key {dedupe_key!r}")


CHANNEL = "postwise_jobs"  # PostgreSQL NOTIFY channel idle workers LISTEN on


def notify(session: Session) -> None:
    """Wake idle workers when the caller's transaction commits (PostgreSQL ``NOTIFY``;
    a job that must not wait for the next poll, e.g. a workflow trigger). Notifications
    of one transaction fold into one; on SQLite this does nothing (workers poll)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def next_period(now: datetime, seconds: int) -> datetime:
    """The first multiple of ``seconds`` (since the epoch) after ``now``: a recurring job's
    next run, which every worker computes alike."""
    step = max(int(seconds), 1)
    epoch = int(now.timestamp())
    return datetime.fromtimestamp((epoch // step + 1) * step, tz=now.tzinfo)


def enqueue_periodic(
    session: Session, task: str, run_at: datetime, *, queue: str, priority: int
) -> int:
    """A recurring job's run at ``run_at``, keyed by its due time: one job per period
    however many workers schedule it."""
    return enqueue(
        session,
        task,
        {"due": run_at.isoformat()},
        queue=queue,
        run_at=run_at,
        priority=priority,
        max_attempts=3,
        dedupe_key=f"{task}:{run_at.isoformat()}",
    )


def enqueue_many(
    session: Session,
    task: str,
    payloads: Iterable[dict[str, Any]],
    *,
    queue: str = "default",
    workspace_id: int | None = None,
    run_at: datetime | None = None,
    priority: int = 100,
    max_attempts: int = 5,
) -> int:
    """Add one job per payload in a single multi-row insert (fan-out); returns how many."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    now = clock.utcnow()
    shared = {
        "queue": queue,
        "task": task,
        "workspace_id": _workspace_for(session, workspace_id),
        "status": Status.QUEUED.value,
        "priority": priority,
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "created_at": now,
    }
    rows = [{**shared, "payload": payload} for payload in payloads]
    if rows:
        session.execute(insert(Job), rows)
    return len(rows)


def claim_query(
    queues: Sequence[str], limit: int, now: datetime, *, skip_locked: bool
) -> Select[Any]:
    """The due-jobs SELECT of ``claim``; public so tests can check its plan uses the indexes."""
    # Each branch names the queue so that each can be one index range: ix_jobs_claim
    # (queue, status, run_at) for due jobs, ix_jobs_lease (status, lease_expires_at)
    # for abandoned ones.
    in_queues = Job.queue.in_(list(queues))
    due = or_(
        and_(in_queues, Job.status == Status.QUEUED.value, Job.run_at <= now),
        and_(in_queues, Job.status == Status.RUNNING.value, Job.lease_expires_at < now),
    )
    stmt = (
        select(
            Job.id,
            Job.queue,
            Job.task,
            Job.payload,
            Job.workspace_id,
            Job.status,
            Job.attempts,
            Job.max_attempts,
            Job.locked_by,
        )
        .where(due)
        .order_by(Job.priority, Job.run_at, Job.id)
        .limit(limit)
    )
    return stmt.with_for_update(skip_locked=True) if skip_locked else stmt


def claim(
    db: Database,
    worker_id: str,
    queues: Sequence[str],
    limit: int,
    lease_seconds: float,
    *,
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs in one short transaction and lease them to ``worker_id``.

    Due means queued with ``run_at`` reached, or running under an expired lease (its
    worker died). An expired job already on its last attempt goes to ``dead`` instead.
    Order: ``priority``, then ``run_at``, then ``id``.
    """
    if limit < 1 or not queues:
        return []
    now = _now(now)
    lease_until = now + timedelta(seconds=lease_seconds)
    stmt = claim_query(queues, limit, now, skip_locked=db.dialect == "postgresql")
    with db.system() as session:
        rows = session.execute(stmt).all()
        if not rows:
            return []
        expired = [r for r in rows if r.status == Status.RUNNING.value]
        exhausted = [r for r in expired if r.attempts >= r.max_attempts]
        exhausted_ids = {r.id for r in exhausted}
        taken = [r for r in rows if r.id not in exhausted_ids]
        if expired:
            log.warning(
                "jobs.lease_expired",
                job_ids=[r.id for r in expired],
                previous_workers=sorted({r.locked_by or "?" for r in expired}),
                dead_letter=[r.id for r in exhausted],
            )
        if exhausted:
            for r in exhausted:
                metrics.DEAD.labels(r.task).inc()
            session.execute(
                update(Job)
                .where(Job.id.in_(exhausted_ids))
                .values(
                    status=Status.DEAD.value,
                    finished_at=now,
                    lease_expires_at=None,
                    last_error="lease expired on the last attempt: the worker holding the "
                    "job stopped or hung before finishing it",
                )
                .execution_options(synchronize_session=False)
            )
        if taken:
            session.execute(
                update(Job)
                .where(Job.id.in_([r.id for r in taken]))
                .values(
                    status=Status.RUNNING.value,
                    locked_by=worker_id,
                    lease_expires_at=lease_until,
                    attempts=Job.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
    return [
        ClaimedJob(
            id=r.id,
            queue=r.queue,
            task=r.task,
            payload=r.payload,
            workspace_id=r.workspace_id,
            attempt=r.attempts + 1,
            max_attempts=r.max_attempts,
            worker_id=worker_id,
            lease_expires_at=lease_until,
        )
        for r in taken
    ]


def _fenced(job: ClaimedJob) -> Any:
    return and_(
        Job.id == job.id,
        Job.locked_by == job.worker_id,
        Job.status == Status.RUNNING.value,
        Job.attempts == job.attempt,
    )


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def complete(session: Session, job: ClaimedJob, *, now: datetime | None = None) -> bool:
    """Mark the job done in ``session``'s transaction; False means the lease was lost.

    On False the caller must roll back: another worker owns the job now and will redo
    it. The lease's expiry time is deliberately not checked: if nobody took the job
    over, finishing late is still finishing once.
    """
    result = session.execute(
        update(Job)
        .where(_fenced(job))
        .values(status=Status.DONE.value, finished_at=_now(now), lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


def backoff_seconds(
    attempt: int,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry after failed ``attempt`` (1-based): doubling, capped, half jittered.

    The jitter spreads retries of jobs that failed together (an outage) so they do not
    come back as one burst; the fixed half keeps the delay from collapsing to zero.
    """
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def clip_error(text: str, limit: int = ERROR_MAX_CHARS) -> str:
    """Keep the head (exception line) and the tail (innermost frames) of a long error."""
    if len(text) <= limit:
        return text
    head = limit // 4
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[-(limit - head) :]}"


def fail(
    session: Session,
    job: ClaimedJob,
    error: str,
    *,
    permanent: bool = False,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Status | None:
    """Record a failed attempt: back to ``queued`` after a backoff, or ``dead`` when spent.

    Returns the new status, or None if the lease was lost (the new owner decides).
    """
    now = _now(now)
    values: dict[str, Any] = {"last_error": clip_error(error), "lease_expires_at": None}
    if permanent or job.attempt >= job.max_attempts:
        status = Status.DEAD
        values |= {"status": status.value, "finished_at": now}
    else:
        status = Status.QUEUED
        delay = backoff_seconds(job.attempt, rng=rng)
        values |= {
            "status": status.value,
            "run_at": now + timedelta(seconds=delay),
            "locked_by": None,
        }
    result = session.execute(
        update(Job).where(_fenced(job)).values(values).execution_options(synchronize_session=False)
    )
    return status if _rowcount(result) == 1 else None


def release(session: Session, jobs: Sequence[ClaimedJob]) -> int:
    """Give back claimed jobs that were never started (shutdown), without using an attempt."""
    if not jobs:
        return 0
    worker_ids = {job.worker_id for job in jobs}
    if len(worker_ids) != 1:
        raise ValueError("release() takes the jobs of one worker")
    result = session.execute(
        update(Job)
        .where(
            tuple_(Job.id, Job.attempts).in_([(job.id, job.attempt) for job in jobs]),
            Job.locked_by == worker_ids.pop(),
            Job.status == Status.RUNNING.value,
        )
        .values(
            status=Status.QUEUED.value,
            locked_by=None,
            lease_expires_at=None,
            attempts=Job.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def extend_lease(
    session: Session,
    worker_id: str,
    jobs: Sequence[ClaimedJob],
    lease_seconds: float,
    *,
    now: datetime | None = None,
) -> set[int]:
    """Heartbeat: push the leases of ``jobs`` forward; returns the ids still held."""
    if not jobs:
        return set()
    result = session.execute(
        update(Job)
        .where(
            tuple_(Job.id, Job.attempts).in_([(job.id, job.attempt) for job in jobs]),
            Job.locked_by == worker_id,
            Job.status == Status.RUNNING.value,
        )
        .values(lease_expires_at=_now(now) + timedelta(seconds=lease_seconds))
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return {int(job_id) for job_id in result.scalars()}


def retry_dead(
    session: Session,
    *,
    queue: str | None = None,
    task: str | None = None,
    job_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> int:
    """Put dead jobs back in line with fresh attempts (after a fix); keeps ``last_error``."""
    stmt = update(Job).where(Job.status == Status.DEAD.value)
    if queue is not None:
        stmt = stmt.where(Job.queue == queue)
    if task is not None:
        stmt = stmt.where(Job.task == task)
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(list(job_ids)))
    result = session.execute(
        stmt.values(
            status=Status.QUEUED.value,
            attempts=0,
            run_at=_now(now),
            locked_by=None,
            lease_expires_at=None,
            finished_at=None,
        ).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def delete_finished(
    session: Session,
    older_than: timedelta,
    *,
    statuses: Sequence[Status] = (Status.DONE,),
    now: datetime | None = None,
) -> int:
    """Delete settled jobs whose ``finished_at`` is older than ``older_than``; returns count."""
    allowed = {Status.DONE, Status.DEAD}
    if not set(statuses) <= allowed:
        raise ValueError("only done and dead jobs can be deleted")
    result = session.execute(
        delete(Job)
        .where(
            Job.status.in_([s.value for s in statuses]),
            Job.finished_at < _now(now) - older_than,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


@dataclass(frozen=True)
class QueueStats:
    queue: str
    status: str
    count: int
    oldest_run_at: datetime | None


def stats(session: Session) -> list[QueueStats]:
    """Job counts per queue and status, with the oldest ``run_at`` (queue lag for ``queued``)."""
    rows = session.execute(
        select(Job.queue, Job.status, func.count(), func.min(Job.run_at))
        .group_by(Job.queue, Job.status)
        .order_by(Job.queue, Job.status)
    ).all()
    return [
        QueueStats(queue=q, status=s, count=int(n), oldest_run_at=oldest)
        for q, s, n, oldest in rows
    ]
