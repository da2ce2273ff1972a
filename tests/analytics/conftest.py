"""A workspace with one campaign snapshot (two variants, two domains) and a helper that
writes email events the way the delivery pipeline and the tracker do."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from postwise.contacts.actions import upsert_contacts
from postwise.core import clock
from postwise.core.settings import get_settings
from postwise.storage.database import Database
from postwise.storage.tables import Campaign, CampaignRecipient, Event
from postwise.workspaces.actions import create_workspace

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=clock.utcnow().tzinfo)


@dataclass
class World:
    ws: int
    other_ws: int
    campaign_id: int
    contacts: list[int] = field(default_factory=list)
    outbox: dict[int, int] = field(default_factory=dict)  # contact -> outbox id
    api_key: str = ""
    other_api_key: str = ""


def make_world(db: Database, n: int = 8) -> World:
    with db.system() as s:
        acme = create_workspace(s, "Acme")
        other = create_workspace(s, "Other")
    with db.tenant(acme.workspace_id) as s:
        rows = [
            {"email": f"p{i}@{'alpha.example' if i % 2 == 0 else 'beta.example'}"} for i in range(n)
        ]
        ids = [int(r.contact_id or 0) for r in upsert_contacts(s, rows, source="api")]
        campaign = Campaign(key="launch", name="Launch", status="sent", recipient_count=n)
        s.add(campaign)
        s.flush()
        outbox = {}
        for i, cid in enumerate(ids):
            outbox[cid] = 1000 + i
            s.add(
                CampaignRecipient(
                    campaign_id=campaign.id,
                    contact_id=cid,
                    email=str(rows[i]["email"]),
                    domain=str(rows[i]["email"]).split("@")[1],
                    source_kind="segment",
                    source_id=7,
                    phase="test",
                    variant="A" if i < n // 2 else "B",
                    outbox_id=1000 + i,
                )
            )
        return World(
            acme.workspace_id,
            other.workspace_id,
            campaign.id,
            ids,
            outbox,
            api_key=acme.api_key,
            other_api_key=other.api_key,
        )


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db)


def email_event(
    world: World,
    contact_id: int,
    name: str,
    *,
    at: datetime = T0,
    received_at: datetime | None = None,
    **props: Any,
) -> Event:
    return Event(
        contact_id=contact_id,
        type="email",
        name=name,
        properties={"outbox_id": world.outbox[contact_id], "campaign_key": "launch", **props},
        context={},
        occurred_at=at,
        received_at=received_at or at,
    )


def standard_events(world: World) -> list[Event]:
    """Every recipient sent+delivered; p0 opens twice (human) and clicks; p1's open is a
    proxy's; p2 hard-bounces... counts listed in EXPECTED."""
    c = world.contacts
    events = []
    for cid in c:
        events.append(email_event(world, cid, "Email Sent"))
        events.append(email_event(world, cid, "Email Delivered"))
    later = T0 + timedelta(hours=1, minutes=5)
    events += [
        email_event(world, c[0], "Email Opened", at=later, machine=False),
        email_event(world, c[0], "Email Opened", at=later + timedelta(hours=1), machine=False),
        email_event(world, c[0], "Email Clicked", at=later, machine=False),
        email_event(
            world, c[1], "Email Opened", at=later, machine=True, machine_reason="apple_mpp"
        ),
        email_event(world, c[1], "Email Clicked", at=later, machine=True, machine_reason="scanner"),
        email_event(world, c[2], "Email Bounced", at=later, hard=True, reason="user_unknown"),
        email_event(world, c[3], "Email Bounced", at=later, hard=False, reason="filtered"),
        email_event(world, c[4], "Email Opened", at=later, machine=False),
        email_event(world, c[4], "Unsubscribed", at=later),
        email_event(world, c[5], "Email Complained", at=later),
    ]
    return events


EXPECTED = {
    "sent": 8,
    "delivered": 8,
    "opens_human": 3,
    "unique_opens_human": 2,
    "opens_machine": 1,
    "unique_opens_machine": 1,
    "clicks_human": 1,
    "unique_clicks_human": 1,
    "clicks_machine": 1,
    "unique_clicks_machine": 1,
    "bounced_hard": 1,
    "bounced_soft": 1,
    "filter_blocked": 1,
    "unsubscribes": 1,
    "complaints": 1,
}


@pytest.fixture
def cli_runner(
    db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[CliRunner]:
    monkeypatch.setenv("POSTWISE_DATABASE_URL", db.url)
    monkeypatch.setenv("POSTWISE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSTWISE_SECRET_KEY", "analytics-test-secret")
    get_settings.cache_clear()
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield CliRunner()
    finally:
        get_settings.cache_clear()
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
