"""The durable loop around the pure engine: enroll, advance, carry out the commands.

One call of ``step`` loads what the engine needs (the enrollment's state, the contact's
facts: zone, attributes, recent marketing sends, segment conditions), calls
``engine.advance`` and applies the outcome in the caller's transaction: the new state
and ``next_wake_at``, history rows, outbox rows keyed by the command key (a replay
after a crash enqueues nothing twice), contact and list changes, webhook delivery rows.
Workers claim due enrollments with ``FOR UPDATE SKIP LOCKED`` (``claim_due``) and run
each in a savepoint, so one bad enrollment does not undo the batch. A command naming a
template, list or secret that no longer exists pauses the workflow with an alert and
leaves the enrollment where it was (``Missing``). See docs/workflows.md (runtime).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, and_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.errors import Conflict, NotFound, ValidationFailed
from postwise.delivery import outbox
from postwise.segments.context import load_context
from postwise.segments.facts import load_facts
from postwise.storage.tables import (
    Contact,
    Enrollment,
    EnrollmentStep,
    MailingList,
    OutboxMessage,
    Template,
    WebhookDelivery,
    Workflow,
)
from postwise.storage.tenancy import workspace_of
from postwise.workflows import conditions, engine, store
from postwise.workflows.definition import Workflow as ParsedWorkflow
from postwise.workflows.definition import WorkflowContext, parse_workflow
from postwise.workflows.references import WorkflowReferences, workflow_references
from postwise.workflows.triggers import PastEnrollments, may_enroll

log = structlog.get_logger(__name__)

RETRY_AFTER_ERROR = timedelta(minutes=15)
_Parsed = tuple[ParsedWorkflow, WorkflowReferences]
_CACHE: dict[tuple[int, int], _Parsed] = {}  # a stored version never changes


class Missing(Exception):
    """A command names something the workspace no longer has."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def forget_parsed() -> None:
    """Drop the parsed versions (ids are reused only by a database made anew: tests)."""
    _CACHE.clear()


def parsed(session: Session, workflow_id: int, version: int) -> _Parsed:
    """The checked workflow of one stored version (cached per process)."""
    found = _CACHE.get((workflow_id, version))
    if found is None:
        doc = store.definition(session, workflow_id, version)
        wf = parse_workflow(doc, WorkflowContext(segments=load_context(session)))
        found = _CACHE[(workflow_id, version)] = (wf, workflow_references(wf))
    return found


# --- facts ------------------------------------------------------------------------------


def recent_sends(session: Session, contact_id: int, now: datetime) -> list[datetime]:
    """The contact's marketing emails of the last 7 days, every workflow and campaign."""
    rows = session.execute(
        select(OutboxMessage.created_at).where(
            OutboxMessage.contact_id == contact_id,
            OutboxMessage.kind == "marketing",
            OutboxMessage.created_at > now - timedelta(days=7),
            OutboxMessage.status.not_in(("suppressed", "failed")),
        )
    ).all()
    return [clock.as_utc(at) for (at,) in rows]


def facts_for(
    session: Session,
    wf: ParsedWorkflow,
    refs: WorkflowReferences,
    contact: Contact | ContactView,
    now: datetime,
) -> engine.Facts:
    decide = None
    goal_met = False
    if refs.segment_facts:
        contact_facts = _contact_facts(session, contact, refs, now)
        decide = conditions.evaluator_for(contact_facts)
        goal_met = conditions.goal_holds(wf, contact_facts, now)
    return engine.Facts(
        timezone=contact.timezone,
        attributes=dict(contact.attributes or {}),
        recent_sends=recent_sends(session, contact.id, now)
        if wf.policies.frequency_cap is not None
        else (),
        decide=decide,
        goal_met=goal_met,
    )


def _contact_facts(
    session: Session, contact: Contact | ContactView, refs: WorkflowReferences, now: datetime
) -> Any:
    from postwise.segments.references import References

    merged = References(
        event_names=frozenset().union(*(r.event_names for r in refs.conditions)),
        email_event_names=frozenset().union(*(r.email_event_names for r in refs.conditions)),
        email_kinds=frozenset().union(*(r.email_kinds for r in refs.conditions)),
        fields=frozenset().union(*(r.fields for r in refs.conditions)),
        list_ids=frozenset().union(*(r.list_ids for r in refs.conditions)),
        segment_ids=frozenset().union(*(r.segment_ids for r in refs.conditions)),
        time_dependent=any(r.time_dependent for r in refs.conditions),
        account_level=any(r.account_level for r in refs.conditions),
    )
    return load_facts(session, contact.workspace_id, contact.id, now, merged)


