"""Sending as callers use it: queue to a contact or a list, drain through the job layer,
capture to a maildir, built by the message pipeline."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select

from postwise.contacts import actions
from postwise.core.errors import NotFound, ValidationFailed
from postwise.core.settings import Settings
from postwise.delivery import service
from postwise.delivery.transports.maildir import list_captured, read_captured
from postwise.jobs.runner import Worker
from postwise.storage.database import Database
from postwise.storage.tables import Job, OutboxMessage

from .conftest import World

INLINE = {"subject": "Hello {{ contact.first_name | default('there') }}", "text": "Hi!"}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(
        data_dir=tmp_path,
        secret_key="test-secret",
        delivery_from_address="news@send.example",
        delivery_bounce_domain="bounce.send.example",
        delivery_postal_address="1 Main St, Springfield",
        delivery_other_per_minute=60_000,
        delivery_other_connections=10,
    )
    monkeypatch.setattr(service, "get_settings", lambda: s)
    return s


def drain(db: Database) -> None:
    Worker(db, worker_id="test-worker").run_until_idle()


def test_send_to_contact_goes_out_through_the_worker_into_the_capture_maildir(
    db: Database, world: World, settings: Settings
) -> None:
    with db.tenant(world.ws) as s:
        actions.update_contact(
            s, world.contacts["ann@corp.example"], {"first_name": "Ann"}, source="api"
        )
        outbox_id = service.send_to_contact(s, email="ann@corp.example", template=INLINE)
    drain(db)
    with db.tenant(world.ws) as s:
        row = s.get(OutboxMessage, outbox_id)
        assert row is not None and row.status == "sent", row.last_reply if row else None
        message_id = row.message_id
    [captured] = list_captured(settings.resolved_capture_dir(), world.ws)
    assert captured.outbox_id == outbox_id
    assert list_captured(settings.resolved_capture_dir(), world.other_ws) == []
    raw = read_captured(settings.resolved_capture_dir(), world.ws, captured.name)
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["Subject"] == "Hello Ann"
    assert parsed["Message-ID"] == message_id
    assert parsed["To"].addresses[0].addr_spec == "ann@corp.example"
    with pytest.raises(NotFound):
        read_captured(settings.resolved_capture_dir(), world.other_ws, captured.name)


def test_send_to_list_queues_each_subscribed_member_once_per_campaign(
    db: Database, world: World, settings: Settings
) -> None:
    with db.tenant(world.ws) as s:
        actions.set_status(s, world.contacts["bob@corp.example"], "unsubscribed", source="api")
        assert service.send_to_list(s, world.list_id, template=INLINE, campaign_key="c1") == 2
        service.send_to_list(s, world.list_id, template=INLINE, campaign_key="c1")
    drain(db)
    with db.tenant(world.ws) as s:
        got = sorted((r.email, r.status, r.kind) for r in s.scalars(select(OutboxMessage)))
    assert got == [
        ("ann@corp.example", "sent", "marketing"),
        ("cy@gmail.com", "sent", "marketing"),
    ]
    assert len(list_captured(settings.resolved_capture_dir(), world.ws)) == 2


def test_bad_requests_are_refused_before_anything_is_queued(
    db: Database, world: World, settings: Settings
) -> None:
    with db.tenant(world.ws) as s:
        with pytest.raises(ValidationFailed, match="template"):
            service.send_to_contact(s, email="ann@corp.example")
        with pytest.raises(ValidationFailed, match="subject"):
            service.send_to_contact(s, email="ann@corp.example", template={"text": "x"})
        with pytest.raises(NotFound):
            service.send_to_contact(s, email="nobody@corp.example", template=INLINE)
        with pytest.raises(NotFound):
            service.send_to_list(s, 999_999, template=INLINE)
    with db.system() as s:
        assert s.scalars(select(OutboxMessage)).all() == []
        assert s.scalars(select(Job).where(Job.task == service.DRAIN)).all() == []


def test_a_template_error_fails_the_row_with_the_reason(
    db: Database, world: World, settings: Settings
) -> None:
    with db.tenant(world.ws) as s:
        outbox_id = service.send_to_contact(
            s, email="ann@corp.example", template={"subject": "{{ missing_var }}", "text": "x"}
        )
    drain(db)
    with db.tenant(world.ws) as s:
        row = s.get(OutboxMessage, outbox_id)
        assert row is not None
        assert (row.status, row.reason) == ("failed", "build")
        assert "missing_var" in (row.last_reply or "")
