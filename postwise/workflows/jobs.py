"""The workflow runtime's background jobs.

* ``workflows.wake``: lanes of self-renewing jobs (``LANES``, one per worker process you
  want busy) that claim due enrollments with ``FOR UPDATE SKIP LOCKED`` and run them in
  the job's transaction, so a killed worker's batch rolls back and is claimed again,
  never run twice. A full batch renews its lane at once; otherwise at the next due
  wake-up or after ``POLL_SECONDS``.
* ``workflows.route``: what a committed transaction noted (``segments/changes.py``'s
  change notes, read by the listener below before they are turned into segment jobs):
  events, segment entries and exits, list subscriptions of contacts, for the workspaces
  whose workflows can see them. Enrolls (trigger) and advances running enrollments
  (goal, wait for event) at once, so the first step does not wait for a poll.
* ``workflows.webhook``: one POST of a webhook delivery, re-enqueued on failure by the
  retry schedule of ``webhooks.py``; a hanging target times out and delays only itself.
* ``workflows.dates``: hourly, enrolls contacts whose date attribute is due today in
  their zone, at the trigger's local time.
"""

from __future__ import annotations

import time as monotime
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, PermanentFailure, task
from postwise.segments import changes
from postwise.storage import tenancy
from postwise.storage.tables import (
    Contact,
    Enrollment,
    Event,
    Job,
    ListMembership,
    MailingList,
    WebhookDelivery,
    Workflow,
    WorkflowRoutedEvent,
    WorkflowVersion,
)
from postwise.workflows import engine, runtime, store, triggers
from postwise.workflows.definition import DateTrigger, ListTrigger, parse_workflow
from postwise.workflows.references import workflow_references

log = structlog.get_logger(__name__)

WAKE = "workflows.wake"
ROUTE = "workflows.route"
WEBHOOK = "workflows.webhook"
DATES = "workflows.dates"
QUEUE = "default"
LANES = 2
BATCH = 500  # enrollments per wake job: one claim, one set of batched writes
POLL_SECONDS = 10.0  # idle lanes look again this often (known wake times sooner)
WEBHOOK_TIMEOUT = 10.0
ROUTE_SLACK = timedelta(minutes=10)
INTEREST_TTL = 2.0
SEGMENT_EVENTS = ("segment.entered", "segment.exited")


# --- wake-ups ---------------------------------------------------------------------------


def kick(session: Session, at: datetime | None = None) -> int:
    """A one-shot wake job now (resume, tests); the lanes carry on by themselves."""
    return queue.enqueue(session, WAKE, {"lane": None}, queue=QUEUE, run_at=at, priority=40)


def ensure_scheduled(session: Session, *, lanes: int = LANES) -> int:
    """Start each wake lane that has no queued or running job (worker start)."""
    running = session.scalars(
        select(Job.payload).where(Job.task == WAKE, Job.status.in_(("queued", "running")))
    ).all()
    have = {p.get("lane") for p in running if isinstance(p, dict)}
    started = 0
    for lane in range(lanes):
        if lane not in have:
            queue.enqueue(session, WAKE, {"lane": lane}, queue=QUEUE, priority=40)
            started += 1
    return started


@task(WAKE)
def wake(ctx: JobContext) -> None:
    now = clock.utcnow()
    rows = runtime.claim_due(ctx.session, now, BATCH)
    ran = runtime.wake(ctx.session, rows, now) if rows else 0
    lane = ctx.payload.get("lane")
    if lane is None:
        return
    if len(rows) >= BATCH:
        run_at = now
    else:
        due = runtime.next_due(ctx.session)
        run_at = now + timedelta(seconds=POLL_SECONDS)
        if due is not None and due > now:
            run_at = min(run_at, due)
    queue.enqueue(
        ctx.session,
        WAKE,
        {"lane": lane},
        queue=QUEUE,
        run_at=run_at,
        priority=40,
        dedupe_key=f"{WAKE}:{lane}:after:{ctx.job_id}",
    )
    if ran:
        log.debug("workflows.woke", lane=lane, steps=ran)


# --- real-time routing ------------------------------------------------------------------

_INTEREST: dict[int, tuple[float, frozenset[str]]] = {}