# --- enrolling --------------------------------------------------------------------------


def past_enrollments(session: Session, workflow_id: int, contact_id: int) -> PastEnrollments:
    count, last = session.execute(
        select(func.count(), func.max(Enrollment.enrolled_at)).where(
            Enrollment.workflow_id == workflow_id, Enrollment.contact_id == contact_id
        )
    ).one()
    active = (
        session.scalar(
            select(Enrollment.id).where(
                Enrollment.workflow_id == workflow_id,
                Enrollment.contact_id == contact_id,
                Enrollment.status == "active",
            )
        )
        is not None
    )
    return PastEnrollments(
        active=active, count=int(count or 0), last_entered_at=clock.as_utc(last) if last else None
    )


def enroll(
    session: Session,
    wf_row: Workflow,
    contact_id: int,
    *,
    now: datetime | None = None,
    event: str | None = None,
    properties: Mapping[str, Any] | None = None,
    manual: bool = False,
) -> Enrollment | None:
    """Start a journey if the re-entry policy allows (``None`` if not), and run its first
    steps at once. ``manual`` (API/CLI) is refused with ``Conflict`` when the policy says no."""
    now = now or clock.utcnow()
    wf, refs = parsed(session, wf_row.id, wf_row.version)
    if not may_enroll(wf.policies.reentry, past_enrollments(session, wf_row.id, contact_id), now):
        if manual:
            raise Conflict(
                "the contact is in this workflow now, or its re-entry policy refuses another entry",
                code="enrollment_refused",
                field="contact_id",
            )
        return None
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"No contact {contact_id}.", code="contact_not_found", field="contact_id")
    dialect = session.get_bind().dialect.name
    ins: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new_id = session.execute(
        ins(Enrollment)
        .values(
            workspace_id=contact.workspace_id,
            workflow_id=wf_row.id,
            version=wf_row.version,
            contact_id=contact_id,
            state={},
            status="active",
            next_wake_at=None,
            enrolled_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=["workflow_id", "contact_id"],
            index_where=text("status = 'active'"),  # literal: PG infers the partial index
        )
        .returning(Enrollment.id)
    ).scalar_one_or_none()
    if new_id is None:  # the partial unique index: another trigger won the race
        if manual:
            raise Conflict("the contact is in this workflow now", code="enrollment_refused")
        return None
    row = session.get(Enrollment, int(new_id))
    assert row is not None
    state = engine.State.new(row.id, event=event, properties=properties)
    step(session, wf_row, row, contact, engine.Enroll(), now, parsed_wf=(wf, refs), state=state)
    return row


# --- advancing --------------------------------------------------------------------------


@dataclass
class StepResult:
    commands: int
    exit_reason: str | None


def step(
    session: Session,
    wf_row: Workflow,
    row: Enrollment | Claimed,
    contact: Contact | ContactView | None,
    stimulus: engine.Stimulus,
    now: datetime,
    *,
    parsed_wf: _Parsed | None = None,
    state: engine.State | None = None,
    batched: bool = False,
) -> StepResult | None:
    """Advance one enrollment; ``None`` if the workflow was paused for a missing reference
    (the enrollment is left as it was, to run on resume). ``batched``: the outbox and
    history rows (and a ``Claimed`` row's new state) wait in the session for
    ``write_pending`` (one statement each per batch)."""
    wf, refs = parsed_wf or parsed(session, wf_row.id, row.version)
    state = state or engine.State.model_validate(row.state)
    if contact is None:
        contact = session.get(Contact, row.contact_id)
    if contact is None:  # erased: the row goes with the contact; nothing to do
        return StepResult(0, None)
    facts = facts_for(session, wf, refs, contact, now)
    outcome = engine.advance(wf, state, stimulus, now, facts)
    try:
        _check_references(session, outcome)
    except Missing as gone:
        store.pause_for_missing(session, wf_row, gone.what)
        log.warning("workflows.paused", workflow=wf_row.key, missing=gone.what)
        return None
    _apply(session, wf_row, row, contact, outcome, now)
    if isinstance(row, Claimed):
        _pending(session).updates.append(row)
    if not batched:
        write_pending(session, now)
    return StepResult(len(outcome.commands), outcome.exit_reason)


