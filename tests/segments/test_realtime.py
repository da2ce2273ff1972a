"""Email events written by the system (the deliverer, in a system session) move
contacts in real time too: "was sent an email" fills as mail goes out."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from postwise.contacts.actions import upsert_contacts
from postwise.core.settings import Settings
from postwise.delivery import service
from postwise.jobs.runner import Worker
from postwise.segments import changes, membership, store
from postwise.storage.database import Database
from postwise.storage.tables import Event, Job
from postwise.workspaces.actions import create_workspace
from tests.segments.jobrun import run_due

SENT_THIS_WEEK = {"email": "sent", "window": {"last": {"days": 7}}}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(
        data_dir=tmp_path,
        secret_key="test-secret",
        delivery_from_address="news@send.example",
        delivery_bounce_domain="bounce.send.example",
        delivery_postal_address="1 Main St, Springfield",
        delivery_other_per_minute=60_000,
    )
    monkeypatch.setattr(service, "get_settings", lambda: s)
    return s


def test_sent_mail_enters_a_segment_through_the_worker(db: Database, settings: Settings) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        [ann] = upsert_contacts(s, [{"email": "ann@corp.example"}], source="api")
        segment = store.create_segment(s, store.SegmentInput("Mailed", SENT_THIS_WEEK))
    run_due(db)  # the first refresh: nobody was mailed
    with db.tenant(ws) as s:
        service.send_to_contact(
            s, email="ann@corp.example", template={"subject": "Hi", "text": "x"}
        )
    Worker(db, worker_id="test-worker").run_until_idle()  # delivers, then re-evaluates
    with db.tenant(ws) as s:
        assert membership.current_members(s, segment.id) == {ann.contact_id}
        names = s.scalars(select(Event.name).where(Event.contact_id == ann.contact_id)).all()
    assert "Email Sent" in names and "segment.entered" in names


def test_a_system_session_note_is_checked_against_the_workspace_segments(db: Database) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        [ann] = upsert_contacts(s, [{"email": "ann@corp.example"}], source="api")
        store.create_segment(s, store.SegmentInput("Mailed", SENT_THIS_WEEK), refresh=False)
    run_due(db)  # the new contact's own re-evaluation
    with db.system() as s:  # no segment reads opens: nothing to do
        changes.note(s, [ann.contact_id], ["event:Email Opened"], workspace_id=ws)
    with db.system() as s:
        queued = select(Job).where(Job.task == changes.REEVALUATE, Job.status == "queued")
        assert s.scalars(queued).all() == []
        changes.note(s, [ann.contact_id], ["event:Email Sent"], workspace_id=ws)
    with db.system() as s:
        [job] = s.scalars(queued).all()
    assert job.workspace_id == ws
    assert job.payload == {"contacts": {str(ann.contact_id): ["event:Email Sent"]}}


def test_an_open_through_the_pixel_moves_the_contact_after_the_response(
    db: Database, settings: Settings
) -> None:
    from fastapi.testclient import TestClient

    from postwise.api.app import create_app
    from postwise.delivery import outbox
    from postwise.tracking.tokens import TokenKind, TokenSigner

    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        [ann] = upsert_contacts(s, [{"email": "ann@corp.example"}], source="api")
        opened = {"email": "opened", "window": {"last": {"days": 7}}}
        segment = store.create_segment(s, store.SegmentInput("Openers", opened))
        [outbox_id] = outbox.enqueue(
            s, [outbox.NewMessage(email="ann@corp.example", contact_id=ann.contact_id)]
        )
    run_due(db)
    token = TokenSigner(settings.resolved_secret_key()).sign(TokenKind.OPEN, outbox_id)
    app_settings = settings.model_copy(update={"database_url": db.url, "environment": "test"})
    client = TestClient(create_app(app_settings, db))  # no lifespan: no embedded worker
    pixel = client.get(f"/o/{token}", headers={"user-agent": "Mozilla/5.0 (Windows NT 10.0)"})
    client.close()
    assert pixel.status_code == 200
    run_due(db)
    with db.tenant(ws) as s:
        assert membership.current_members(s, segment.id) == {ann.contact_id}
