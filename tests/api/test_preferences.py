"""The preference center's topics and frequency, through the real ``/u/{token}`` routes,
honoured by a real send: list sends queued for everyone, the worker's screen suppresses
the rows the contact's choices rule out (reasons ``topic`` and ``frequency``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.contacts import actions, lists
from postwise.core.settings import Settings
from postwise.delivery import preferences, service
from postwise.storage.database import Database
from postwise.storage.tables import Contact, OutboxMessage
from postwise.tracking.tokens import TokenKind, TokenSigner
from postwise.workspaces.actions import NewWorkspace
from tests.api.conftest import AppFactory, ClientFactory

INLINE = {"subject": "News", "html": "<p>Hello {{ contact.first_name }}</p>"}


@pytest.fixture
def settings(tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=db.url,
        secret_key="preferences test secret",
        base_url="https://mail.acme.example",
        delivery_from_address="news@acme.example",
        delivery_bounce_domain="bounce.acme.example",
        delivery_postal_address="1 Main St, Springfield",
        delivery_other_per_minute=60_000,
    )
    monkeypatch.setattr(service, "get_settings", lambda: s)
    return s


@pytest.fixture
def client(
    make_app: AppFactory, settings: Settings, workspace: NewWorkspace, make_client: ClientFactory
) -> TestClient:
    overrides = {
        k: getattr(settings, k)
        for k in ("secret_key", "base_url", "delivery_from_address", "delivery_bounce_domain")
    }
    return make_client(make_app(**overrides), workspace.api_key)


@pytest.fixture
def people(db: Database, workspace: NewWorkspace) -> dict[str, int]:
    with db.tenant(workspace.workspace_id) as s:
        preferences.define_topics(s, {"product": "Product news", "events": "Events"})
        news = lists.create_list(s, {"name": "News"})
        ids = {"list": news.id}
        for email, name in (("ann@corp.example", "Ann"), ("bob@corp.example", "Bob")):
            contact, _ = actions.upsert_contact(
                s, {"email": email, "first_name": name}, source="api"
            )
            lists.subscribe(s, news.id, contact.id, lists.ConsentInput("api"), confirmed=True)
            ids[email] = contact.id
    return ids


def deliver(db: Database, settings: Settings) -> None:
    """The worker's drain, run straight (its job is deduplicated per second)."""
    deliverer = service.build_deliverer(db, settings, "prefs-test")
    asyncio.run(deliverer.run(until_idle=True, max_seconds=30))


def _token(settings: Settings, workspace: NewWorkspace, contact_id: int) -> str:
    signer = TokenSigner(settings.resolved_secret_key())
    return signer.sign(TokenKind.UNSUBSCRIBE, workspace.workspace_id, contact_id, 0, 1)


def _outcomes(db: Database, workspace: NewWorkspace) -> list[tuple[str, str, str | None]]:
    with db.tenant(workspace.workspace_id) as s:
        rows = s.execute(
            select(OutboxMessage.email, OutboxMessage.status, OutboxMessage.reason).order_by(
                OutboxMessage.id
            )
        ).all()
    return [(e, st, r) for e, st, r in rows]


def test_page_offers_topics_and_frequency_and_saving_them_is_honoured_at_send_time(
    client: TestClient,
    db: Database,
    people: dict[str, int],
    workspace: NewWorkspace,
    settings: Settings,
) -> None:
    token = _token(settings, workspace, people["ann@corp.example"])
    anonymous = TestClient(client.app)
    page = anonymous.get(f"/u/{token}")
    assert page.status_code == 200
    assert "Product news" in page.text and "Events" in page.text
    assert "value='product' checked" in page.text
    assert "value='all' checked" in page.text and "At most one a week" in page.text

    # Ann keeps Events only and wants at most one marketing message a week.
    saved = anonymous.post(
        f"/u/{token}",
        data={
            "action": "preferences",
            "choices": "1",
            "keep": str(people["list"]),
            "topic": "events",
            "frequency": "weekly",
        },
    )
    assert saved.status_code == 200, saved.text
    assert "value='product'>" in saved.text and "value='weekly' checked" in saved.text
    with db.tenant(workspace.workspace_id) as s:
        ann = s.get(Contact, people["ann@corp.example"])
        assert ann is not None and ann.status == "subscribed"
        assert ann.attributes[preferences.TOPICS_OFF] == ["product"]
        assert ann.attributes[preferences.FREQUENCY] == "weekly"

    def send(topic: str | None) -> None:
        body: dict[str, object] = {"template": INLINE}
        if topic:
            body["topic"] = topic
        answer = client.post(f"/api/lists/{people['list']}/send", json=body)
        assert answer.status_code == 202, answer.text
        deliver(db, settings)

    send("product")  # Ann left the topic: suppressed; Bob gets it
    send("events")  # Ann's weekly slot is free: sent
    send(None)  # a second marketing message to Ann within the week
    assert _outcomes(db, workspace) == [
        ("ann@corp.example", "suppressed", "topic"),
        ("bob@corp.example", "sent", None),
        ("ann@corp.example", "sent", None),
        ("bob@corp.example", "sent", None),
        ("ann@corp.example", "suppressed", "frequency"),
        ("bob@corp.example", "sent", None),
    ]

    # Transactional mail is never capped by the marketing frequency.
    direct = client.post("/api/messages", json={"email": "ann@corp.example", "template": INLINE})
    assert direct.status_code == 202
    deliver(db, settings)
    assert _outcomes(db, workspace)[-1] == ("ann@corp.example", "sent", None)

    # Ticking the topic again (a preference, not consent) lets the next one through.
    anonymous.post(
        f"/u/{token}",
        data={
            "action": "preferences",
            "choices": "1",
            "keep": str(people["list"]),
            "topic": ["events", "product"],
            "frequency": "all",
        },
    )
    send("product")
    assert _outcomes(db, workspace)[-2:] == [
        ("ann@corp.example", "sent", None),
        ("bob@corp.example", "sent", None),
    ]


def test_one_batch_holds_at_most_one_message_per_capped_contact(
    client: TestClient,
    db: Database,
    people: dict[str, int],
    workspace: NewWorkspace,
    settings: Settings,
) -> None:
    token = _token(settings, workspace, people["bob@corp.example"])
    TestClient(client.app).post(
        f"/u/{token}",
        data={"action": "preferences", "choices": "1", "frequency": "monthly", "keep": "0"},
    )
    for _ in range(3):
        client.post(
            "/api/messages",
            json={"email": "bob@corp.example", "template": INLINE, "kind": "marketing"},
        )
    deliver(db, settings)
    assert sorted(_outcomes(db, workspace)) == [
        ("bob@corp.example", "sent", None),
        ("bob@corp.example", "suppressed", "frequency"),
        ("bob@corp.example", "suppressed", "frequency"),
    ]


def test_bad_topic_and_frequency_are_refused(
    client: TestClient,
    people: dict[str, int],
    workspace: NewWorkspace,
    settings: Settings,
) -> None:
    answer = client.post(
        f"/api/lists/{people['list']}/send", json={"template": INLINE, "topic": "nope"}
    )
    assert answer.status_code == 400 and "unknown_topic" in answer.text
    token = _token(settings, workspace, people["bob@corp.example"])
    bad = TestClient(client.app).post(
        f"/u/{token}", data={"action": "preferences", "choices": "1", "frequency": "hourly"}
    )
    assert bad.status_code == 400 and "invalid_frequency" in bad.text