def _check_references(session: Session, outcome: engine.Outcome) -> None:
    """Raise ``Missing`` before anything is written if a command names something gone."""
    secrets: dict[str, str] | None = None
    for cmd in outcome.commands:
        if isinstance(cmd, engine.SendEmailCommand):
            _template_id(session, cmd.template)
        elif isinstance(
            cmd, engine.AddToListCommand | engine.RemoveFromListCommand | engine.UnsubscribeCommand
        ):
            if cmd.list is not None:
                _list_id(session, cmd.list)
        elif isinstance(cmd, engine.CallWebhookCommand):
            secrets = secrets if secrets is not None else store.webhook_secrets(session)
            if cmd.secret not in secrets:
                raise Missing(f"webhook secret {cmd.secret!r}")


def _template_id(session: Session, ref: str) -> int:
    """Template names are looked up once per session (a wake batch, a job)."""
    cache: dict[str, int] = session.info.setdefault(_TEMPLATES_KEY, {})
    if ref in cache:
        return cache[ref]
    found = session.scalar(select(Template.id).where(Template.name == ref))
    if found is None and ref.isdigit():
        found = session.scalar(select(Template.id).where(Template.id == int(ref)))
    if found is None:
        raise Missing(f"template {ref!r}")
    cache[ref] = int(found)
    return int(found)


_TEMPLATES_KEY = "postwise.workflow_templates"
_PENDING_KEY = "postwise.workflow_pending"


@dataclass
class _Pending:
    """Rows a batch of steps writes at once: outbox messages, history lines and the new
    state of claimed enrollments."""

    sends: list[tuple[outbox.NewMessage, dict[str, Any]]]  # message, its history line
    steps: list[dict[str, Any]]
    updates: list[Claimed]


def _pending(session: Session) -> _Pending:
    found = session.info.get(_PENDING_KEY)
    if found is None:
        found = session.info[_PENDING_KEY] = _Pending([], [], [])
    return found


_OUTBOX = cast(Table, OutboxMessage.__table__)
_STEPS = cast(Table, EnrollmentStep.__table__)
_ENROLLMENTS = cast(Table, Enrollment.__table__)


def write_pending(session: Session, now: datetime) -> None:
    """Write the batch's outbox rows (one INSERT ... ON CONFLICT DO NOTHING: a replayed
    key adds nothing), history rows and claimed enrollments' states (Core statements on
    the session's connection: no ORM unit of work per row), then one drain job."""
    pending: _Pending | None = session.info.pop(_PENDING_KEY, None)
    session.flush()
    if pending is None:
        return
    conn = session.connection()
    if pending.sends:
        ws = workspace_of(session)
        rows = [outbox._values(m, ws, now) for m, _ in pending.sends]
        if conn.dialect.name == "postgresql":
            found = _pg_insert(
                conn,
                _OUTBOX,
                rows,
                tail="ON CONFLICT (workspace_id, idempotency_key) DO NOTHING "
                "RETURNING id, idempotency_key",
            )
        else:
            stmt = (
                sqlite.insert(_OUTBOX)
                .on_conflict_do_nothing(index_elements=["workspace_id", "idempotency_key"])
                .returning(_OUTBOX.c.id, _OUTBOX.c.idempotency_key)
            )
            found = conn.execute(stmt, rows).all()
        ids = {key: int(i) for i, key in found}
        for message, line in pending.sends:
            line["command"] = {**line["command"], "outbox_id": ids.get(message.idempotency_key)}
        _kick_delivery(session, now)
    if pending.steps:
        if conn.dialect.name == "postgresql":
            _pg_insert(conn, _STEPS, pending.steps)
        else:
            conn.execute(insert(_STEPS), pending.steps)
    if pending.updates:
        _store_states(conn, workspace_of(session), pending.updates)


_PG_INSERTS: dict[tuple[str, tuple[str, ...], str], Any] = {}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} through jsonb_to_recordset")


