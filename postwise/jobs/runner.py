"""Workers: claim a batch, run each handler in the transaction that marks it done, repeat.

Exactly-once for database effects: the handler's writes and the fenced
``UPDATE jobs SET status='done' ... WHERE id, locked_by, attempts, status='running'``
share one transaction. If that update matches no row, another worker took the job
over after our lease expired; we roll back, so the handler's writes vanish and only
the new owner's commit counts. Effects outside the database cannot be rolled back:
such handlers must be idempotent, keyed by ``ctx.job_id``.

A worker runs as its own process (``postwise worker``) or as a thread of another one
(the embedded mode: ``start_in_thread()`` / ``stop()``). While it holds jobs, a
heartbeat thread extends their leases every third of the lease, so only a dead or
hung worker loses them. On SQLite the handler's transaction holds the database write
lock (``BEGIN IMMEDIATE``), so jobs there run one at a time across all workers.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from types import FrameType
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

import postwise.jobs.builtin  # noqa: F401  (every worker knows the built-in tasks)
from postwise.core.settings import Settings, get_settings
from postwise.jobs import metrics, queue
from postwise.jobs.queue import ClaimedJob, Status
from postwise.jobs.registry import (
    JobContext,
    PermanentFailure,
    TaskRegistry,
    UnknownTask,
    default_registry,
)
from postwise.storage.database import Database

log = structlog.get_logger(__name__)


class Outcome(StrEnum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    LEASE_LOST = "lease_lost"


class _LeaseLost(Exception):
    pass


class HandlerCommitted(RuntimeError):
    """A handler committed ``ctx.session`` itself, which would break exactly-once."""


def _forbid_commit(session: Session) -> Callable[[], None]:
    """Make a commit inside the handler fail; returns the switch that allows the final one."""
    allowed = False

    def before_commit(_session: Session) -> None:
        if not allowed:
            raise HandlerCommitted(
                "job handlers must not commit ctx.session: the worker commits it together "
                "with the job's completion (use session.flush() to see generated ids)"
            )

    def allow() -> None:
        nonlocal allowed
        allowed = True

    event.listen(session, "before_commit", before_commit)
    return allow


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


def run_job(db: Database, job: ClaimedJob, *, registry: TaskRegistry | None = None) -> Outcome:
    """Run one claimed job to a settled state; never raises for a handler's failure.

    It raises only if the database fails while recording the outcome; the job then
    stays leased and goes to another worker when the lease expires.
    """
    registry = registry or default_registry
    jlog = log.bind(job_id=job.id, task=job.task, attempt=job.attempt, worker_id=job.worker_id)
    try:
        handler = registry.get(job.task)
    except UnknownTask as exc:
        return _record_failure(db, job, str(exc), permanent=True, jlog=jlog)

    started = time.perf_counter()
    scope = db.tenant(job.workspace_id) if job.workspace_id is not None else db.system()
    try:
        with scope as session:
            allow_commit = _forbid_commit(session)
            handler(
                JobContext(
                    job_id=job.id,
                    task=job.task,
                    payload=job.payload,
                    workspace_id=job.workspace_id,
                    attempt=job.attempt,
                    max_attempts=job.max_attempts,
                    worker_id=job.worker_id,
                    session=session,
                )
            )
            if not queue.complete(session, job):
                raise _LeaseLost
            allow_commit()
    except _LeaseLost:
        metrics.LEASE_LOST.labels(job.task).inc()
        jlog.warning("job.lease_lost", detail="another worker owns the job; rolled back")
        return Outcome.LEASE_LOST
    except Exception as exc:
        permanent = isinstance(exc, PermanentFailure)
        return _record_failure(db, job, _describe(exc), permanent=permanent, jlog=jlog)
    finally:
        metrics.DURATION.labels(job.task).observe(time.perf_counter() - started)
    metrics.COMPLETED.labels(job.task).inc()
    jlog.debug("job.done")
    return Outcome.DONE


def _record_failure(
    db: Database, job: ClaimedJob, error: str, *, permanent: bool, jlog: Any
) -> Outcome:
    with db.system() as session:
        status = queue.fail(session, job, error, permanent=permanent)
    if status is None:
        metrics.LEASE_LOST.labels(job.task).inc()
        jlog.warning("job.lease_lost", detail="failed after another worker took the job over")
        return Outcome.LEASE_LOST
    metrics.FAILED.labels(job.task).inc()
    first_line = error.strip().splitlines()[-1] if error.strip() else ""
    if status is Status.DEAD:
        metrics.DEAD.labels(job.task).inc()
        jlog.error("job.dead", error=first_line, max_attempts=job.max_attempts)
        return Outcome.DEAD
    jlog.warning("job.retry", error=first_line)
    return Outcome.RETRY


class _Listener:
    """A PostgreSQL connection of its own that LISTENs on ``queue.CHANNEL``, so an idle
    worker claims a job whose enqueuer called ``queue.notify`` when it commits, not at
    the next poll. Made through the engine's dialect: no driver import here."""

    def __init__(self, db: Database) -> None:
        self._engine = db.engine
        self._conn: Any = None

    def wait(self, timeout: float) -> bool | None:
        """Block until a notification (True) or ``timeout`` (False); None if listening
        failed (the caller sleeps the poll instead; the next call reconnects)."""
        try:
            if self._conn is None:
                dialect = self._engine.dialect
                args, kwargs = dialect.create_connect_args(self._engine.url)
                conn = dialect.connect(*args, **kwargs)
                conn.autocommit = True
                conn.execute(f"LISTEN {queue.CHANNEL}")
                self._conn = conn
            heard = False
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                heard = True
            return heard
        except Exception:
            log.warning("worker.listen_failed", exc_info=True)
            self.close()
            return None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("worker.listen_close_failed", exc_info=True)


