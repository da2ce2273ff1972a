"""/o/{token} and /c/{token} on both backends: a message built by the real pipeline and
sent by the deliverer (memory transport), its pixel and links fetched through the app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from postwise.api.app import create_app
from postwise.contacts import actions
from postwise.core import clock
from postwise.core.settings import Settings
from postwise.delivery import outbox
from postwise.delivery.compose import Built
from postwise.delivery.deliverer import Deliverer
from postwise.delivery.outbox import Claimed
from postwise.delivery.transports.memory import MemoryTransport
from postwise.messages.pipeline import Delivery, MessageBuilder, Recipient, Sender
from postwise.messages.templates import TemplateSource, compile_template
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage
from postwise.tracking import machines
from postwise.tracking.tokens import TokenKind, TokenSigner
from postwise.workspaces.actions import NewWorkspace

SECRET = "email-tracking-test-secret"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
HTML = (
    "<html><body><p>Hi</p><a href='https://shop.example/a'>A</a>"
    "<a href='https://shop.example/b?x=1'>B</a><a href='mailto:x@y.example'>mail</a></body></html>"
)
SENDER = Sender(
    from_address="news@send.example",
    sending_domain="send.example",
    bounce_domain="bounce.send.example",
    base_url="https://t.send.example",
    postal_address="1 Main St, Springfield",
)


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET.encode())


@pytest.fixture
def app_client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        environment="test", data_dir=tmp_path, database_url=db.url, secret_key=SECRET
    )
    with TestClient(create_app(settings, db), follow_redirects=False) as c:
        yield c


def tracked_composer(signer: TokenSigner) -> Any:
    """The real pipeline for a contact who consented to tracking, opens on."""
    builder = MessageBuilder(signer)
    template = compile_template(TemplateSource(subject="Hello", html=HTML, text="Hi"))

    def compose(_session: Session, row: Claimed) -> Built:
        built = builder.build(
            template,
            Recipient(email=row.email, contact_id=row.contact_id, tracking_consent=True),
            SENDER,
            Delivery(message_id=row.id, workspace_id=row.workspace_id, track_opens=True),
        )
        return Built(built.mail_from, built.rcpt, built.data, built.message_id, tuple(built.links))

    return compose


def send(db: Database, signer: TokenSigner, ws: NewWorkspace, email: str) -> tuple[int, int, str]:
    """(outbox id, contact id, the sent message text) after a real delivery run."""
    with db.tenant(ws.workspace_id) as s:
        contact_id = actions.create_contact(s, {"email": email}, source="api").id
        [outbox_id] = outbox.enqueue(
            s,
            [
                outbox.NewMessage(
                    email=email, contact_id=contact_id, campaign_key="spring", kind="transactional"
                )
            ],
        )
    transport = MemoryTransport()
    deliverer = Deliverer(
        db,
        transport,  # type: ignore[arg-type]
        hasher=AddressHasher.from_secret(b"email tracking tests"),
        worker_id="w",
        composer=tracked_composer(signer),
    )
    asyncio.run(deliverer.run())
    [envelope] = transport.sent
    text = envelope.data.decode().replace("=\r\n", "").replace("=3D", "=")
    return outbox_id, contact_id, text


def age(db: Database, ws: NewWorkspace, outbox_id: int, seconds: float) -> None:
    """Pretend the message was sent ``seconds`` ago."""
    with db.tenant(ws.workspace_id) as s:
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id)
            .values(sent_at=clock.utcnow() - timedelta(seconds=seconds))
        )


def email_events(db: Database, ws: NewWorkspace) -> list[Event]:
    with db.tenant(ws.workspace_id) as s:
        return list(s.scalars(select(Event).where(Event.type == "email").order_by(Event.id)))


def tracked(db: Database, ws: NewWorkspace) -> list[Event]:
    return [e for e in email_events(db, ws) if e.name in ("Email Opened", "Email Clicked")]


@pytest.fixture
def sent(db: Database, signer: TokenSigner, acme: NewWorkspace) -> tuple[int, int, str]:
    outbox_id, contact_id, text = send(db, signer, acme, "ann@corp.example")
    age(db, acme, outbox_id, 3600)
    return outbox_id, contact_id, text


def test_the_deliverer_stores_the_link_list_of_the_message(
    db: Database, acme: NewWorkspace, sent: tuple[int, int, str]
) -> None:
    outbox_id, _, text = sent
    with db.tenant(acme.workspace_id) as s:
        row = s.get(OutboxMessage, outbox_id)
        assert row is not None and row.status == "sent"
        assert row.links == ["https://shop.example/a", "https://shop.example/b?x=1"]
    assert re.search(r"https://t\.send\.example/o/[0-9a-f]+", text)
    assert len(set(re.findall(r"https://t\.send\.example/c/([0-9a-f]+)", text))) == 2


def test_open_from_a_browser_is_a_human_open_of_the_contact(
    db: Database, app_client: TestClient, acme: NewWorkspace, sent: tuple[int, int, str]
) -> None:
    outbox_id, contact_id, text = sent
    [pixel] = re.findall(r"https://t\.send\.example(/o/[0-9a-f]+)", text)
    r = app_client.get(pixel, headers={"User-Agent": BROWSER})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/gif"
    assert len(r.content) == 43 and r.content.startswith(b"GIF89a")
    assert "no-store" in r.headers["cache-control"]
    [event] = tracked(db, acme)
    assert event.name == "Email Opened" and event.type == "email"
    assert event.contact_id == contact_id
    assert event.properties == {
        "outbox_id": outbox_id,
        "campaign_key": "spring",
        "machine": False,
        "machine_reason": None,
    }
    assert event.context["userAgent"] == BROWSER and event.context["ip"]


def test_head_and_image_proxies_are_machine_opens_with_their_reason(
    db: Database, app_client: TestClient, acme: NewWorkspace, sent: tuple[int, int, str]
) -> None:
    [pixel] = re.findall(r"https://t\.send\.example(/o/[0-9a-f]+)", sent[2])
    assert app_client.head(pixel, headers={"User-Agent": BROWSER}).status_code == 200
    proxy = (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    )
    assert app_client.get(pixel, headers={"User-Agent": proxy}).status_code == 200
    assert app_client.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
    labels = [(e.properties["machine"], e.properties["machine_reason"]) for e in tracked(db, acme)]
    assert labels == [(True, "head_request"), (True, "google_image_proxy"), (True, "apple_mpp")]


def test_click_redirects_to_the_link_and_records_it(
    db: Database, app_client: TestClient, acme: NewWorkspace, sent: tuple[int, int, str]
) -> None:
    outbox_id, contact_id, text = sent
    second = re.findall(r"https://t\.send\.example(/c/[0-9a-f]+)", text)[1]
    r = app_client.get(second, headers={"User-Agent": BROWSER})
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example/b?x=1"
    [event] = tracked(db, acme)
    assert event.name == "Email Clicked" and event.contact_id == contact_id
    assert event.properties["url"] == "https://shop.example/b?x=1"
    assert event.properties["link_index"] == 1
    assert event.properties["outbox_id"] == outbox_id
    assert (event.properties["machine"], event.properties["machine_reason"]) == (False, None)


def test_a_click_seconds_after_sending_and_a_scanner_are_machines(
    db: Database,
    app_client: TestClient,
    signer: TokenSigner,
    acme: NewWorkspace,
) -> None:
    outbox_id, _, _ = send(db, signer, acme, "bob@corp.example")
    fresh = f"/c/{signer.sign(TokenKind.CLICK, outbox_id, 0)}"
    assert app_client.get(fresh, headers={"User-Agent": BROWSER}).status_code == 302
    age(db, acme, outbox_id, 3600)
    scanner = "Mozilla/5.0 (compatible; Barracuda Sentinel)"
    assert app_client.get(fresh, headers={"User-Agent": scanner}).status_code == 302
    labels = [e.properties["machine_reason"] for e in tracked(db, acme)]
    assert labels == ["click_right_after_send", "scanner_barracuda"]


def test_every_link_clicked_at_once_is_a_machine(
    db: Database, app_client: TestClient, signer: TokenSigner, acme: NewWorkspace
) -> None:
    template = compile_template(
        TemplateSource(
            subject="x",
            html="".join(f"<a href='https://shop.example/{i}'>{i}</a>" for i in range(4)),
        )
    )
    builder = MessageBuilder(signer)

    def compose(_s: Session, row: Claimed) -> Built:
        b = builder.build(
            template,
            Recipient(email=row.email, contact_id=row.contact_id, tracking_consent=True),
            SENDER,
            Delivery(message_id=row.id, workspace_id=row.workspace_id, kind="transactional"),
        )
        return Built(b.mail_from, b.rcpt, b.data, b.message_id, tuple(b.links))

    with db.tenant(acme.workspace_id) as s:
        cid = actions.create_contact(s, {"email": "cy@corp.example"}, source="api").id
        [oid] = outbox.enqueue(s, [outbox.NewMessage(email="cy@corp.example", contact_id=cid)])
    asyncio.run(
        Deliverer(
            db,
            MemoryTransport(),  # type: ignore[arg-type]
            hasher=AddressHasher.from_secret(b"x"),
            worker_id="w",
            composer=compose,
        ).run()
    )
    age(db, acme, oid, 3600)
    for i in range(4):
        token = signer.sign(TokenKind.CLICK, oid, i)
        assert app_client.get(f"/c/{token}", headers={"User-Agent": BROWSER}).status_code == 302
    reasons = [e.properties["machine_reason"] for e in tracked(db, acme)]
    assert reasons[:2] == [None, None]
    assert reasons[2:] == ["many_links_at_once"] * 2


def test_tampered_unknown_and_out_of_range_tokens_are_404_without_redirect(
    db: Database,
    app_client: TestClient,
    signer: TokenSigner,
    acme: NewWorkspace,
    sent: tuple[int, int, str],
) -> None:
    outbox_id, _, text = sent
    first = re.findall(r"https://t\.send\.example/c/([0-9a-f]+)", text)[0]
    tampered = first[:-1] + ("0" if first[-1] != "0" else "1")
    [pixel] = re.findall(r"https://t\.send\.example/o/([0-9a-f]+)", text)
    for path in (
        f"/c/{tampered}",
        f"/c/{first[:-2]}",
        f"/c/{signer.sign(TokenKind.CLICK, outbox_id, 2)}",  # the message has two links
        f"/c/{signer.sign(TokenKind.CLICK, outbox_id + 999, 0)}",  # no such message
        f"/c/{signer.sign(TokenKind.OPEN, outbox_id)}",  # an open token is no click token
        f"/c/{TokenSigner(b'another secret').sign(TokenKind.CLICK, outbox_id, 0)}",
        f"/o/{pixel[:-1] + ('0' if pixel[-1] != '0' else '1')}",
        f"/o/{signer.sign(TokenKind.CLICK, outbox_id, 0)}",
        "/c/not-a-token-at-all",
    ):
        r = app_client.get(path, headers={"User-Agent": BROWSER})
        assert r.status_code == 404, path
        assert "location" not in r.headers, path
    assert tracked(db, acme) == []


def test_the_event_lands_in_the_workspace_of_the_message(
    db: Database,
    app_client: TestClient,
    signer: TokenSigner,
    acme: NewWorkspace,
    zebra: NewWorkspace,
) -> None:
    a_id, a_contact, _ = send(db, signer, acme, "ann@corp.example")
    z_id, z_contact, _ = send(db, signer, zebra, "zed@zebra.example")
    age(db, acme, a_id, 3600)
    age(db, zebra, z_id, 3600)
    r = app_client.get(
        f"/c/{signer.sign(TokenKind.CLICK, z_id, 1)}", headers={"User-Agent": BROWSER}
    )
    assert r.headers["location"] == "https://shop.example/b?x=1"
    app_client.get(f"/o/{signer.sign(TokenKind.OPEN, a_id)}", headers={"User-Agent": BROWSER})
    [z_event] = tracked(db, zebra)
    assert (z_event.name, z_event.contact_id, z_event.properties["outbox_id"]) == (
        "Email Clicked",
        z_contact,
        z_id,
    )
    [a_event] = tracked(db, acme)
    assert (a_event.name, a_event.contact_id) == ("Email Opened", a_contact)


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("Mozilla/5.0", "apple_mpp"),
        (
            "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
            "yahoo_mail_proxy",
        ),
        ("Mozilla/5.0 (compatible; Mimecast URL protect)", "scanner_mimecast"),
        ("curl/8.5.0", "http_library"),
        ("python-requests/2.32.3", "http_library"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 Safari/537.36", "headless_browser"),
        ("", "no_user_agent"),
        (BROWSER, None),
    ],
)
def test_user_agent_rules(agent: str, reason: str | None) -> None:
    facts = machines.Facts("GET", agent, seconds_since_sent=3600.0, is_click=True)
    assert machines.classify(facts) == (reason is not None, reason)


def test_timing_rules_apply_to_clicks_only() -> None:
    assert machines.classify(machines.Facts("GET", BROWSER, 2.0)) == (False, None)
    assert machines.classify(machines.Facts("GET", BROWSER, 2.0, is_click=True)) == (
        True,
        "click_right_after_send",
    )
    late = machines.Facts("GET", BROWSER, 3600.0, recent_distinct_links=2, is_click=True)
    assert machines.classify(late) == (False, None)