def _pg_insert(conn: Any, table: Table, rows: list[dict[str, Any]], *, tail: str = "") -> Any:
    """Rows into ``table`` as one statement with one parameter: INSERT ... SELECT FROM
    ``jsonb_to_recordset``. A multi-row VALUES of a 200-message batch binds 4,000
    parameters, which SQLAlchemy and psycopg spend more time rendering and parsing
    than the server spends inserting; one JSON document costs one C-encoded string."""
    columns = tuple(rows[0])
    key = (table.name, columns, tail)
    stmt = _PG_INSERTS.get(key)
    if stmt is None:
        names = ", ".join(columns)
        types = ", ".join(
            f"{name} {table.c[name].type.compile(dialect=conn.dialect)}" for name in columns
        )
        stmt = _PG_INSERTS[key] = text(
            f"INSERT INTO {table.name} ({names}) SELECT {names} FROM "
            f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({types}) {tail}"
        )
    return conn.execute(stmt, {"rows": json.dumps(rows, default=_json_value)})


def _store_states(conn: Any, workspace_id: int, rows: Sequence[Claimed]) -> None:
    """The claimed enrollments' new states in one statement (PostgreSQL: an UPDATE joined
    to ``jsonb_to_recordset`` of one parameter; SQLite: one executemany)."""
    values = [
        {
            "id": r.id,
            "state": r.state,
            "status": r.status,
            "exit_reason": r.exit_reason,
            "next_wake_at": r.next_wake_at.isoformat() if r.next_wake_at else None,
            "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            "exited_at": r.exited_at.isoformat() if r.exited_at else None,
        }
        for r in rows
    ]
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_STORE_STATES, {"rows": json.dumps(values), "ws": workspace_id})
        return
    conn.execute(
        update(_ENROLLMENTS)
        .where(_ENROLLMENTS.c.id == bindparam("b_id"), _ENROLLMENTS.c.workspace_id == workspace_id)
        .values(
            state=bindparam("b_state", type_=_ENROLLMENTS.c.state.type),
            status=bindparam("b_status"),
            exit_reason=bindparam("b_exit_reason"),
            next_wake_at=bindparam("b_next_wake_at", type_=_ENROLLMENTS.c.next_wake_at.type),
            updated_at=bindparam("b_updated_at", type_=_ENROLLMENTS.c.updated_at.type),
            exited_at=bindparam("b_exited_at", type_=_ENROLLMENTS.c.exited_at.type),
        ),
        [
            {
                "b_id": r.id,
                "b_state": r.state,
                "b_status": r.status,
                "b_exit_reason": r.exit_reason,
                "b_next_wake_at": r.next_wake_at,
                "b_updated_at": r.updated_at,
                "b_exited_at": r.exited_at,
            }
            for r in rows
        ],
    )


_PG_STORE_STATES = text(
    "UPDATE enrollments AS e SET state = r.state, status = r.status, "
    "exit_reason = r.exit_reason, next_wake_at = r.next_wake_at, "
    "updated_at = r.updated_at, exited_at = r.exited_at "
    "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id bigint, state jsonb, "
    "status varchar, exit_reason varchar, next_wake_at timestamptz, updated_at timestamptz, "
    "exited_at timestamptz) "
    "WHERE e.id = r.id AND e.workspace_id = :ws"
)


def _list_id(session: Session, ref: int | str) -> int:
    if isinstance(ref, int):
        found = session.scalar(select(MailingList.id).where(MailingList.id == ref))
    else:
        found = session.scalar(select(MailingList.id).where(MailingList.name == ref))
    if found is None:
        raise Missing(f"list {ref!r}")
    return int(found)


