"""Tasks every deployment needs: for now, pruning settled jobs so the queue table stays small.

``jobs.cleanup`` reschedules itself for the next day, keyed by date, so however many
workers start and however often, one cleanup runs per day; ``ensure_cleanup_scheduled``
(called by ``postwise worker`` at start) re-seeds the chain if it was ever broken.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import structlog
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, PermanentFailure, task

log = structlog.get_logger(__name__)

CLEANUP = "jobs.cleanup"
CLEANUP_QUEUE = "default"
DEFAULT_KEEP_DONE_DAYS = 7
DEFAULT_KEEP_DEAD_DAYS = 30


def _cleanup_key(day: datetime) -> str:
    return f"{CLEANUP}:{day.date().isoformat()}"


def ensure_cleanup_scheduled(
    session: Session,
    *,
    keep_done_days: int = DEFAULT_KEEP_DONE_DAYS,
    keep_dead_days: int = DEFAULT_KEEP_DEAD_DAYS,
    now: datetime | None = None,
) -> int:
    """Enqueue today's cleanup unless it exists; returns its job id."""
    now = now or clock.utcnow()
    return queue.enqueue(
        session,
        CLEANUP,
        {"keep_done_days": keep_done_days, "keep_dead_days": keep_dead_days},
        queue=CLEANUP_QUEUE,
        priority=1000,  # housekeeping yields to real work
        max_attempts=3,
        dedupe_key=_cleanup_key(now),
    )


@task(CLEANUP)
def cleanup(ctx: JobContext) -> None:
    """Delete done jobs older than ``keep_done_days`` and dead ones older than ``keep_dead_days``.

    Dead jobs are kept longer because an operator may still want to read their error
    or retry them.
    """
    try:
        keep_done = int(ctx.payload.get("keep_done_days", DEFAULT_KEEP_DONE_DAYS))
        keep_dead = int(ctx.payload.get("keep_dead_days", DEFAULT_KEEP_DEAD_DAYS))
    except (TypeError, ValueError) as exc:
        raise PermanentFailure(f"bad cleanup payload {ctx.payload!r}: {exc}") from exc
    if keep_done < 0 or keep_dead < 0:
        raise PermanentFailure("keep_done_days and keep_dead_days must not be negative")

    now = clock.utcnow()
    done = queue.delete_finished(
        ctx.session, timedelta(days=keep_done), statuses=[queue.Status.DONE], now=now
    )
    dead = queue.delete_finished(
        ctx.session, timedelta(days=keep_dead), statuses=[queue.Status.DEAD], now=now
    )
    tomorrow = datetime.combine(now.date() + timedelta(days=1), time(3, 0), tzinfo=now.tzinfo)
    queue.enqueue(
        ctx.session,
        CLEANUP,
        {"keep_done_days": keep_done, "keep_dead_days": keep_dead},
        queue=CLEANUP_QUEUE,
        run_at=tomorrow,
        priority=1000,
        max_attempts=3,
        dedupe_key=_cleanup_key(tomorrow),
    )
    log.info("jobs.cleanup", deleted_done=done, deleted_dead=dead, next_run_at=tomorrow)
