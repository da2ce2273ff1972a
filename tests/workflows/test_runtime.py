"""The workflow runtime end to end on both backends: playbooks installed into a
workspace, events through the real ingest path, the worker's jobs under a moved clock,
outbox rows with the expected templates and times, goals, pauses, versions, webhooks."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from postwise.contacts.actions import upsert_contacts
from postwise.core import clock
from postwise.jobs import queue
from postwise.jobs.runner import Outcome, run_job
from postwise.storage.database import Database
from postwise.storage.tables import (
    BounceAlert,
    Enrollment,
    EnrollmentStep,
    OutboxMessage,
    Template,
    WebhookDelivery,
)
from postwise.tracking.events import parse_batch
from postwise.tracking.ingest import ingest
from postwise.workflows import jobs, metrics, runtime, store
from postwise.workflows.definition import InvalidWorkflow
from postwise.workspaces.actions import create_workspace

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = START
        monkeypatch.setattr(clock, "utcnow", lambda: self.now)

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def moved(monkeypatch: pytest.MonkeyPatch) -> Clock:
    runtime.forget_parsed()
    jobs.forget_interest()
    return Clock(monkeypatch)


def run_due(db: Database, now: datetime) -> int:
    ran = 0
    while True:
        claimed = queue.claim(db, "test-worker", ["default"], 50, 60, now=now)
        if not claimed:
            return ran
        for job in claimed:
            if job.task.startswith("delivery."):  # sending is the outbox's business
                with db.system() as s:
                    queue.complete(s, job)
                continue
            assert run_job(db, job) is Outcome.DONE, (job.task, job.payload)
            ran += 1


def setup(db: Database, book: str, **params: Any) -> tuple[int, int]:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
        jobs.ensure_scheduled(s)
    with db.tenant(ws) as s:
        [ann] = upsert_contacts(
            s, [{"email": "ann@corp.example", "external_id": "u1", "timezone": "UTC"}], source="api"
        )
        store.set_webhook_secret(s, "sales", "s" * 32)
        store.install_playbook(s, book, params=params or None)
    jobs.forget_interest()
    return ws, ann.contact_id


def track(db: Database, ws: int, event: str, at: datetime, **props: Any) -> None:
    raw = {
        "type": "track",
        "event": event,
        "userId": "u1",
        "properties": props,
        "timestamp": at.isoformat(),
        "messageId": f"{event}-{at.isoformat()}",
    }
    with db.tenant(ws) as s:
        ingest(s, parse_batch({"batch": [raw]}, received_at=at), received_at=at)


def sent(db: Database, ws: int) -> list[tuple[str, datetime]]:
    with db.tenant(ws) as s:
        names = {str(t.id): t.name for t in s.scalars(select(Template))}
        rows = s.execute(
            select(OutboxMessage.template_id, OutboxMessage.created_at).order_by(OutboxMessage.id)
        ).all()
    return [(names[str(tid)], clock.as_utc(at)) for tid, at in rows]


def live(db: Database, moved: Clock, days: float, step_minutes: float = 30) -> None:
    end = moved.now + timedelta(days=days)
    while moved.now < end:
        moved.advance(minutes=step_minutes)
        run_due(db, moved.now)


def test_cart_abandonment_reminds_then_offers_and_an_order_ends_it(
    db: Database, moved: Clock
) -> None:
    ws, ann = setup(db, "cart_abandonment")
    track(db, ws, "Product Added", moved.now, name="Desk lamp", price=49)
    run_due(db, moved.now)
    with db.tenant(ws) as s:
        [row] = s.scalars(select(Enrollment)).all()
        assert row.status == "active" and row.next_wake_at == START + timedelta(hours=1)
    live(db, moved, days=3)
    assert sent(db, ws) == [
        ("cart_reminder", START + timedelta(hours=1)),
        ("cart_incentive", START + timedelta(hours=25)),
    ]
    with db.tenant(ws) as s:
        [row] = s.scalars(select(Enrollment)).all()
        assert (row.status, row.exit_reason) == ("completed", "completed")
        [msg] = s.scalars(select(OutboxMessage).limit(1)).all()
        assert msg.workflow_key == "cart-abandonment" and msg.kind == "marketing"
        assert msg.data["data"]["events"]["Product Added"] == [{"name": "Desk lamp", "price": 49}]
    # Three days later another cart; the order 30 minutes in ends it before any mail.
    moved.advance(hours=1)
    track(db, ws, "Product Added", moved.now, name="Chair")
    run_due(db, moved.now)
    moved.advance(minutes=30)
    track(db, ws, "Order Completed", moved.now, total=120)
    run_due(db, moved.now)
    live(db, moved, days=2)
    assert len(sent(db, ws)) == 2
    with db.tenant(ws) as s:
        second = s.scalars(select(Enrollment).order_by(Enrollment.id.desc())).first()
        assert second is not None and (second.status, second.exit_reason) == ("exited", "goal")
        history = metrics.history(s, ann)
    assert [h["exit_reason"] for h in history] == ["goal", "completed"]
    assert [s["step"] for s in history[1]["steps"]][:2] == ["grace_1h", "reminder"]
    with db.tenant(ws) as s:
        m = metrics.workflow_metrics(s, "cart-abandonment")
    assert m["enrolled"] == 2 and m["completed"] == 1 and m["exited_goal"] == 1
    assert m["emails_sent"] == 2 and m["completion_rate"] == 1.0
    assert {st["step"]: st["entered"] for st in m["steps"]}["reminder"] == 1


def test_lead_nurture_books_a_demo_and_moves_to_sales(
    db: Database, moved: Clock, target: tuple[str, type[_Target]]
) -> None:
    url, handler = target  # a local receiver: no call leaves the machine
    handler.fail_first = 0
    ws, _ann = setup(db, "lead_nurture", sales_webhook=url)
    with db.tenant(ws) as s:
        store.set_webhook_secret(s, "sales", "s" * 32)
    track(db, ws, "Lead Magnet Downloaded", moved.now, title="B2B email guide")
    run_due(db, moved.now)
    live(db, moved, days=8, step_minutes=60)
    track(db, ws, "Demo Booked", moved.now)
    run_due(db, moved.now)
    assert sent(db, ws) == [
        ("lead_download", START),
        ("lead_case_study", START + timedelta(days=3)),
        ("lead_consultation", START + timedelta(days=7)),
    ]
    with db.tenant(ws) as s:
        [row] = s.scalars(select(Enrollment)).all()
        assert row.status == "exited" and row.exit_reason == "qualified"
        [hook] = s.scalars(select(WebhookDelivery)).all()
        assert (hook.status, hook.attempts, hook.url) == ("delivered", 1, url)
        outcomes = [
            h.outcome for h in s.scalars(select(EnrollmentStep).order_by(EnrollmentStep.id))
        ]
    assert "event" in outcomes and "added" in outcomes and "webhook" in outcomes
    [call] = handler.calls
    assert call["webhook-id"] == hook.key and call["webhook-signature"].startswith("v1,")


def test_a_deleted_template_pauses_the_workflow_and_resume_runs_the_held_wake(
    db: Database, moved: Clock
) -> None:
    ws, _ = setup(db, "cart_abandonment")
    track(db, ws, "Product Added", moved.now, name="Lamp")
    run_due(db, moved.now)
    with db.tenant(ws) as s:
        s.delete(s.scalars(select(Template).where(Template.name == "cart_reminder")).one())
    live(db, moved, days=1, step_minutes=60)
    with db.tenant(ws) as s:
        wf = store.get_workflow(s, "cart-abandonment")
        assert wf.status == "paused" and "cart_reminder" in (wf.paused_reason or "")
        [alert] = s.scalars(select(BounceAlert)).all()
        assert alert.kind == "workflow_paused"
        [row] = s.scalars(select(Enrollment)).all()
        assert row.status == "active" and row.next_wake_at == START + timedelta(hours=1)
        from postwise.messages.store import TemplateInput, create_template

        create_template(s, TemplateInput(name="cart_reminder", subject="Back", html="<p>x</p>"))
        store.set_status(s, "cart-abandonment", "active")
    run_due(db, moved.now)
    assert [n for n, _ in sent(db, ws)] == ["cart_reminder"]


def test_versions_and_manual_enrollment(db: Database, moved: Clock) -> None:
    ws, ann = setup(db, "welcome")
    with db.tenant(ws) as s:
        wf = store.get_workflow(s, "welcome")
        runtime.enroll(s, wf, ann, manual=True)
        doc = store.definition(s, wf.id, 1)
        doc["steps"][1]["duration"] = {"days": 1}
        store.update_workflow(s, "welcome", doc)
        assert wf.version == 2
        bad = {
            **doc,
            "steps": [*doc["steps"], {"id": "x", "type": "send_email", "template": "nope"}],
        }
        with pytest.raises(InvalidWorkflow) as exc:
            store.update_workflow(s, "welcome", bad)
        assert exc.value.code == "unknown_template" and "x" in exc.value.message
    live(db, moved, days=3, step_minutes=120)
    with db.tenant(ws) as s:
        [row] = s.scalars(select(Enrollment)).all()
        assert row.version == 1  # finishes on its own version: 2 days, not 1
    assert [at - START for _, at in sent(db, ws)][:2] == [timedelta(0), timedelta(days=2)]


class _Target(http.server.BaseHTTPRequestHandler):
    calls: list[dict[str, str]] = []
    fail_first = 2
    hang = False

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        type(self).calls.append({k.lower(): v for k, v in self.headers.items()})
        if type(self).hang:
            threading.Event().wait(2)
        status = 500 if len(type(self).calls) <= type(self).fail_first else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[tuple[str, type[_Target]]]:
    handler = type("Handler", (_Target,), {"calls": [], "fail_first": 2, "hang": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


def _webhook_doc(url: str) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "Hook",
        "triggers": [{"type": "manual"}],
        "steps": [
            {
                "id": "notify",
                "type": "webhook",
                "url": url,
                "secret": "sales",
                "body": {"x": 1},
                "max_attempts": 3,
                "backoff": 30,
            }
        ],
    }


def test_webhook_retries_until_it_succeeds_then_a_hanging_target_fails(
    db: Database, moved: Clock, target: tuple[str, type[_Target]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = target
    ws, ann = setup(db, "welcome")
    with db.tenant(ws) as s:
        store.set_webhook_secret(s, "sales", "s" * 32)
        wf = store.create_workflow(s, "hook", _webhook_doc(url))
        runtime.enroll(s, wf, ann, manual=True)
    for _ in range(4):
        run_due(db, moved.now)
        moved.advance(seconds=61)
    with db.tenant(ws) as s:
        [hook] = s.scalars(select(WebhookDelivery)).all()
    assert (hook.status, hook.attempts, hook.last_status) == ("delivered", 3, 200)
    assert len(handler.calls) == 3
    assert len({c["webhook-id"] for c in handler.calls}) == 1  # same id on every retry
    # A hanging target: each attempt times out; after max_attempts the call is failed.
    handler.hang = True
    handler.calls.clear()
    monkeypatch.setattr(jobs, "WEBHOOK_TIMEOUT", 0.3)
    with db.tenant(ws) as s:
        wf2 = store.create_workflow(s, "hook2", _webhook_doc(url))
        runtime.enroll(s, wf2, ann, manual=True)
        [row] = s.scalars(select(Enrollment).where(Enrollment.workflow_id == wf2.id)).all()
        assert row.status == "completed"  # the journey never waited for the call
    for _ in range(4):
        run_due(db, moved.now)
        moved.advance(seconds=61)
    with db.tenant(ws) as s:
        hook2 = s.scalars(
            select(WebhookDelivery).where(WebhookDelivery.workflow_id == wf2.id)
        ).one()
    assert (
        hook2.status == "failed"
        and hook2.attempts == 3
        and "timed out" in (hook2.last_error or "").lower()
    )


def test_the_hourly_date_job_greets_on_the_local_birthday_at_nine(
    db: Database, moved: Clock
) -> None:
    from postwise.contacts.attributes import define_attribute

    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        define_attribute(s, "contact", "birthday", "date")
        rows = [
            {
                "email": "tokyo@corp.example",
                "timezone": "Asia/Tokyo",
                "attributes": {"birthday": "1990-03-03"},
            },
            {
                "email": "paris@corp.example",
                "timezone": "Europe/Paris",
                "attributes": {"birthday": "1985-03-04"},
            },
        ]
        upsert_contacts(s, rows, source="api")
        store.install_playbook(s, "birthday")
    greeted: list[tuple[str, datetime]] = []
    for _hour in range(72):  # 2 March 10:00 UTC .. 5 March, hourly as the job runs
        moved.advance(hours=1)
        with db.system() as s:
            jobs.run_dates(s, moved.now)
        run_due(db, moved.now)
    with db.tenant(ws) as s:
        from postwise.storage.tables import Contact

        emails = {c.id: c.email for c in s.scalars(select(Contact))}
        for row in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)):
            greeted.append((emails[row.contact_id], clock.as_utc(row.created_at)))
    # 09:00 local is the first hourly run at or after it: Tokyo 00:00 UTC, Paris 08:00 UTC.
    assert greeted == [
        ("tokyo@corp.example", datetime(2026, 3, 3, 0, 0, tzinfo=UTC)),
        ("paris@corp.example", datetime(2026, 3, 4, 8, 0, tzinfo=UTC)),
    ]