def _apply(
    session: Session,
    wf_row: Workflow,
    row: Enrollment | Claimed,
    contact: Contact | ContactView,
    outcome: engine.Outcome,
    now: datetime,
) -> None:
    from postwise.contacts import actions, lists

    done: dict[str, dict[str, Any]] = {}  # step id -> what it did (for the history rows)
    messages: dict[str, outbox.NewMessage] = {}  # step id -> its message
    for cmd in outcome.commands:
        if isinstance(cmd, engine.SendEmailCommand):
            template_id = _template_id(session, cmd.template)
            if cmd.marketing and contact.status != "subscribed":
                done[cmd.step] = {"template": cmd.template, "skipped": contact.status}
                continue
            messages[cmd.step] = outbox.NewMessage(
                email=contact.email,
                kind="marketing" if cmd.marketing else "transactional",
                contact_id=contact.id,
                template_id=str(template_id),
                data={"data": dict(cmd.data)},
                workflow_key=wf_row.key,
                idempotency_key=f"wf:{cmd.key}",
            )
            done[cmd.step] = {"template": cmd.template, "key": cmd.key}
        elif isinstance(cmd, engine.UpdateAttributeCommand):
            try:
                actions.update_contact(
                    session,
                    contact.id,
                    {"attributes": {cmd.attribute: cmd.value}},
                    source=f"workflow:{wf_row.key}",
                )
            except ValidationFailed as exc:
                done[cmd.step] = {"attribute": cmd.attribute, "error": exc.message}
                continue
            done[cmd.step] = {"attribute": cmd.attribute, "value": cmd.value}
        elif isinstance(cmd, engine.AddToListCommand):
            list_id = _list_id(session, cmd.list)
            lists.subscribe(
                session,
                list_id,
                contact.id,
                lists.ConsentInput(source="api", text=f"workflow {wf_row.key}"),
                confirmed=True,
            )
            done[cmd.step] = {"list": list_id}
        elif isinstance(cmd, engine.RemoveFromListCommand):
            list_id = _list_id(session, cmd.list)
            with contextlib.suppress(NotFound):
                lists.remove_member(session, list_id, contact.id)
            done[cmd.step] = {"list": list_id}
        elif isinstance(cmd, engine.UnsubscribeCommand):
            if cmd.list is None:
                actions.set_status(
                    session, contact.id, "unsubscribed", source=f"workflow:{wf_row.key}"
                )
                done[cmd.step] = {"unsubscribed": "all"}
            else:
                list_id = _list_id(session, cmd.list)
                with contextlib.suppress(NotFound):
                    lists.unsubscribe(session, list_id, contact.id, source="workflow")
                done[cmd.step] = {"unsubscribed": list_id}
        elif isinstance(cmd, engine.CallWebhookCommand):
            delivery_id = _webhook(session, wf_row, row, contact, cmd, now)
            done[cmd.step] = {"webhook": cmd.url, "delivery_id": delivery_id, "key": cmd.key}
    state = outcome.state
    row.state = state.model_dump(mode="json")
    row.next_wake_at = outcome.wake_at
    row.updated_at = now
    reason = outcome.exit_reason
    if reason is not None:
        row.status = "completed" if reason == "completed" else "exited"
        row.exit_reason = reason
        row.exited_at = now
        row.next_wake_at = None
    pending = _pending(session)
    for h in outcome.commands:
        if not isinstance(h, engine.RecordStep):
            continue
        line = {
            "workspace_id": row.workspace_id,
            "enrollment_id": row.id,
            "workflow_id": wf_row.id,
            "step": h.step,
            "at": h.at,
            "outcome": h.outcome[:200],
            "command": done.get(h.step, {}) if h.outcome in _ACTING else {},
        }
        pending.steps.append(line)
        if h.outcome == "sent" and h.step in messages:
            pending.sends.append((messages.pop(h.step), line))


def _kick_delivery(session: Session, now: datetime) -> None:
    """A drain job for the mail just queued. Not ``service.kick``: its key is shared by
    every process for one second, and a second transaction inserting a key the first has
    not committed waits for it, which would serialize concurrent wake batches. This key
    is per process and second, so one batch adds one drain and no batch waits for another."""
    from postwise.delivery.service import DRAIN
    from postwise.jobs import queue

    second = clock.utcnow().replace(microsecond=0)
    queue.enqueue(
        session,
        DRAIN,
        {},
        workspace_id=None,
        run_at=second,
        priority=50,
        max_attempts=3,
        dedupe_key=f"{DRAIN}:{second.isoformat()}:wf:{os.getpid()}:{threading.get_ident()}",
    )


_ACTING = frozenset({"sent", "updated", "added", "removed", "unsubscribed", "webhook"})


