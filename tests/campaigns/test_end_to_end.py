"""A campaign to a segment, end to end on both backends: outbox, the capture transport,
then the recipients' opens and clicks through the real /o/ and /c/ endpoints (tokens
taken from the captured mail), a purchase through /v1/track, and the attribution job.
An Apple Mail Privacy Protection open is a machine's: it neither counts for the A/B
open rate nor earns the campaign a conversion."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from email import policy
from email.parser import BytesParser

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from postwise.analytics import rollup
from postwise.api.app import create_app
from postwise.campaigns import attribution, lifecycle, results, store
from postwise.cli.main import app
from postwise.core import clock
from postwise.core.settings import Settings
from postwise.delivery.transports.maildir import list_captured, read_captured
from postwise.storage.database import Database
from postwise.storage.tables import CampaignAttribution, OutboxMessage

from .conftest import World, base_campaign, drain

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Safari/605.1.15"
)
APPLE_MPP = "Mozilla/5.0"


def _html(raw: bytes) -> str:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def test_segment_campaign_to_capture_opens_clicks_and_a_purchase_attributed(
    db: Database, world: World, settings: Settings
) -> None:
    with db.tenant(world.ws) as s:
        c = store.create_campaign(
            s,
            base_campaign(
                world,
                audience={"segment_ids": [world.segment_id]},
                goal_event="Order Completed",
                revenue_property="revenue",
                attribution_window_hours=48,
                ab={"test_share": 1.0, "metric": "open_rate", "duration_hours": 1},
                variants=[
                    {"key": "A"},
                    {"key": "B", "subject": "A new thing, {{ contact.email }}"},
                ],
            ),
        )
        lifecycle.schedule(s, c.id)
        cid = c.id
    drain(db)
    captured = {m.outbox_id: m for m in list_captured(settings.resolved_capture_dir(), world.ws)}
    with db.tenant(world.ws) as s:
        rows = {r.email: r for r in s.scalars(select(OutboxMessage))}
        seniors = sorted(e for e in world.contacts if int(e[1:4]) % 2 == 0)
        assert sorted(rows) == seniors and set(captured) == {r.id for r in rows.values()}
        # Opens seconds after sending look like scanners: these people read an hour later.
        s.execute(update(OutboxMessage).values(sent_at=clock.utcnow() - timedelta(hours=1)))
    buyer, proxied = seniors[0], seniors[1]

    def links(email: str) -> tuple[str, str]:
        raw = read_captured(
            settings.resolved_capture_dir(), world.ws, captured[rows[email].id].name
        )
        html = _html(raw)
        [pixel] = re.findall(r"(/o/[0-9a-f]+)", html)
        return pixel, re.findall(r"(/c/[0-9a-f]+)", html)[0]

    with TestClient(create_app(settings, db), follow_redirects=False) as client:
        pixel, link = links(buyer)
        assert client.get(pixel, headers={"User-Agent": BROWSER}).status_code == 200
        r = client.get(link, headers={"User-Agent": BROWSER})
        assert r.status_code == 302 and r.headers["location"] == "https://shop.example/new"
        mpp_pixel, _ = links(proxied)
        assert client.get(mpp_pixel, headers={"User-Agent": APPLE_MPP}).status_code == 200
        key = base64.b64encode(f"{world.write_key}:".encode()).decode()
        for email, revenue in ((buyer, 120.5), (proxied, 80.0)):
            r = client.post(
                "/v1/track",
                json={
                    "userId": email,
                    "event": "Order Completed",
                    "properties": {"revenue": revenue},
                },
                headers={"Authorization": f"Basic {key}"},
            )
            assert r.status_code == 200, r.text
    with db.tenant(world.ws) as s:
        assert attribution.attribute(s) == 1
        assert attribution.attribute(s) == 0  # a second run credits nothing twice
        [credit] = s.scalars(select(CampaignAttribution)).all()
        assert credit.contact_id == world.contacts[buyer] and credit.campaign_id == cid
        assert (credit.touch, credit.revenue, credit.goal_event) == (
            "click",
            120.5,
            "Order Completed",
        )
        assert credit.variant in ("A", "B")
        assert attribution.summary(s, cid) == {"conversions": 1, "revenue": 120.5}
        arms = {a.key: a for a in results.arms(s, cid, "open_rate")}
        assert sum(a.recipients for a in arms.values()) == len(seniors)
        assert sum(a.successes for a in arms.values()) == 1  # the MPP open is not a human's
        conversions = {a.key: a for a in results.arms(s, cid, "revenue_per_recipient")}
        assert sum(a.revenue_sum for a in conversions.values()) == 120.5
        # Variant B's subject came from its own stored template, A's from the campaign's.
        variant_of = {r.contact_id: r.data.get("variant") for r in rows.values()}
        for email, row in rows.items():
            raw = read_captured(settings.resolved_capture_dir(), world.ws, captured[row.id].name)
            subject = str(BytesParser(policy=policy.default).parsebytes(raw)["Subject"])
            if variant_of[row.contact_id] == "B":
                assert subject == f"A new thing, {email}"
            else:
                assert subject.startswith("Hello ")
        assert set(variant_of.values()) == {"A", "B"}


def _dsn(recipient: str, original_message_id: str) -> bytes:
    """An RFC 3464 report the way Postfix writes one, quoting the original Message-ID."""
    return (
        "From: MAILER-DAEMON@mx.corp0.example (Mail Delivery System)\r\n"
        "To: news@send.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-e2e@mx.corp0.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"<{recipient}>: host mx.corp0.example said: 550 5.1.1 no such user\r\n"
        "\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.corp0.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 The email account that you tried to reach does "
        "not exist\r\n"
        "\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@send.example\r\nTo: {recipient}\r\nSubject: Hello\r\n"
        f"Message-ID: {original_message_id}\r\n"
        "\r\n--b1--\r\n"
    ).encode()


def test_segment_campaign_report_shows_people_machines_and_a_real_bounce_apart(
    db: Database, world: World, settings: Settings, cli_runner: CliRunner
) -> None:
    """Captured mail; a person opens and clicks, Apple's proxy opens, a client without a
    user agent (a scanner) clicks, a DSN comes in through POST /api/bounces/raw, a
    purchase through /v1/track; after the rollup the report (API and CLI) shows human
    and machine opens and clicks in separate columns, the hard bounce and the revenue."""
    with db.tenant(world.ws) as s:
        c = store.create_campaign(
            s,
            base_campaign(
                world,
                audience={"segment_ids": [world.segment_id]},
                goal_event="Order Completed",
                revenue_property="revenue",
                attribution_window_hours=48,
            ),
        )
        lifecycle.schedule(s, c.id)
        cid = c.id
    drain(db)
    captured = {m.outbox_id: m for m in list_captured(settings.resolved_capture_dir(), world.ws)}
    with db.tenant(world.ws) as s:
        rows = {r.email: r for r in s.scalars(select(OutboxMessage))}
        s.execute(update(OutboxMessage).values(sent_at=clock.utcnow() - timedelta(hours=1)))
    seniors = sorted(rows)
    reader, proxied, scanned, gone = seniors[:4]

    def message(email: str) -> tuple[str, str, str]:
        raw = read_captured(
            settings.resolved_capture_dir(), world.ws, captured[rows[email].id].name
        )
        html = _html(raw)
        msgid = str(BytesParser(policy=policy.default).parsebytes(raw)["Message-ID"])
        [pixel] = re.findall(r"(/o/[0-9a-f]+)", html)
        return pixel, re.findall(r"(/c/[0-9a-f]+)", html)[0], msgid

    with TestClient(create_app(settings, db), follow_redirects=False) as client:
        pixel, link, _ = message(reader)
        assert client.get(pixel, headers={"User-Agent": BROWSER}).status_code == 200
        assert client.get(link, headers={"User-Agent": BROWSER}).status_code == 302
        assert client.get(message(proxied)[0], headers={"User-Agent": APPLE_MPP}).status_code == 200
        assert client.get(message(scanned)[1], headers={"User-Agent": ""}).status_code == 302
        posted = client.post(
            "/api/bounces/raw",
            content=_dsn(gone, message(gone)[2]),
            headers={
                "content-type": "message/rfc822",
                "Authorization": f"Bearer {world.api_key}",
            },
        )
        assert posted.status_code == 200, posted.text
        assert posted.json()["outbox_id"] == rows[gone].id
        key = base64.b64encode(f"{world.write_key}:".encode()).decode()
        r = client.post(
            "/v1/track",
            json={"userId": reader, "event": "Order Completed", "properties": {"revenue": 99.5}},
            headers={"Authorization": f"Basic {key}"},
        )
        assert r.status_code == 200, r.text
        with db.tenant(world.ws) as s:
            assert attribution.attribute(s) == 1
        with db.tenant(world.ws) as s:
            rollup.roll_up(s, lag=timedelta(0))
            rollup.fold_attributions(s, lag=timedelta(0))
        got = client.get(
            f"/api/analytics/campaigns/{cid}", headers={"Authorization": f"Bearer {world.api_key}"}
        )
        assert got.status_code == 200, got.text
        totals = got.json()["totals"]
    expected = {
        "sent": len(seniors),
        "delivered": 0,  # the capture is a relay hop, not the recipient's server
        "bounced_hard": 1,
        "unique_opens_human": 1,
        "unique_opens_machine": 1,
        "unique_clicks_human": 1,
        "unique_clicks_machine": 1,
        "clicks_human": 1,
        "clicks_machine": 1,
        "conversions": 1,
        "revenue": 99.5,
    }
    assert {k: totals[k] for k in expected} == expected
    assert totals["opens_machine"] == 1
    out = cli_runner.invoke(app, ["report", "campaign", "launch", "-w", str(world.ws)])
    assert out.exit_code == 0, out.output
    lines = {line.split("│")[1].strip(): line for line in out.output.splitlines() if "│" in line}
    cells = {k: [c.strip() for c in v.split("│")[2:4]] for k, v in lines.items()}
    assert cells["unique opens"] == ["1", "1"]  # human, machine
    assert cells["unique clicks"] == ["1", "1"]
    assert cells["hard bounces"][0] == "1"
    assert (cells["sent"][0], cells["deferred"][0]) == (str(len(seniors)), "0")
    assert cells["revenue"][0] == "99.50"
