"""Event retention: a daily job deletes events older than ``POSTWISE_EVENT_RETENTION_DAYS``.

The purge walks the events table by primary-key ranges of ``batch_size`` ids, deleting
the rows of each range whose ``occurred_at`` is before the cutoff, so no statement
touches more than ``batch_size`` rows and no lock is held on a large part of the table.
One job deletes at most ``batches`` ranges, then enqueues its own continuation (from the
next id, due at once) and commits: the deletes of one job commit with its completion,
so this also bounds each transaction. When the walk reaches the end of the table, the
next day's purge is enqueued for 04:00 UTC, keyed by date like ``jobs.cleanup``, and
``ensure_purge_scheduled`` (called at worker start) re-seeds the chain if it broke.
See docs/tracking-web.md.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.settings import get_settings
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, PermanentFailure, task
from postwise.storage.tables import Event

log = structlog.get_logger(__name__)

PURGE = "tracking.purge_events"
PURGE_QUEUE = "default"
DEFAULT_BATCH_SIZE = 10_000
DEFAULT_BATCHES = 20
RUN_AT = time(4, 0)


def _key(day: str, after_id: int = 0) -> str:
    return f"{PURGE}:{day}" if after_id == 0 else f"{PURGE}:{day}:after:{after_id}"


def _enqueue(
    session: Session, payload: dict[str, Any], *, day: str, run_at: datetime | None = None
) -> int:
    return queue.enqueue(
        session,
        PURGE,
        {**payload, "day": day},
        queue=PURGE_QUEUE,
        run_at=run_at,
        priority=1000,  # housekeeping yields to real work
        max_attempts=3,
        dedupe_key=_key(day, int(payload.get("after_id", 0))),
    )


def ensure_purge_scheduled(session: Session, *, now: datetime | None = None) -> int:
    """Enqueue today's purge unless it exists; returns its job id."""
    now = now or clock.utcnow()
    return _enqueue(session, {}, day=now.date().isoformat())


def purge_events(
    session: Session,
    cutoff: datetime,
    *,
    after_id: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batches: int = DEFAULT_BATCHES,
) -> tuple[int, int | None]:
    """Delete events of every workspace that occurred before ``cutoff``, in id ranges.

    Returns (rows deleted, the id to continue after, or None when the table's end was
    reached). Runs in the caller's transaction: a system session, since retention is
    one rule for all workspaces.
    """
    last_id = session.scalar(select(func.max(Event.id)))
    if last_id is None:
        return 0, None
    deleted = 0
    low = after_id
    for _ in range(batches):
        # Skip the gaps earlier purges left: one primary-key probe instead of empty ranges.
        first = session.scalar(select(func.min(Event.id)).where(Event.id > low))
        if first is None or first > last_id:
            return deleted, None
        high = first - 1 + batch_size
        result = session.execute(
            delete(Event)
            .where(Event.id > low, Event.id <= high, Event.occurred_at < cutoff)
            .execution_options(synchronize_session=False)
        )
        deleted += int(getattr(result, "rowcount", 0) or 0)
        low = high
    return deleted, (low if low < last_id else None)


def _int(payload: dict[str, Any], name: str, default: int, minimum: int) -> int:
    value = payload.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise PermanentFailure(f"{name} must be an integer of at least {minimum}, not {value!r}")
    return value


@task(PURGE)
def purge(ctx: JobContext) -> None:
    """One step of the daily purge; see the module docstring."""
    payload = ctx.payload
    retention_days = _int(payload, "retention_days", get_settings().event_retention_days, 0)
    batch_size = _int(payload, "batch_size", DEFAULT_BATCH_SIZE, 1)
    batches = _int(payload, "batches", DEFAULT_BATCHES, 1)
    after_id = _int(payload, "after_id", 0, 0)
    now = clock.utcnow()
    day = str(payload.get("day") or now.date().isoformat())
    # Explicit values travel with the chain; the setting is read afresh each day.
    carried: dict[str, Any] = {
        k: payload[k] for k in ("retention_days", "batch_size", "batches") if k in payload
    }

    deleted, continue_after = 0, None
    if retention_days > 0:
        cutoff = now - timedelta(days=retention_days)
        deleted, continue_after = purge_events(
            ctx.session, cutoff, after_id=after_id, batch_size=batch_size, batches=batches
        )
    if continue_after is not None:
        _enqueue(ctx.session, {**carried, "after_id": continue_after}, day=day)
    else:
        tomorrow = datetime.combine(now.date() + timedelta(days=1), RUN_AT, tzinfo=now.tzinfo)
        _enqueue(ctx.session, carried, day=tomorrow.date().isoformat(), run_at=tomorrow)
    log.info(
        "tracking.purge_events",
        retention_days=retention_days,
        deleted=deleted,
        continue_after=continue_after,
    )
