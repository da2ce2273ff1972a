"""Issue 3's "done when": a contact's timeline (API) shows their web and email activity,
the email activity labelled human or machine, everything arriving through the real paths:
/v1 calls before and after signing up, a message built and sent by the deliverer, its
pixel fetched by Apple's relay and its link clicked by a person, on both backends."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.delivery import outbox
from postwise.delivery.deliverer import Deliverer
from postwise.delivery.transports.memory import MemoryTransport
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.tracking.tokens import TokenSigner
from postwise.workspaces.actions import NewWorkspace

from .conftest import basic
from .test_email_tracking import BROWSER, SECRET, age, tracked_composer

APPLE_RELAY = "172.225.96.161"
HOME = "81.2.69.142"


def test_the_timeline_shows_web_and_email_activity_with_machine_labels(
    db: Database, tmp_path: Path, acme: NewWorkspace
) -> None:
    settings = Settings(
        environment="test", data_dir=tmp_path, database_url=db.url, secret_key=SECRET
    )
    app = create_app(settings, db)
    admin = {"Authorization": f"Bearer {acme.api_key}"}
    day = datetime.now(UTC) - timedelta(days=1)

    def at(minutes: int) -> str:
        return (day + timedelta(minutes=minutes)).isoformat()

    with TestClient(app, client=(HOME, 40000)) as web:
        visit = [  # an anonymous visitor reads two pages, then signs up
            {"type": "page", "anonymousId": "v-1", "name": "Pricing", "timestamp": at(0)},
            {"type": "track", "anonymousId": "v-1", "event": "Trial Started", "timestamp": at(5)},
            {"type": "identify", "anonymousId": "v-1", "userId": "u-ann", "timestamp": at(6),
             "traits": {"email": "ann@corp.example", "firstName": "Ann"}},
        ]  # fmt: skip
        assert web.post(
            "/v1/batch", json={"batch": visit}, headers=basic(acme.write_key)
        ).json() == {"success": True}
        [found] = web.get("/api/contacts", headers=admin).json()["data"]
        contact_id = found["id"]

    with db.tenant(acme.workspace_id) as s:  # a message through the outbox and the deliverer
        [outbox_id] = outbox.enqueue(
            s,
            [outbox.NewMessage(email="ann@corp.example", contact_id=contact_id, kind="marketing")],
        )
    transport = MemoryTransport()
    asyncio.run(
        Deliverer(
            db,
            transport,  # type: ignore[arg-type]
            hasher=AddressHasher.from_secret(b"timeline"),
            worker_id="w",
            composer=tracked_composer(TokenSigner(SECRET.encode())),
        ).run()
    )
    age(db, acme, outbox_id, 3600)
    text = transport.sent[0].data.decode().replace("=\r\n", "").replace("=3D", "=")
    [pixel] = re.findall(r"https://t\.send\.example(/o/[0-9a-f]+)", text)
    click = re.findall(r"https://t\.send\.example(/c/[0-9a-f]+)", text)[0]

    with TestClient(app, client=(APPLE_RELAY, 40000)) as relay:
        assert relay.get(pixel, headers={"User-Agent": BROWSER}).status_code == 200
    with TestClient(app, client=(HOME, 40001), follow_redirects=False) as person:
        assert person.get(click, headers={"User-Agent": BROWSER}).status_code == 302
        timeline = person.get(f"/api/contacts/{contact_id}/timeline", headers=admin).json()

    events = [
        (e["type"], e["name"], e["actor"], e["actor_reason"])
        for e in timeline["data"]
        if e["kind"] == "event"
    ]
    assert events == [  # newest first
        ("email", "Email Clicked", "human", None),
        ("email", "Email Opened", "machine", "apple_mpp_ip"),
        ("email", "Email Sent", None, None),
        ("identify", "Identify", None, None),
        ("track", "Trial Started", None, None),  # the anonymous visit, merged on identify
        ("page", "Page Viewed", None, None),
    ]
    changes = {e["change"] for e in timeline["data"] if e["kind"] == "change"}
    assert {"created", "identity_merged"} <= changes