def _webhook(
    session: Session,
    wf_row: Workflow,
    row: Enrollment | Claimed,
    contact: Contact | ContactView,
    cmd: engine.CallWebhookCommand,
    now: datetime,
) -> int:
    from postwise.workflows import webhooks

    if cmd.secret not in store.webhook_secrets(session):
        raise Missing(f"webhook secret {cmd.secret!r}")
    envelope = {
        "workflow": wf_row.key,
        "enrollment": row.id,
        "contact": {"id": contact.id, "email": contact.email},
        "occurred_at": now.isoformat(),
    }
    values = {
        "workspace_id": row.workspace_id,
        "workflow_id": wf_row.id,
        "enrollment_id": row.id,
        "key": cmd.key,
        "step": cmd.step,
        "url": cmd.url,
        "secret": cmd.secret,
        "body": webhooks.payload(cmd, envelope).decode(),
        "max_attempts": cmd.max_attempts,
        "backoff": float(cmd.backoff),
        "attempts": 0,
        "status": "pending",
        "next_attempt_at": now,
        "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    ins: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    new_id = session.execute(
        ins(WebhookDelivery)
        .values(values)
        .on_conflict_do_nothing(index_elements=["workspace_id", "key"])
        .returning(WebhookDelivery.id)
    ).scalar_one_or_none()
    if new_id is None:
        new_id = session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.key == cmd.key))
        return int(new_id or 0)
    from postwise.workflows import jobs

    jobs.enqueue_webhook(session, int(new_id), now)
    return int(new_id)


# --- claiming due wake-ups --------------------------------------------------------------


@dataclass
class Claimed:
    """A claimed enrollment as the wake path holds it: plain column values, no ORM
    identity (``_apply`` sets the new state here; ``write_pending`` stores all of a
    batch's in one statement)."""

    id: int
    workspace_id: int
    workflow_id: int
    version: int
    contact_id: int
    state: dict[str, Any]
    status: str = "active"
    exit_reason: str | None = None
    next_wake_at: datetime | None = None
    updated_at: datetime | None = None
    exited_at: datetime | None = None


@dataclass(frozen=True)
class ContactView:
    """What a step reads of a contact, loaded as plain values for a wake batch."""

    id: int
    workspace_id: int
    email: str
    status: str
    timezone: str | None
    attributes: dict[str, Any] | None


def claim_due(session: Session, now: datetime, limit: int) -> list[Claimed]:
    """Due enrollments of active workflows, locked for this transaction (skipping rows
    another worker holds); every workspace (a system session). Core rows: the wake path
    needs their values, not ORM objects. The paused workflows are read first, so the
    claim is one table on ``ix_enrollments_due`` whatever the statistics say (a join to
    ``workflows`` was planned as a scan of one workflow's 100,000 enrollments)."""
    conn = session.connection()
    paused = [i for (i,) in conn.execute(select(Workflow.id).where(Workflow.status != "active"))]
    stmt = (
        select(
            Enrollment.id,
            Enrollment.workspace_id,
            Enrollment.workflow_id,
            Enrollment.version,
            Enrollment.contact_id,
            Enrollment.state,
        )
        .where(Enrollment.status == "active", Enrollment.next_wake_at <= now)
        .order_by(Enrollment.next_wake_at)
        .limit(limit)
    )
    if paused:
        stmt = stmt.where(Enrollment.workflow_id.not_in(paused))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [Claimed(*r) for r in conn.execute(stmt)]


def next_due(session: Session) -> datetime | None:
    at = session.scalar(
        select(func.min(Enrollment.next_wake_at))
        .join(Workflow, Workflow.id == Enrollment.workflow_id)
        .where(Enrollment.status == "active", Workflow.status == "active")
    )
    return clock.as_utc(at) if at is not None else None


def wake(session: Session, rows: Sequence[Claimed], now: datetime) -> int:
    """Run ``Wake`` on claimed rows (any workspace); returns how many steps ran."""

    by_ws: dict[int, list[Claimed]] = {}
    for r in rows:
        by_ws.setdefault(r.workspace_id, []).append(r)
    ran = 0
    for ws, group in by_ws.items():
        while group:
            done, failed = _wake_group(session, ws, group, now)
            ran += done
            if failed is None:
                break
            # The group rolled back; the failing enrollment retries later, the rest now.
            log.error("workflows.step_failed", enrollment=failed)
            session.execute(
                update(Enrollment)
                .where(Enrollment.id == failed)
                .values(next_wake_at=now + RETRY_AFTER_ERROR)
            )
            group = [r for r in group if r.id != failed]
    return ran


