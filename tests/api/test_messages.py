"""Sending over the API end to end: queue, deliver through the worker into the capture
maildir, read it back, and unsubscribe with the message's own one-click link."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.contacts import actions, lists
from postwise.core.settings import Settings
from postwise.delivery import service
from postwise.jobs.runner import Worker
from postwise.storage.database import Database
from postwise.storage.tables import Contact, ListMembership, OutboxMessage
from postwise.workspaces.actions import NewWorkspace, create_workspace
from tests.api.conftest import AppFactory, ClientFactory

INLINE = {
    "subject": "Welcome {{ contact.first_name }}",
    "html": "<p>Hi {{ data.plan | default('Free') }}</p>",
}


@pytest.fixture
def settings(tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch) -> Settings:
    s = Settings(
        environment="test",
        data_dir=tmp_path,
        database_url=db.url,
        secret_key="api test secret",
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
        news = lists.create_list(s, {"name": "News"})
        ids = {"list": news.id}
        for email, name in (("ann@corp.example", "Ann"), ("bob@corp.example", "Bob")):
            contact, _ = actions.upsert_contact(
                s, {"email": email, "first_name": name}, source="api"
            )
            lists.subscribe(s, news.id, contact.id, lists.ConsentInput("api"), confirmed=True)
            ids[email] = contact.id
    return ids


def deliver(db: Database) -> None:
    Worker(db, worker_id="api-test").run_until_idle()


def test_send_follow_and_read_the_captured_message(
    client: TestClient, db: Database, people: dict[str, int]
) -> None:
    answer = client.post(
        "/api/messages",
        json={"email": "ann@corp.example", "template": INLINE, "data": {"plan": "Pro"}},
    )
    assert answer.status_code == 202, answer.text
    outbox_id = answer.json()["id"]
    assert client.get(f"/api/messages/{outbox_id}").json()["status"] == "queued"
    deliver(db)
    state = client.get(f"/api/messages/{outbox_id}").json()
    assert (state["status"], state["transport"], state["attempts"]) == ("sent", "capture", 1)
    [captured] = client.get("/api/outbox/captured").json()
    assert captured["outbox_id"] == outbox_id
    raw = client.get(f"/api/outbox/captured/{captured['name']}")
    assert raw.headers["content-type"] == "message/rfc822"
    message = BytesParser(policy=policy.default).parsebytes(raw.content)
    assert message["Subject"] == "Welcome Ann"
    assert message["Message-ID"] == state["message_id"]
    assert client.get("/api/outbox/stats").json() == {"sent": 1}


def test_captured_files_of_another_workspace_are_not_found(
    client: TestClient,
    db: Database,
    people: dict[str, int],
    make_app: AppFactory,
    settings: Settings,
    make_client: ClientFactory,
) -> None:
    client.post("/api/messages", json={"email": "ann@corp.example", "template": INLINE})
    deliver(db)
    [captured] = client.get("/api/outbox/captured").json()
    with db.system() as s:
        other = create_workspace(s, "Globex")
    intruder = make_client(make_app(secret_key=settings.secret_key), other.api_key)
    assert intruder.get("/api/outbox/captured").json() == []
    assert intruder.get(f"/api/outbox/captured/{captured['name']}").status_code == 404


def test_list_send_and_one_click_unsubscribe_from_the_message_itself(
    client: TestClient, db: Database, people: dict[str, int], workspace: NewWorkspace
) -> None:
    answer = client.post(
        f"/api/lists/{people['list']}/send", json={"template": INLINE, "campaign_key": "launch"}
    )
    assert (answer.status_code, answer.json()) == (202, {"queued": 2})
    deliver(db)
    files = client.get("/api/outbox/captured").json()
    assert len(files) == 2
    raws = [client.get(f"/api/outbox/captured/{f['name']}").content for f in files]
    [ann_raw] = [r for r in raws if b"ann@corp.example" in r]
    message = BytesParser(policy=policy.default).parsebytes(ann_raw)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https://[^>]+)>", str(message["List-Unsubscribe"]))
    assert url is not None
    path = url.group(1).removeprefix("https://mail.acme.example")

    anonymous = TestClient(client.app)
    page = anonymous.get(path)
    assert page.status_code == 200 and "News" in page.text and "ann@corp.example" in page.text
    with db.tenant(workspace.workspace_id) as s:  # GET changes nothing
        assert s.get(ListMembership, (people["list"], people["ann@corp.example"])).status == (  # type: ignore[union-attr]
            "subscribed"
        )
    for _ in range(2):  # idempotent
        done = anonymous.post(path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200, done.text
    with db.tenant(workspace.workspace_id) as s:
        member = s.get(ListMembership, (people["list"], people["ann@corp.example"]))
        assert member is not None and member.status == "unsubscribed"

    # The next list send does not reach her, even though it is queued for everyone.
    client.post(f"/api/lists/{people['list']}/send", json={"template": INLINE})
    with db.tenant(workspace.workspace_id) as s:
        queued = {
            r.email
            for r in s.scalars(select(OutboxMessage).where(OutboxMessage.status == "queued"))
        }
    assert queued == {"bob@corp.example"}


def test_preference_center_leaves_unticked_lists_and_can_leave_everything(
    client: TestClient,
    db: Database,
    people: dict[str, int],
    workspace: NewWorkspace,
    settings: Settings,
) -> None:
    from postwise.tracking.tokens import TokenKind, TokenSigner

    signer = TokenSigner(settings.resolved_secret_key())
    token = signer.sign(
        TokenKind.UNSUBSCRIBE, workspace.workspace_id, people["bob@corp.example"], 0, 1
    )
    anonymous = TestClient(client.app)
    saved = anonymous.post(f"/u/{token}", data={"action": "preferences", "all": "1"})
    assert saved.status_code == 200
    with db.tenant(workspace.workspace_id) as s:
        bob = s.get(Contact, people["bob@corp.example"])
        assert bob is not None and bob.status == "unsubscribed"


def test_forged_or_mangled_tokens_are_not_found(client: TestClient, settings: Settings) -> None:
    from postwise.tracking.tokens import TokenKind, TokenSigner

    anonymous = TestClient(client.app)
    click = TokenSigner(settings.resolved_secret_key()).sign(TokenKind.CLICK, 1, 1)
    for token in ("aaaaaaaaaaaaaaaa", click):
        assert anonymous.post(f"/u/{token}").status_code == 404
        assert anonymous.get(f"/u/{token}").status_code == 404


def test_bad_send_requests(client: TestClient, people: dict[str, int]) -> None:
    assert client.post("/api/messages", json={"email": "ann@corp.example"}).status_code == 400
    assert (
        client.post(
            "/api/messages", json={"email": "nobody@corp.example", "template": INLINE}
        ).status_code
        == 404
    )
    both = {
        "email": "ann@corp.example",
        "contact_id": people["ann@corp.example"],
        "template": INLINE,
    }
    assert client.post("/api/messages", json=both).status_code == 400
    assert client.get("/api/messages/999999").status_code == 404


def test_stored_template_signed_with_the_workspace_dkim_key_verifies(
    client: TestClient,
    db: Database,
    people: dict[str, int],
    workspace: NewWorkspace,
    settings: Settings,
) -> None:
    """The whole path: stored template → builder → DKIM (the workspace's generated key)
    → capture; dkimpy verifies the captured bytes against the published TXT record."""
    import dkim as dkimpy  # type: ignore[import-untyped]

    from postwise.messages import keys, store

    with db.tenant(workspace.workspace_id) as s:
        template = store.create_template(
            s,
            store.TemplateInput(
                name="welcome",
                subject="Welcome {{ contact.first_name }}",
                html="<p>Hi</p>",
                kind="transactional",
            ),
        )
        _, txt = keys.generate_dkim_key(
            s, settings.resolved_secret_key(), domain="acme.example", selector="s1"
        )
    answer = client.post(
        "/api/messages", json={"contact_id": people["ann@corp.example"], "template_id": template.id}
    )
    assert answer.status_code == 202, answer.text
    deliver(db)
    [captured] = client.get("/api/outbox/captured").json()
    raw = client.get(f"/api/outbox/captured/{captured['name']}").content
    assert raw.startswith(b"DKIM-Signature:")
    record = "".join(txt).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"s1._domainkey.acme.example." else None

    assert dkimpy.DKIM(raw).verify(dnsfunc=dns)
    assert b"Subject: Welcome Ann" in raw
    unknown = client.post("/api/messages", json={"email": "ann@corp.example", "template_id": 99999})
    assert unknown.status_code == 404
