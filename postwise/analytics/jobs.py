"""``analytics.rollup``: a periodic per-workspace job that folds settled events into rollups.

Each run counts one batch (its own transaction with the job's completion) and queues the
next run: soon while there is a backlog, after ``PERIOD_SECONDS`` when caught up. The
dedupe key per time slot keeps one pending run per workspace.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy.orm import Session

from postwise.analytics import rollup
from postwise.core import clock
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, task
from postwise.storage.tenancy import workspace_of

log = structlog.get_logger(__name__)

ROLLUP = "analytics.rollup"
PERIOD_SECONDS = 60
BATCH = 50_000


def schedule(session: Session, *, seconds: float = PERIOD_SECONDS) -> int:
    ws = workspace_of(session)
    at = clock.utcnow() + timedelta(seconds=seconds)
    slot = int(at.timestamp()) // max(1, int(seconds) or 1)
    return queue.enqueue(
        session,
        ROLLUP,
        {},
        workspace_id=ws,
        run_at=at,
        priority=150,
        dedupe_key=f"{ROLLUP}:{ws}:{int(seconds)}:{slot}",
    )


def run_once(session: Session) -> rollup.RollupResult:
    """One batch plus the engagement of the contacts it touched; also what the job runs."""
    from postwise.analytics import engagement

    result = rollup.roll_up(session, limit=BATCH)
    if result.contacts:
        engagement.rescore(session, sorted(result.contacts))
    return result


@task(ROLLUP)
def rollup_job(ctx: JobContext) -> None:
    result = run_once(ctx.session)
    log.info("analytics.rollup", events=result.events, last_event_id=result.last_event_id)
    schedule(ctx.session, seconds=1 if result.events >= BATCH else PERIOD_SECONDS)
