"""The seeds' list hygiene KPIs per segment and per list, over the API and the CLI.

Half of the campaign went out through a segment, half through a list; the standard events
put both bounces on the segment side and the unsubscribe and the complaint on the list
side, so every rate below is known by hand."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from postwise.analytics import report, rollup
from postwise.api.app import create_app
from postwise.cli.main import app
from postwise.contacts.lists import create_list
from postwise.core.errors import ValidationFailed
from postwise.core.settings import Settings
from postwise.segments import store as segments
from postwise.storage.database import Database
from postwise.storage.tables import CampaignRecipient

from .conftest import T0, World, standard_events


@dataclass
class Sources:
    world: World
    segment_id: int
    list_id: int


@pytest.fixture
def sources(db: Database, world: World) -> Sources:
    c = world.contacts
    with db.tenant(world.ws) as s:
        seg = segments.create_segment(
            s,
            segments.SegmentInput(
                "Buyers", {"field": "contact.country", "op": "eq", "value": "DE"}
            ),
            refresh=False,
        )
        newsletter = create_list(s, {"name": "Newsletter"})
        s.execute(
            update(CampaignRecipient)
            .where(CampaignRecipient.contact_id.in_(c[:4]))
            .values(source_kind="segment", source_id=seg.id)
        )
        s.execute(
            update(CampaignRecipient)
            .where(CampaignRecipient.contact_id.in_(c[4:]))
            .values(source_kind="list", source_id=newsletter.id)
        )
        s.add_all(standard_events(world))
        ids = (seg.id, newsletter.id)
    with db.tenant(world.ws) as s:
        rollup.roll_up(s, now=T0 + timedelta(days=1))
    return Sources(world, *ids)


def test_rates_per_segment_and_per_list(db: Database, sources: Sources) -> None:
    with db.tenant(sources.world.ws) as s:
        (seg,) = report.hygiene(s, "segment")
        (lst,) = report.hygiene(s, "list")
        assert report.list_report(s, sources.list_id)["kpis"]["complaint_rate"] == 0.25
        with pytest.raises(ValidationFailed):
            report.hygiene(s, "domain")
    assert (seg["id"], seg["name"], seg["sent"], seg["bounced"]) == (
        sources.segment_id,
        "Buyers",
        4,
        2,
    )
    assert (seg["bounce_rate"], seg["unsubscribe_rate"], seg["complaint_rate"]) == (0.5, 0, 0)
    assert (lst["id"], lst["name"], lst["unsubscribes"], lst["complaints"]) == (
        sources.list_id,
        "Newsletter",
        1,
        1,
    )
    assert (lst["bounce_rate"], lst["unsubscribe_rate"], lst["complaint_rate"]) == (0, 0.25, 0.25)
    assert seg["conversion_rate"] == lst["conversion_rate"] == 0


def test_api_routes(db: Database, sources: Sources, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="analytics-test-secret")
    ours = {"Authorization": f"Bearer {sources.world.api_key}"}
    theirs = {"Authorization": f"Bearer {sources.world.other_api_key}"}
    with TestClient(create_app(settings, db)) as client:
        r = client.get("/api/analytics/hygiene?kind=list", headers=ours)
        assert r.status_code == 200, r.text
        assert [row["unsubscribe_rate"] for row in r.json()["data"]] == [0.25]
        r = client.get("/api/analytics/hygiene", headers=ours)
        assert [row["bounce_rate"] for row in r.json()["data"]] == [0.5]
        assert client.get("/api/analytics/hygiene", headers=theirs).json()["data"] == []
        r = client.get(f"/api/analytics/lists/{sources.list_id}", headers=ours)
        assert r.json()["totals"]["complaints"] == 1
        assert (
            client.get(f"/api/analytics/lists/{sources.list_id}", headers=theirs).status_code == 404
        )
        r = client.get(f"/api/analytics/segments/{sources.segment_id}", headers=ours)
        assert r.json()["kpis"]["bounce_rate"] == 0.5
        assert client.get("/api/analytics/hygiene?kind=x", headers=ours).status_code in (400, 422)


def test_cli_commands(cli_runner: CliRunner, sources: Sources) -> None:
    w = ["-w", str(sources.world.ws)]
    out = cli_runner.invoke(app, ["report", "hygiene", "--by", "list", *w])
    assert out.exit_code == 0, out.output
    assert "Newsletter" in out.output and "25.00%" in out.output
    out = cli_runner.invoke(app, ["report", "hygiene", *w, "--json"])
    assert json.loads(out.output)["data"][0]["bounce_rate"] == 0.5
    out = cli_runner.invoke(app, ["report", "segment", str(sources.segment_id), *w])
    assert out.exit_code == 0, out.output
    assert "Buyers" in out.output and "50.00%" in out.output and "engagement" in out.output
    out = cli_runner.invoke(app, ["report", "list", str(sources.list_id), *w, "--json"])
    assert json.loads(out.output)["kpis"]["unsubscribe_rate"] == 0.25
    bad = cli_runner.invoke(app, ["report", "hygiene", "--by", "domain", *w])
    assert bad.exit_code == 2 and "kind must be" in bad.output
    missing = cli_runner.invoke(app, ["report", "list", "999999", *w])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_a_list_send_outside_campaigns_counts_for_its_list(db: Database, world: World) -> None:
    """Mail sent to a list without a campaign has no snapshot row: the rollup finds the
    list on the outbox row, so its bounce and complaint count for the list."""
    from postwise.storage.tables import Event, OutboxMessage

    c = world.contacts
    with db.tenant(world.ws) as s:
        news = create_list(s, {"name": "Product news"})
        rows = [
            OutboxMessage(
                contact_id=cid,
                email=f"x{cid}@alpha.example",
                kind="marketing",
                list_id=news.id,
                status="sent",
            )
            for cid in c[:4]
        ]
        s.add_all(rows)
        s.flush()

        def event(row: OutboxMessage, name: str, **props: object) -> Event:
            return Event(
                contact_id=row.contact_id,
                type="email",
                name=name,
                properties={"outbox_id": row.id, "campaign_key": None, **props},
                context={},
                occurred_at=T0,
                received_at=T0,
            )

        s.add_all([event(r, "Email Sent") for r in rows])
        s.add(event(rows[0], "Email Bounced", hard=True, reason="user_unknown"))
        s.add(event(rows[1], "Email Complained"))
        s.add(event(rows[2], "Email Delivered"))
    with db.tenant(world.ws) as s:
        rollup.roll_up(s, now=T0 + timedelta(days=1))
        (row,) = report.hygiene(s, "list")
        assert (row["id"], row["name"], row["sent"], row["bounced"], row["complaints"]) == (
            news.id,
            "Product news",
            4,
            1,
            1,
        )
        assert row["bounce_rate"] == 0.25 and row["complaint_rate"] == 1.0  # 1 of 1 delivered
        assert report.breakdown(s, "", "list")[0].counters["sent"] == 4