def default_worker_id() -> str:
    """Host, pid and a random tail: unique even when pids repeat across containers."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"[:128]


class Worker:
    """Claims and runs jobs of some queues until stopped (or, in tests, until none are due).

    One ``Worker`` runs once: after ``stop()`` make a new one.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings | None = None,
        *,
        queues: Sequence[str] = ("default",),
        worker_id: str | None = None,
        concurrency: int = 1,
        batch_size: int | None = None,
        lease_seconds: float | None = None,
        poll_seconds: float | None = None,
        registry: TaskRegistry | None = None,
    ) -> None:
        settings = settings or get_settings()
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not queues:
            raise ValueError("a worker needs at least one queue")
        self.db = db
        self.queues = list(queues)
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.batch_size = batch_size or settings.worker_batch_size
        self.lease_seconds = lease_seconds or settings.job_lease_seconds
        self.poll_seconds = (
            poll_seconds if poll_seconds is not None else settings.worker_poll_seconds
        )
        self.registry = registry or default_registry
        self._stop = threading.Event()
        self._held: dict[int, ClaimedJob] = {}
        self._held_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._log = log.bind(worker_id=self.worker_id)

    # -- public ---------------------------------------------------------------------

    def run_forever(self, *, handle_signals: bool = True) -> int:
        """Work until ``stop()`` or SIGTERM/SIGINT, finishing the job in hand; returns jobs run.

        A second signal gets the default behaviour (kill / KeyboardInterrupt), so an
        operator can still force a stuck worker down.
        """
        return self._run(until_idle=False, handle_signals=handle_signals)

    def run_until_idle(self, *, handle_signals: bool = False) -> int:
        """Work until no job is due (or ``stop()``); returns jobs run. For tests and cron."""
        return self._run(until_idle=True, handle_signals=handle_signals)

    def start_in_thread(self) -> threading.Thread:
        """Run in a daemon thread of the calling process (embedded mode); pair with ``stop()``."""
        if self._thread is not None:
            raise RuntimeError("this worker was already started")
        self._thread = threading.Thread(
            target=self._run_in_thread, name=f"postwise-worker-{self.worker_id}", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the worker to stop after its current jobs; wait for its thread if it has one.

        Returns False if the thread was still running after ``timeout`` seconds.
        """
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- loop -----------------------------------------------------------------------

    def _run_in_thread(self) -> None:
        try:
            self.run_forever(handle_signals=False)
        except Exception:
            self._log.exception("worker.crashed")

    def _run(self, *, until_idle: bool, handle_signals: bool) -> int:
        restore = self._install_signal_handlers() if handle_signals else None
        try:
            return self._loop(until_idle=until_idle)
        finally:
            if restore is not None:
                restore()

    def _loop(self, *, until_idle: bool) -> int:
        self._log.info(
            "worker.started",
            queues=self.queues,
            concurrency=self.concurrency,
            batch_size=self.batch_size,
            lease_seconds=self.lease_seconds,
            tasks=self.registry.names(),
        )
        loop_done = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat,
            args=(loop_done,),
            name=f"postwise-heartbeat-{self.worker_id}",
            daemon=True,
        )
        heartbeat.start()
        pool = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="postwise-job")
            if self.concurrency > 1
            else None
        )
        ran = 0
        listener = _Listener(self.db) if self.db.dialect == "postgresql" else None
        try:
            while not self._stop.is_set():
                try:
                    jobs = queue.claim(
                        self.db, self.worker_id, self.queues, self.batch_size, self.lease_seconds
                    )
                except Exception:
                    if until_idle:
                        raise
                    self._log.exception("worker.claim_failed")
                    self._stop.wait(max(self.poll_seconds, 1.0))
                    continue
                if not jobs:
                    if until_idle:
                        break
                    self._idle(listener)
                    continue
                ran += self._run_batch(jobs, pool)
        finally:
            if listener is not None:
                listener.close()
            if pool is not None:
                pool.shutdown(wait=True)
            loop_done.set()
            heartbeat.join()
            self._log.info("worker.stopped", jobs_run=ran)
        return ran

    def _idle(self, listener: _Listener | None) -> None:
        """Nothing due: wait ``poll_seconds``, or less when a NOTIFY says a job came
        (listening in slices of at most a second, so ``stop()`` is seen as before)."""
        deadline = time.monotonic() + self.poll_seconds
        while listener is not None and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            heard = listener.wait(min(remaining, 1.0))
            if heard is None:
                break  # listening failed: sleep the poll out
            if heard:
                return
        self._stop.wait(max(deadline - time.monotonic(), 0.0))

    def _run_batch(self, jobs: list[ClaimedJob], pool: ThreadPoolExecutor | None) -> int:
        for job in jobs:
            metrics.CLAIMED.labels(job.task).inc()
        with self._held_lock:
            self._held.update((job.id, job) for job in jobs)
        try:
            ran = list(pool.map(self._run_one, jobs) if pool else map(self._run_one, jobs))
            skipped = [job for job, did_run in zip(jobs, ran, strict=True) if not did_run]
            if skipped:
                self._release(skipped)
            return sum(ran)
        finally:
            with self._held_lock:
                for job in jobs:
                    self._held.pop(job.id, None)

    def _run_one(self, job: ClaimedJob) -> bool:
        """Run the job unless we are stopping; False means it was left for release."""
        if self._stop.is_set():
            return False
        try:
            run_job(self.db, job, registry=self.registry)
        except Exception:
            # The database failed while settling; the lease will hand the job on.
            self._log.exception("worker.settle_failed", job_id=job.id, task=job.task)
        finally:
            with self._held_lock:
                self._held.pop(job.id, None)
        return True

    def _release(self, jobs: list[ClaimedJob]) -> None:
        try:
            with self.db.system() as session:
                released = queue.release(session, jobs)
            self._log.info("worker.released", jobs=released)
        except Exception:
            self._log.exception("worker.release_failed", job_ids=[job.id for job in jobs])

    def _heartbeat(self, loop_done: threading.Event) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        while not loop_done.wait(interval):
            with self._held_lock:
                jobs = list(self._held.values())
            if not jobs:
                continue
            try:
                with self.db.system() as session:
                    kept = queue.extend_lease(session, self.worker_id, jobs, self.lease_seconds)
            except Exception:
                # SQLite: a long handler holds the write lock; the lease cannot be taken
                # over meanwhile either, so a missed beat is harmless there.
                self._log.warning("worker.heartbeat_failed", exc_info=True)
                continue
            if len(kept) < len(jobs):
                self._log.debug("worker.heartbeat", held=len(jobs), extended=len(kept))

    def _install_signal_handlers(self) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self._log.info("worker.stopping", signal=signal.Signals(signum).name)
            self._stop.set()
            restore()

        for sig in previous:
            signal.signal(sig, on_signal)
        return restore