def _wake_group(
    session: Session, ws: int, rows: list[Claimed], now: datetime
) -> tuple[int, int | None]:
    """Wake one workspace's claimed rows in one savepoint and one batch of writes;
    (steps run, the id that raised or None). The rows are copied: a group that rolls
    back leaves them as claimed, for the retry without the failing one."""
    from postwise.storage import tenancy

    scoped = Session(bind=session.connection(), join_transaction_mode="create_savepoint")
    tenancy.bind(scoped, ws)
    current: int | None = None
    try:
        wf_rows = {
            w.id: w
            for w in scoped.scalars(
                select(Workflow).where(Workflow.id.in_({r.workflow_id for r in rows}))
            )
        }
        contacts = {
            c.id: c
            for c in (
                ContactView(*values)
                for values in scoped.execute(
                    select(
                        Contact.id,
                        Contact.workspace_id,
                        Contact.email,
                        Contact.status,
                        Contact.timezone,
                        Contact.attributes,
                    ).where(Contact.id.in_({r.contact_id for r in rows}))
                )
            )
        }
        ran = 0
        for claimed in rows:
            current = claimed.id
            wf_row = wf_rows.get(claimed.workflow_id)
            contact = contacts.get(claimed.contact_id)
            if wf_row is None or wf_row.status != "active" or contact is None:
                continue
            mine = replace(claimed)
            if step(scoped, wf_row, mine, contact, engine.Wake(), now, batched=True) is not None:
                ran += 1
        current = None
        write_pending(scoped, now)
        scoped.commit()
        return ran, None
    except Exception:
        log.exception("workflows.wake_failed", enrollment=current)
        scoped.rollback()
        if current is None:
            raise
        return 0, current
    finally:
        scoped.close()


# --- stimuli for running enrollments ----------------------------------------------------


def active_enrollments(session: Session, contact_id: int) -> list[Enrollment]:
    return list(
        session.scalars(
            select(Enrollment).where(
                Enrollment.contact_id == contact_id, Enrollment.status == "active"
            )
        )
    )


def deliver(
    session: Session,
    contact_id: int,
    stimulus: engine.Stimulus,
    now: datetime,
    *,
    names: set[str] | None = None,
) -> int:
    """Give ``stimulus`` to the contact's running enrollments of active workflows that care
    (``names``: the event names that matter, from ``live_events``), and a goal event to
    those of paused workflows too (the goal is met when it happens, not on resume);
    returns how many."""
    count = 0
    for row in active_enrollments(session, contact_id):
        wf_row = session.get(Workflow, row.workflow_id)
        if wf_row is None:
            continue
        wf, refs = parsed(session, row.workflow_id, row.version)
        if wf_row.status != "active" and not (
            isinstance(stimulus, engine.EventArrived) and engine.meets_goal(wf, stimulus)
        ):
            continue  # paused: only its goal counts at once (an exit sends nothing)
        if isinstance(stimulus, engine.EventArrived) and stimulus.name not in refs.live_events:
            continue
        if isinstance(stimulus, engine.SegmentChanged) and wf.goal_segment is None:
            continue
        step(session, wf_row, row, None, stimulus, now, parsed_wf=(wf, refs))
        count += 1
    return count


def stop(session: Session, row: Enrollment, reason: str, now: datetime) -> None:
    wf_row = session.get(Workflow, row.workflow_id)
    if wf_row is not None:
        step(session, wf_row, row, None, engine.Stop(reason), now)


def migrate_enrollments(
    session: Session, ref: int | str, *, now: datetime | None = None
) -> dict[str, int]:
    """Move the workflow's running enrollments to its current version (same step id and
    kind of wait); those that cannot move stay where they are. Returns counts."""
    now = now or clock.utcnow()
    wf_row = store.get_workflow(session, ref)
    target, _ = parsed(session, wf_row.id, wf_row.version)
    moved = kept = 0
    for row in session.scalars(
        select(Enrollment).where(
            and_(
                Enrollment.workflow_id == wf_row.id,
                Enrollment.status == "active",
                Enrollment.version != wf_row.version,
            )
        )
    ):
        try:
            state = engine.migrate(engine.State.model_validate(row.state), target, now)
        except Exception:
            kept += 1
            continue
        row.state = state.model_dump(mode="json")
        row.version = wf_row.version
        row.next_wake_at = state.wake_at
        row.updated_at = now
        session.add(
            EnrollmentStep(
                enrollment_id=row.id,
                workflow_id=wf_row.id,
                step=state.step or "",
                at=now,
                outcome="migrated",
                command={"version": wf_row.version},
            )
        )
        moved += 1
    session.flush()
    return {"migrated": moved, "kept": kept}
