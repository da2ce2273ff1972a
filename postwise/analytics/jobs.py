"""``analytics.rollup``: the jobs that fold settled events into rollups without anyone asking.

``analytics.rollup_sweep`` is one system job per period (POSTWISE_ANALYTICS_ROLLUP_SECONDS)
that every worker agrees on (the due time is a multiple of the period and the dedupe key
names it; ``ensure_sweep_scheduled`` at worker start re-seeds a broken chain, the way the
segments sweep is kept). It queues one ``analytics.rollup`` per workspace that has events
past its watermark, so idle workspaces cost one indexed look-up, not a job.

Each ``analytics.rollup`` counts one batch (its own transaction with the job's completion)
and queues itself again at once only while there is a backlog; once caught up the next
sweep brings it back. The dedupe key per time slot keeps one pending run per workspace.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.analytics import rollup
from postwise.core import clock
from postwise.core.settings import get_settings
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, task
from postwise.storage.tables import (
    AnalyticsWatermark,
    Campaign,
    CampaignAttribution,
    ContactEngagement,
    Event,
    Workspace,
)
from postwise.storage.tenancy import workspace_of

log = structlog.get_logger(__name__)

ROLLUP = "analytics.rollup"
SWEEP = "analytics.rollup_sweep"
SWEEP_QUEUE = "default"
BATCH = 50_000


def period_seconds() -> int:
    return max(1, get_settings().analytics_rollup_seconds)


def schedule(session: Session, *, seconds: float | None = None) -> int:
    """Queue a rollup of this (tenant) session's workspace ``seconds`` from now."""
    seconds = period_seconds() if seconds is None else seconds
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
    """One batch of events and one of attributions (one transaction) plus the engagement
    of the contacts it touched; also what the job and ``postwise report rollup`` run."""
    from postwise.analytics import engagement

    result = rollup.roll_up(session, limit=BATCH)
    rollup.fold_attributions(session, limit=BATCH)
    if result.contacts:
        engagement.rescore(session, sorted(result.contacts))
    return result


@task(ROLLUP)
def rollup_job(ctx: JobContext) -> None:
    result = run_once(ctx.session)
    log.info("analytics.rollup", events=result.events, last_event_id=result.last_event_id)
    if result.events >= BATCH:
        schedule(ctx.session, seconds=1)  # backlog: the next batch now, not next period


def _enqueue_sweep(session: Session, run_at: datetime) -> int:
    return queue.enqueue_periodic(session, SWEEP, run_at, queue=SWEEP_QUEUE, priority=150)


def ensure_sweep_scheduled(session: Session, *, now: datetime | None = None) -> int:
    """Enqueue the next sweep unless it exists; returns its job id. Needs a system session."""
    now = now or clock.utcnow()
    return _enqueue_sweep(session, queue.next_period(now, period_seconds()))


def workspaces_behind(session: Session) -> list[int]:
    """Workspaces with an event or attribution past their watermarks (index probes)."""
    stmt = select(AnalyticsWatermark.workspace_id, AnalyticsWatermark.last_event_id)
    marks: dict[int, int] = dict(session.execute(stmt).all())
    stmt = select(AnalyticsWatermark.workspace_id, AnalyticsWatermark.last_attribution_id)
    conversion_marks: dict[int, int] = dict(session.execute(stmt).all())
    behind = []
    for ws in session.scalars(select(Workspace.id).order_by(Workspace.id)).all():
        newer = session.scalar(
            select(Event.id).where(Event.workspace_id == ws, Event.id > marks.get(ws, 0)).limit(1)
        )
        if newer is None:
            newer = session.scalar(
                select(CampaignAttribution.id)
                .where(
                    CampaignAttribution.workspace_id == ws,
                    CampaignAttribution.id > conversion_marks.get(ws, 0),
                )
                .limit(1)
            )
        if newer is not None:
            behind.append(ws)
    return behind


RESCORE = "analytics.rescore_stale"
RESCORE_BATCH = 5000


@task(RESCORE)
def rescore_job(ctx: JobContext) -> None:
    """Decay without touches: rescore contacts not scored for a day, a batch per run."""
    from postwise.analytics import engagement

    done = engagement.rescore_stale(ctx.session, limit=RESCORE_BATCH)
    log.info("analytics.rescore_stale", contacts=done)
    if done >= RESCORE_BATCH:
        ws = workspace_of(ctx.session)
        queue.enqueue(
            ctx.session,
            RESCORE,
            {},
            workspace_id=ws,
            priority=600,
            dedupe_key=f"{RESCORE}:{ws}:{ctx.job_id}",
        )


def _queue_daily_rescores(session: Session, now: datetime) -> None:
    """Once per UTC day per workspace with scores: the dedupe key names the day."""
    day = now.date().isoformat()
    for ws in session.scalars(select(ContactEngagement.workspace_id).distinct()).all():
        queue.enqueue(
            session,
            RESCORE,
            {},
            workspace_id=int(ws),
            priority=600,
            dedupe_key=f"{RESCORE}:{ws}:{day}",
        )


UPLIFT = "analytics.uplift"


def queue_uplift(session: Session, params: dict[str, object] | None = None) -> int:
    """Queue ``analytics.uplift`` for this (tenant) session's workspace: one parameter set
    (``event``, ``revenue_property``, ``window_days``), or, without, every known one."""
    ws = workspace_of(session)
    return queue.enqueue(session, UPLIFT, {"params": params}, workspace_id=ws, priority=600)


@task(UPLIFT)
def uplift_job(ctx: JobContext) -> None:
    """Compute and store the CLTV uplift (docs/analytics.md) so reports read one row."""
    from postwise.analytics import uplift

    given = ctx.payload.get("params")
    if isinstance(given, dict):
        wanted = [uplift.Params(**given)]
    else:
        wanted = uplift.known_params(ctx.session)
    for params in wanted:
        result = uplift.refresh(ctx.session, params)
        log.info("analytics.uplift", goal=params.event, uplift=result["uplift"])


def _queue_daily_uplift(session: Session, now: datetime) -> None:
    """Once per UTC day per workspace that started a campaign (the small campaigns table,
    not the recipients, is read every sweep)."""
    day = now.date().isoformat()
    started = select(Campaign.workspace_id).where(Campaign.started_at.is_not(None)).distinct()
    for ws in session.scalars(started).all():
        queue.enqueue(
            session,
            UPLIFT,
            {"params": None},
            workspace_id=int(ws),
            priority=600,
            dedupe_key=f"{UPLIFT}:{ws}:{day}",
        )


@task(SWEEP)
def sweep(ctx: JobContext) -> None:
    """Fan out: one ``analytics.rollup`` per workspace with new events, then the next sweep."""
    now = clock.utcnow()
    seconds = period_seconds()
    try:
        due = datetime.fromisoformat(str(ctx.payload["due"]))
    except (KeyError, ValueError):
        due = now
    workspaces = workspaces_behind(ctx.session)
    for ws in workspaces:
        queue.enqueue(
            ctx.session,
            ROLLUP,
            {},
            workspace_id=ws,
            priority=150,
            dedupe_key=f"{ROLLUP}:{ws}:sweep:{due.isoformat()}",
        )
    _queue_daily_rescores(ctx.session, now)
    _queue_daily_uplift(ctx.session, now)
    _enqueue_sweep(ctx.session, queue.next_period(max(due, now), seconds))
    log.info("analytics.rollup_sweep", workspaces=len(workspaces))
