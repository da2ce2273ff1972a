"""The segment tasks: real-time re-evaluation, full refresh, and the periodic sweep.

* ``segments.reevaluate``: the contacts one transaction changed and what changed
  (written by ``changes``); re-runs only the segments that can see those changes.
* ``segments.refresh``: one segment, recomputed whole (after a save, on request, or
  from the sweep).
* ``segments.sweep``: windows slide with time alone ("in the last 30 days", "no open in
  90 days"), so nothing is written when a contact silently leaves one. Every
  ``POSTWISE_SEGMENT_SWEEP_MINUTES`` the sweep enqueues a refresh of each active
  time-dependent segment of every workspace, then enqueues its own next run, keyed by
  its due time like ``jobs.cleanup`` (one sweep per period however many workers run;
  ``ensure_sweep_scheduled`` at worker start re-seeds a broken chain). Why a full
  refresh rather than only the contacts near a window's edge: docs/segments.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.settings import get_settings
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, PermanentFailure, task
from postwise.segments import catalog, changes, membership
from postwise.segments.store import REFRESH
from postwise.storage.tables import Segment

log = structlog.get_logger(__name__)

SWEEP = "segments.sweep"
SWEEP_QUEUE = "default"
SWEEP_WORKSPACE = "segments.sweep_workspace"


@task(changes.REEVALUATE)
def reevaluate(ctx: JobContext) -> None:
    raw = ctx.payload.get("contacts")
    if not isinstance(raw, dict):
        raise PermanentFailure(f"payload needs a 'contacts' object, not {raw!r}")
    try:
        contacts = {int(cid): {str(k) for k in keys} for cid, keys in raw.items()}
    except (TypeError, ValueError) as exc:
        raise PermanentFailure(f"bad contacts in payload: {exc}") from exc
    moves = membership.reevaluate(ctx.session, contacts)
    if moves:
        log.info(
            "segments.reevaluated",
            contacts=len(contacts),
            entered=sum(len(m.entered) for m in moves),
            exited=sum(len(m.exited) for m in moves),
        )


@task(REFRESH)
def refresh(ctx: JobContext) -> None:
    segment_id = ctx.payload.get("segment_id")
    if not isinstance(segment_id, int) or isinstance(segment_id, bool):
        raise PermanentFailure(f"payload needs an integer segment_id, not {segment_id!r}")
    status = ctx.session.scalar(select(Segment.status).where(Segment.id == segment_id))
    if status != "active":
        return  # deleted or paused since: nothing to do
    membership.refresh(ctx.session, segment_id)


def _period(minutes: int) -> timedelta:
    return timedelta(minutes=max(minutes, 1))


def _next_due(now: datetime, minutes: int) -> datetime:
    return queue.next_period(now, int(_period(minutes).total_seconds()))


def _enqueue_sweep(session: Session, run_at: datetime) -> int:
    return queue.enqueue_periodic(session, SWEEP, run_at, queue=SWEEP_QUEUE, priority=500)


def ensure_sweep_scheduled(session: Session, *, now: datetime | None = None) -> int:
    """Enqueue the next sweep unless it exists; returns its job id. Needs a system session."""
    now = now or clock.utcnow()
    return _enqueue_sweep(session, _next_due(now, get_settings().segment_sweep_minutes))


@task(SWEEP)
def sweep(ctx: JobContext) -> None:
    """Fan out: one ``segments.sweep_workspace`` per workspace with active segments."""
    now = clock.utcnow()
    minutes = get_settings().segment_sweep_minutes
    try:
        due = datetime.fromisoformat(str(ctx.payload["due"]))
    except (KeyError, ValueError):
        due = now
    bucket = due.isoformat()
    workspaces = ctx.session.scalars(
        select(Segment.workspace_id).where(Segment.status == "active").distinct()
    ).all()
    for workspace_id in workspaces:
        queue.enqueue(
            ctx.session,
            SWEEP_WORKSPACE,
            {"bucket": bucket},
            workspace_id=workspace_id,
            priority=500,
            dedupe_key=f"{SWEEP_WORKSPACE}:{workspace_id}:{bucket}",
        )
    # The next period after this one's (or after now, if workers were down for a while).
    _enqueue_sweep(ctx.session, _next_due(max(due, now), minutes))
    log.info("segments.sweep", workspaces=len(workspaces))


@task(SWEEP_WORKSPACE)
def sweep_workspace(ctx: JobContext) -> None:
    """Enqueue a refresh of each time-dependent segment of this workspace."""
    bucket = str(ctx.payload.get("bucket") or clock.utcnow().isoformat())
    for segment in catalog.load(ctx.session):
        if segment.time_dependent:
            queue.enqueue(
                ctx.session,
                REFRESH,
                {"segment_id": segment.id, "version": segment.version, "sweep": bucket},
                priority=500,
                dedupe_key=f"{REFRESH}:{segment.workspace_id}:{segment.id}:sweep:{bucket}",
            )
