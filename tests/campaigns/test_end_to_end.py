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

from postwise.api.app import create_app
from postwise.campaigns import attribution, lifecycle, results, store
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