def forget_interest(workspace_id: int | None = None) -> None:
    """Drop the cached interest (a workflow was saved, paused or resumed here)."""
    if workspace_id is None:
        _INTEREST.clear()
    else:
        _INTEREST.pop(workspace_id, None)


def interest(session: Session, workspace_id: int) -> frozenset[str]:
    """Change keys the workspace's workflows can see: ``event:NAME`` of trigger and live
    events of active workflows and of running versions (a paused workflow's included:
    its goal counts while paused), ``list`` for list triggers (cached ``INTEREST_TTL``
    seconds)."""
    cached = _INTEREST.get(workspace_id)
    if cached is not None and monotime.monotonic() - cached[0] < INTEREST_TTL:
        return cached[1]
    # Core statements on the connection: no second Session may touch the caller's
    # transaction (closing one would roll it back).
    conn = session.connection()
    rows = conn.execute(
        select(Workflow.id, Workflow.version).where(
            Workflow.workspace_id == workspace_id, Workflow.status == "active"
        )
    ).all()
    keys: set[str] = set()
    if rows or _any_running(conn, workspace_id):
        versions = conn.execute(
            select(Enrollment.workflow_id, Enrollment.version)
            .where(Enrollment.workspace_id == workspace_id, Enrollment.status == "active")
            .distinct()
        ).all()
        for wf_id, version in {*rows, *versions}:
            doc = conn.execute(
                select(WorkflowVersion.definition).where(
                    WorkflowVersion.workflow_id == wf_id, WorkflowVersion.version == version
                )
            ).scalar()
            try:
                wf = parse_workflow(doc)
            except Exception:  # a condition on a declared attribute: watch every event
                keys.add(changes.ANY_EVENT)
                continue
            refs = workflow_references(wf)
            keys.update(changes.event_key(n) for n in refs.live_events | refs.trigger_events)
            if refs.trigger_segments or wf.goal_segment is not None:
                keys.update(changes.event_key(n) for n in SEGMENT_EVENTS)
            if any(isinstance(t, ListTrigger) for t in wf.triggers):
                keys.add(changes.LIST)
    found = frozenset(keys)
    _INTEREST[workspace_id] = (monotime.monotonic(), found)
    return found


def _any_running(conn: Any, workspace_id: int) -> bool:
    found = conn.execute(
        select(Enrollment.id)
        .where(Enrollment.workspace_id == workspace_id, Enrollment.status == "active")
        .limit(1)
    ).first()
    return found is not None


@event.listens_for(Session, "before_commit", insert=True)
def _route_notes(session: Session) -> None:
    """Runs before the segment listener pops the notes: a route job per workspace whose
    workflows care, in the same transaction as the writes."""
    pending: changes.Pending | None = session.info.get(changes._INFO_KEY)
    if not pending:
        return
    now = clock.utcnow()
    for workspace_id, contacts in pending.items():
        if not contacts:
            continue
        wanted = interest(session, workspace_id)
        if not wanted:
            continue
        every = changes.ANY_EVENT in wanted

        def seen(key: str, every: bool = every, wanted: frozenset[str] = wanted) -> bool:
            return key in wanted or (every and key.startswith("event:"))

        picked = {
            str(cid): sorted(k for k in keys if seen(k))
            for cid, keys in contacts.items()
            if any(seen(k) for k in keys)
        }
        if picked:
            queue.enqueue(
                session,
                ROUTE,
                {"contacts": picked, "at": now.isoformat()},
                queue=QUEUE,
                workspace_id=workspace_id,
                priority=30,
            )
            queue.notify(session)  # an idle worker takes it at commit, not at its next poll


