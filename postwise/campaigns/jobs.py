"""Campaign background work: fan-out batches, the A/B decision, and "all handed over".

* ``campaigns.fanout``: one batch per job (one transaction: snapshot, outbox rows and
  cursor commit together), then the next batch as a new job; a crash replays the batch,
  which adds nothing twice. A paused or cancelled campaign stops the chain; resume
  starts it again from the cursor.
* ``campaigns.ab_decide``: at the end of the test duration, decide and queue the rest.
* ``campaigns.progress``: marks a campaign ``sent`` once nothing of it is pending.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.settings import get_settings
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, task
from postwise.storage.tables import Campaign

log = structlog.get_logger(__name__)

FANOUT = "campaigns.fanout"
AB_DECIDE = "campaigns.ab_decide"
PROGRESS = "campaigns.progress"
PROGRESS_SECONDS = 30


def enqueue_fanout(
    session: Session, campaign: Campaign, *, at: datetime | None = None, tag: str = "start"
) -> int:
    return queue.enqueue(
        session,
        FANOUT,
        {"campaign_id": campaign.id},
        workspace_id=campaign.workspace_id,
        run_at=at,
        priority=40,
        dedupe_key=f"{FANOUT}:{campaign.id}:{tag}:{campaign.fanout_cursor}",
    )


def _progress_later(session: Session, campaign: Campaign, seconds: float) -> None:
    at = clock.utcnow() + timedelta(seconds=seconds)
    queue.enqueue(
        session,
        PROGRESS,
        {"campaign_id": campaign.id},
        workspace_id=campaign.workspace_id,
        run_at=at,
        dedupe_key=f"{PROGRESS}:{campaign.id}:{at.replace(microsecond=0).isoformat()}",
    )


def run_fanout_batch(session: Session, campaign_id: int) -> bool:
    """One batch; True when the audience is complete. Also what the job runs."""
    from postwise.campaigns import fanout, store
    from postwise.delivery.service import kick

    campaign = store.get_campaign(session, campaign_id, lock=True)
    if campaign.status not in ("scheduled", "sending"):
        return True
    now = clock.utcnow()
    if campaign.status == "scheduled":
        from postwise.campaigns import audience

        fresh = audience.refresh_stale_segments(
            session, campaign, now, get_settings().segment_sweep_minutes
        )
        if fresh:
            log.info("campaigns.segments_refreshed", campaign=campaign.key, segments=fresh)
        campaign.status = "sending"
        campaign.started_at = now
    added, done = fanout.snapshot_batch(session, campaign, get_settings().campaign_fanout_batch)
    log.info("campaigns.fanout_batch", campaign=campaign.key, added=added, done=done)
    first = fanout.first_due(session, campaign)
    if first is not None:
        kick(session, max(first, now))
    if not done:
        enqueue_fanout(session, campaign, tag="next")
        return False
    if campaign.ab and campaign.ab_result is None:
        enqueue_decision(session, campaign, now)
    _progress_later(session, campaign, 1)
    if campaign.goal_event:
        from postwise.campaigns import attribution

        attribution.schedule_next(session, campaign.workspace_id, 60)
    return True


def enqueue_decision(session: Session, campaign: Campaign, now: datetime) -> None:
    """Queue the A/B decision for the end of the test period (now if it is over).

    The key names the last pause: a decision job that ran while the campaign was paused
    did nothing, and its row (kept for the record) must not swallow the one the resumed
    fan-out queues. Decisions are idempotent (``ab_result`` under the row lock), so an
    earlier job that is still waiting and this one cannot both send the rest.
    """
    run_at = max((campaign.started_at or now) + timedelta(hours=campaign.ab["duration_hours"]), now)
    since = campaign.paused_at.isoformat() if campaign.paused_at is not None else "first"
    queue.enqueue(
        session,
        AB_DECIDE,
        {"campaign_id": campaign.id},
        workspace_id=campaign.workspace_id,
        run_at=run_at,
        dedupe_key=f"{AB_DECIDE}:{campaign.id}:{since}",
    )


@task(FANOUT)
def fanout_job(ctx: JobContext) -> None:
    run_fanout_batch(ctx.session, int(ctx.payload["campaign_id"]))


@task(AB_DECIDE)
def ab_decide_job(ctx: JobContext) -> None:
    from postwise.campaigns import results

    results.decide_and_send(ctx.session, int(ctx.payload["campaign_id"]))


def check_progress(session: Session, campaign_id: int) -> str:
    """``sent`` once the fan-out is complete, any A/B rest is queued and nothing of the
    campaign is pending; otherwise checks again later."""
    from postwise.campaigns import fanout, store

    campaign = store.get_campaign(session, campaign_id, lock=True)
    if campaign.status != "sending":
        return campaign.status
    waiting_for_winner = bool(campaign.ab) and campaign.ab_result is None
    if waiting_for_winner or fanout.pending_count(session, campaign) > 0:
        _progress_later(session, campaign, PROGRESS_SECONDS)
        return campaign.status
    campaign.status = "sent"
    campaign.finished_at = clock.utcnow()
    return campaign.status


@task(PROGRESS)
def progress_job(ctx: JobContext) -> None:
    check_progress(ctx.session, int(ctx.payload["campaign_id"]))