def _unrouted_events(
    session: Session, contact_id: int, names: list[str], since: datetime
) -> list[Event]:
    """The contact's events of these names received since ``since`` that no route job has
    handed on yet, claimed for this one (``workflow_routed_events``: ON CONFLICT DO
    NOTHING, so a concurrent job waits for ours and then skips them). Every event of a
    batch counts, two of one name included, each once. In occurrence order."""
    if not names:
        return []
    routed = select(WorkflowRoutedEvent.event_id).where(WorkflowRoutedEvent.event_id == Event.id)
    found = list(
        session.scalars(
            select(Event)
            .where(
                Event.contact_id == contact_id,
                Event.name.in_(names),
                Event.received_at >= since,
                ~routed.exists(),
            )
            .order_by(Event.occurred_at, Event.id)
        )
    )
    if not found:
        return []
    dialect = session.get_bind().dialect.name
    ins: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = clock.utcnow()
    claimed = set(
        session.scalars(
            ins(WorkflowRoutedEvent)
            .values(
                [
                    {"event_id": ev.id, "workspace_id": ev.workspace_id, "routed_at": now}
                    for ev in found
                ]
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(WorkflowRoutedEvent.event_id)
        )
    )
    return [ev for ev in found if ev.id in claimed]


def _active_workflows(session: Session) -> list[Workflow]:
    return list(session.scalars(select(Workflow).where(Workflow.status == "active")))


@task(ROUTE)
def route(ctx: JobContext) -> None:
    raw = ctx.payload.get("contacts")
    if not isinstance(raw, dict):
        raise PermanentFailure(f"payload needs 'contacts', not {raw!r}")
    at = clock.as_utc(datetime.fromisoformat(str(ctx.payload.get("at"))))
    now = clock.utcnow()
    session = ctx.session
    workflows = _active_workflows(session)
    for cid_text, keys in raw.items():
        contact_id = int(cid_text)
        if session.get(Contact, contact_id) is None:
            continue
        names = [k[len("event:") :] for k in keys if k.startswith("event:") and k != "event:*"]
        for ev in _unrouted_events(session, contact_id, names, at - ROUTE_SLACK):
            handle_event(
                session, workflows, contact_id, ev.name or "", dict(ev.properties or {}), now
            )
        if changes.LIST in keys:
            _list_triggers(session, workflows, contact_id, at - ROUTE_SLACK, now)


def handle_event(
    session: Session,
    workflows: list[Workflow],
    contact_id: int,
    name: str,
    properties: dict[str, Any],
    now: datetime,
) -> None:
    """One event of a contact: running enrollments first (goal, wait-for-event, cart
    items joining), then the triggers of workflows the contact is not running."""
    if name in SEGMENT_EVENTS:
        segment_id = properties.get("segment_id")
        if not isinstance(segment_id, int):
            return
        entered = name == SEGMENT_EVENTS[0]
        runtime.deliver(session, contact_id, engine.SegmentChanged(segment_id, entered), now)
        for wf_row in workflows:
            wf, _ = runtime.parsed(session, wf_row.id, wf_row.version)
            if triggers.segment_trigger(wf, segment_id, entered):
                runtime.enroll(session, wf_row, contact_id, now=now)
        return
    runtime.deliver(session, contact_id, engine.EventArrived(name, properties), now)
    for wf_row in workflows:
        wf, refs = runtime.parsed(session, wf_row.id, wf_row.version)
        if name in refs.trigger_events and triggers.event_trigger(wf, name, properties):
            runtime.enroll(session, wf_row, contact_id, now=now, event=name, properties=properties)


def _list_triggers(
    session: Session, workflows: list[Workflow], contact_id: int, since: datetime, now: datetime
) -> None:
    subscribed = session.execute(
        select(MailingList.id, MailingList.name)
        .join(ListMembership, ListMembership.list_id == MailingList.id)
        .where(
            ListMembership.contact_id == contact_id,
            ListMembership.status == "subscribed",
            ListMembership.updated_at >= since,
        )
    ).all()
    for wf_row in workflows:
        wf, _ = runtime.parsed(session, wf_row.id, wf_row.version)
        if any(triggers.list_trigger(wf, int(lid), str(name)) for lid, name in subscribed):
            runtime.enroll(session, wf_row, contact_id, now=now)


# --- webhooks ---------------------------------------------------------------------------


def enqueue_webhook(session: Session, delivery_id: int, at: datetime) -> int:
    return queue.enqueue(
        session, WEBHOOK, {"delivery_id": delivery_id}, queue=QUEUE, run_at=at, max_attempts=3
    )


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[int | None, str | None]:
    """One POST; (status, error). Any answer other than 2xx, a timeout or a refused
    connection is a failure the retry schedule handles."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
            return status, None if 200 <= status < 300 else f"HTTP {status}"
    except urllib.error.HTTPError as exc:
        return int(exc.code), f"HTTP {exc.code}"
    except (TimeoutError, OSError, urllib.error.URLError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]


@task(WEBHOOK)
def send_webhook(ctx: JobContext) -> None:
    from postwise.workflows import webhooks

    row = ctx.session.get(WebhookDelivery, int(ctx.payload.get("delivery_id", 0)))
    if row is None or row.status != "pending":
        return
    secret = store.webhook_secrets(ctx.session).get(row.secret or "")
    now = clock.utcnow()
    body = row.body.encode()
    if secret is None:
        row.status, row.last_error, row.finished_at = "failed", "secret missing", now
        return
    headers = webhooks.headers(secret.encode(), row.key, int(now.timestamp()), body)
    status, error = post(row.url, body, headers, WEBHOOK_TIMEOUT)
    row.attempts += 1
    row.last_status = status
    row.last_error = error
    if error is None:
        row.status, row.finished_at = "delivered", clock.utcnow()
        return
    cmd = engine.CallWebhookCommand(
        key=row.key,
        step=row.step,
        url=row.url,
        secret=row.secret or "",
        body={},
        max_attempts=row.max_attempts,
        backoff=int(row.backoff),
    )
    following = webhooks.next_attempt(cmd, row.attempts, clock.utcnow())
    if following is None:
        row.status, row.finished_at = "failed", clock.utcnow()
        log.warning("workflows.webhook_failed", key=row.key, error=error)
        return
    row.next_attempt_at = following
    enqueue_webhook(ctx.session, row.id, following)


# --- date triggers ----------------------------------------------------------------------


def ensure_dates_scheduled(session: Session, *, now: datetime | None = None) -> int:
    now = now or clock.utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    return queue.enqueue(
        session, DATES, {}, queue=QUEUE, run_at=hour, dedupe_key=f"{DATES}:{hour.isoformat()}"
    )


@contextmanager
def _tenant(session: Session, workspace_id: int) -> Iterator[Session]:
    scoped = Session(bind=session.connection(), join_transaction_mode="create_savepoint")
    tenancy.bind(scoped, workspace_id)
    try:
        yield scoped
        scoped.commit()
    finally:
        scoped.close()


def run_dates(session: Session, now: datetime) -> int:
    """Enroll every contact whose date trigger is due at ``now`` in their zone (system
    session: every workspace); returns how many were enrolled."""
    enrolled = 0
    rows = session.execute(
        select(Workflow.id, Workflow.workspace_id).where(Workflow.status == "active")
    ).all()
    for wf_id, ws in rows:
        with _tenant(session, int(ws)) as scoped:
            wf_row = scoped.get(Workflow, int(wf_id))
            if wf_row is None:
                continue
            wf, _ = runtime.parsed(scoped, wf_row.id, wf_row.version)
            dated = [t for t in wf.triggers if isinstance(t, DateTrigger)]
            if not dated:
                continue
            fallback = wf.policies.timezone or "UTC"
            for contact in scoped.scalars(select(Contact)):
                tz = _zone(contact.timezone, fallback)
                local = now.astimezone(tz)
                for trig in dated:
                    value = (contact.attributes or {}).get(trig.attribute)
                    if value is None or not triggers.date_trigger_due(trig, value, local.date()):
                        continue
                    if local.time() < engine.parse_hhmm(trig.at):
                        continue
                    recent = scoped.scalar(
                        select(Enrollment.id).where(
                            Enrollment.workflow_id == wf_row.id,
                            Enrollment.contact_id == contact.id,
                            Enrollment.enrolled_at > now - timedelta(hours=23),
                        )
                    )
                    if recent is None and runtime.enroll(scoped, wf_row, contact.id, now=now):
                        enrolled += 1
    return enrolled


def _zone(name: str | None, fallback: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or fallback)
    except (KeyError, ValueError):
        return ZoneInfo(fallback)


@task(DATES)
def dates(ctx: JobContext) -> None:
    now = clock.utcnow()
    run_dates(ctx.session, now)
    ensure_dates_scheduled(ctx.session, now=now + timedelta(hours=1))
