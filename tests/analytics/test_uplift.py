"""CLTV uplift on synthetic data whose answer is worked out by hand below: who counts as
reached, which comparison contacts and revenue fall inside their windows, the stratified
difference and its interval; then the stored row through the job, the API and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from postwise.analytics import jobs, uplift
from postwise.api.app import create_app
from postwise.cli.main import app
from postwise.core.errors import NotFound, ValidationFailed
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.storage.tables import Campaign, CampaignRecipient, Company, Contact, Event
from postwise.workspaces.actions import create_workspace

DAY = timedelta(days=1)
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)  # every window closed well before today
AS_OF = T0 + 100 * DAY
EARLY = T0 - 30 * DAY  # when most contacts were created


@dataclass
class Uplift:
    ws: int
    api_key: str
    other_api_key: str
    ids: dict[str, int]


def build(db: Database) -> Uplift:
    """Stratum A (11-50, Software): reached r1 (reach T0, 100 in window, 999 after it, 70
    of another event), r2 (reach T0+2d, 50 in window, 40 before reach); comparison c1 (20),
    c2 (a never-sent 'rest' row: not reached, 0), c4 (reached only through a list: 10),
    c3 created after the index date (left out, though it spent 500).
    Stratum B (201-500, Finance): reached r3 (reach T0+10d, 30); comparison c5 (10), c6 (0),
    c7 (7 before the index date: 0). Stratum C (1-10, Retail): r4 reached, nobody to
    compare with (unmatched). n0 has no company and nobody reached shares its stratum."""
    with db.system() as s:
        acme = create_workspace(s, "Uplift")
        other = create_workspace(s, "Other")
    ids: dict[str, int] = {}
    with db.tenant(acme.workspace_id) as s:
        companies = {
            "A": Company(domain="a.example", size_band="11-50", industry="Software"),
            "B": Company(domain="b.example", size_band="201-500", industry="Finance"),
            "C": Company(domain="c.example", size_band="1-10", industry="Retail"),
        }
        s.add_all(companies.values())
        s.flush()
        people = {
            "r1": ("A", EARLY),
            "r2": ("A", EARLY),
            "c1": ("A", EARLY),
            "c2": ("A", EARLY),
            "c3": ("A", T0 + DAY),
            "c4": ("A", EARLY),
            "r3": ("B", EARLY),
            "c5": ("B", EARLY),
            "c6": ("B", EARLY),
            "c7": ("B", EARLY),
            "r4": ("C", EARLY),
            "n0": (None, EARLY),
        }
        for name, (company, created) in people.items():
            domain = companies[company].domain if company else "free.example"
            contact = Contact(
                email=f"{name}@{domain}",
                email_domain=domain,
                company_id=companies[company].id if company else None,
                created_at=created,
            )
            s.add(contact)
            s.flush()
            ids[name] = contact.id
        first = Campaign(key="spring", name="Spring", status="sent", recipient_count=5)
        second = Campaign(key="summer", name="Summer", status="sent", recipient_count=2)
        s.add_all([first, second])
        s.flush()
        outbox = iter(range(5000, 6000))

        def recipient(
            campaign: Campaign, who: str, at: datetime, kind: str = "segment", sent: bool = True
        ) -> CampaignRecipient:
            return CampaignRecipient(
                campaign_id=campaign.id,
                contact_id=ids[who],
                email=f"{who}@x.example",
                domain="x.example",
                source_kind=kind,
                source_id=1,
                phase="all" if sent else "rest",
                outbox_id=next(outbox) if sent else None,
                scheduled_for=at if sent else None,
                created_at=T0 - DAY,
            )

        s.add_all(
            [
                recipient(first, "r1", T0),
                recipient(first, "r2", T0 + 2 * DAY),
                recipient(second, "r2", T0 + 20 * DAY),  # a later reach: the first one counts
                recipient(first, "r3", T0 + 10 * DAY),
                recipient(first, "r4", T0 + DAY),
                recipient(first, "c2", T0, sent=False),
                recipient(second, "c4", T0, kind="list"),
            ]
        )

        def order(who: str, at: datetime, revenue: object, name: str = "Order Completed") -> Event:
            return Event(
                contact_id=ids[who],
                type="track",
                name=name,
                properties={"revenue": revenue},
                context={},
                occurred_at=at,
                received_at=at,
            )

        s.add_all(
            [
                order("r1", T0 + DAY, 100),
                order("r1", T0 + 31 * DAY, 999),  # after the 30-day window
                order("r1", T0 + 2 * DAY, 70, name="Trial Started"),
                order("r2", T0 + DAY, 40),  # before r2's first reach
                order("r2", T0 + 3 * DAY, "50"),  # numeric text counts
                order("c1", T0 + 5 * DAY, 20),
                order("c3", T0 + 5 * DAY, 500),
                order("c4", T0 + 10 * DAY, 10),
                order("r3", T0 + 11 * DAY, 30),
                order("c5", T0 + 12 * DAY, 10),
                order("c6", T0 + 12 * DAY, "n/a"),  # not a number: 0
                order("c7", T0 + 5 * DAY, 7),  # before stratum B's index date
                order("r4", T0 + 2 * DAY, 80),
                order("n0", T0 + 2 * DAY, 60),
            ]
        )
    return Uplift(acme.workspace_id, acme.api_key, other.api_key, ids)


@pytest.fixture
def data(db: Database) -> Uplift:
    return build(db)


PARAMS = uplift.Params("Order Completed", "revenue", 30)


def expected() -> dict[str, object]:
    """By hand. A: reached 100, 50 (mean 75); comparison 20, 0, 10 (mean 10). B: reached
    30; comparison 10, 0, 0 (mean 10/3). Weights by reached: A 2/3, B 1/3."""
    wa, wb = 2 / 3, 1 / 3
    diff_a, diff_b = 75 - 10, 30 - 10 / 3
    up = wa * diff_a + wb * diff_b  # 52.222222
    var_a = 1250 / 2 + 100 / 3  # sample variances over n: reached (1250), comparison (100)
    var_b = 0 + (100 / 3) / 3  # one reached contact: no variance; comparison var 100/3
    se = math.sqrt(wa * wa * var_a + wb * wb * var_b)
    comparison = wa * 10 + wb * 10 / 3
    return {
        "reached": 3,
        "comparison": 6,
        "unmatched_reached": 1,
        "reached_revenue_per_contact": round(wa * 75 + wb * 30, 6),
        "comparison_revenue_per_contact": round(comparison, 6),
        "uplift": round(up, 6),
        "uplift_ci95": [round(up - 1.959964 * se, 6), round(up + 1.959964 * se, 6)],
        "relative_uplift": round(up / comparison, 6),
    }


def test_uplift_matches_the_hand_computation(db: Database, data: Uplift) -> None:
    with db.tenant(data.ws) as s:
        result = uplift.compute(s, PARAMS, as_of=AS_OF)
    assert {k: result[k] for k in expected()} == expected()
    assert result["uplift"] == 52.222222
    strata = {(r["size_band"], r["industry"]): r for r in result["strata"]}
    assert set(strata) == {("11-50", "Software"), ("201-500", "Finance")}
    a, b = strata["11-50", "Software"], strata["201-500", "Finance"]
    assert (a["reached"], a["comparison"], a["difference"]) == (2, 3, 65.0)
    assert a["index_date"] == T0.isoformat()  # lower median of T0 and T0+2d
    assert (b["reached"], b["comparison"], b["difference"]) == (1, 3, round(30 - 10 / 3, 6))
    assert b["index_date"] == (T0 + 10 * DAY).isoformat()


def test_windows_are_cut_at_as_of(db: Database, data: Uplift) -> None:
    """At T0+4d r3's send (scheduled for T0+10d) is still ahead, so stratum B has nobody
    reached, and only revenue before as_of counts: A's 100 + 50 against nothing yet (c1
    buys on day 5)."""
    with db.tenant(data.ws) as s:
        result = uplift.compute(s, PARAMS, as_of=T0 + 4 * DAY)
    assert [(r["size_band"], r["industry"]) for r in result["strata"]] == [("11-50", "Software")]
    a = result["strata"][0]
    assert (a["reached_revenue_per_contact"], a["comparison_revenue_per_contact"]) == (75.0, 0.0)
    assert (result["reached"], result["unmatched_reached"]) == (2, 1)


def test_no_segmented_reach_gives_no_estimate_and_bad_params_are_refused(
    db: Database,
) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Empty").workspace_id
    with db.tenant(ws) as s:
        result = uplift.compute(s, PARAMS, as_of=AS_OF)
        assert (result["reached"], result["uplift"], result["strata"]) == (0, None, [])
        with pytest.raises(ValidationFailed) as bad:
            uplift.compute(s, uplift.Params("Order Completed", "revenue", 0))
        assert bad.value.field == "window_days"
        with pytest.raises(NotFound):
            uplift.stored(s, PARAMS)


def test_the_job_stores_it_and_the_api_reads_it(db: Database, data: Uplift, tmp_path: Path) -> None:
    from postwise.jobs.runner import Worker

    settings = Settings(data_dir=tmp_path, secret_key="analytics-test-secret")
    ours = {"Authorization": f"Bearer {data.api_key}"}
    theirs = {"Authorization": f"Bearer {data.other_api_key}"}
    query = "event=Order%20Completed&revenue_property=revenue&window_days=30"
    with TestClient(create_app(settings, db)) as client:
        missing = client.get(f"/api/analytics/uplift?{query}", headers=ours)
        assert missing.status_code == 404
        assert "no uplift computed yet" in missing.json()["detail"]
        queued = client.post(f"/api/analytics/uplift?{query}", headers=ours)
        assert queued.status_code == 202, queued.text
        Worker(db, worker_id="uplift-test").run_until_idle()
        got = client.get(f"/api/analytics/uplift?{query}", headers=ours)
        assert got.status_code == 200, got.text
        body = got.json()
        # The job measures up to now: every window of the synthetic data has closed.
        assert {k: body[k] for k in expected()} == expected()
        assert body["computed_at"]
        assert client.get(f"/api/analytics/uplift?{query}", headers=theirs).status_code == 404
        bad = client.get("/api/analytics/uplift?window_days=0", headers=ours)
        assert bad.status_code in (400, 422)


def test_the_daily_sweep_refreshes_known_parameter_sets(db: Database, data: Uplift) -> None:
    from postwise.jobs.runner import Worker

    with db.tenant(data.ws) as s:
        uplift.refresh(s, PARAMS, as_of=T0 + 4 * DAY)  # an old, stored computation
        s.execute(Campaign.__table__.update().values(started_at=T0, goal_event="Order Completed"))
    period = timedelta(seconds=jobs.period_seconds())
    with db.system() as s:
        jobs.ensure_sweep_scheduled(s, now=datetime.now(UTC) - period)
    Worker(db, worker_id="uplift-daily").run_until_idle()
    with db.tenant(data.ws) as s:
        assert uplift.stored(s, PARAMS)["uplift"] == expected()["uplift"]
        default = uplift.stored(s, uplift.Params("Order Completed", "revenue", 90))
        assert default["reached"] == 3


def test_cli_refreshes_and_prints(cli_runner: CliRunner, data: Uplift) -> None:
    args = ["report", "uplift", "-w", str(data.ws), "--window-days", "30"]
    missing = cli_runner.invoke(app, args)
    assert missing.exit_code == 2 and "no uplift computed yet" in missing.output
    shown = cli_runner.invoke(app, [*args, "--refresh"])
    assert shown.exit_code == 0, shown.output
    assert "52.22" in shown.output and "Software" in shown.output
    as_json = cli_runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert {k: doc[k] for k in expected()} == expected()


def test_a_window_that_starts_before_its_stratum_median_is_read_whole(db: Database) -> None:
    """Reached on T0, T0+2d and T0+4d (index date T0+2d): the first one's purchase on
    T0+1d is inside its own window although it precedes every index date."""
    with db.system() as s:
        ws = create_workspace(s, "Early").workspace_id
    with db.tenant(ws) as s:
        firm = Company(domain="e.example", size_band="11-50", industry="Software")
        s.add(firm)
        s.flush()
        people = []
        for name in ("a", "b", "c", "control"):
            person = Contact(
                email=f"{name}@e.example",
                email_domain="e.example",
                company_id=firm.id,
                created_at=EARLY,
            )
            s.add(person)
            s.flush()
            people.append(person.id)
        campaign = Campaign(key="early", name="Early", status="sent", recipient_count=3)
        s.add(campaign)
        s.flush()
        for n, contact_id in enumerate(people[:3]):
            s.add(
                CampaignRecipient(
                    campaign_id=campaign.id,
                    contact_id=contact_id,
                    email=f"{n}@e.example",
                    domain="e.example",
                    source_kind="segment",
                    source_id=1,
                    outbox_id=9000 + n,
                    scheduled_for=T0 + 2 * n * DAY,
                )
            )
        s.add(
            Event(
                contact_id=people[0],
                type="track",
                name="Order Completed",
                properties={"revenue": 10},
                context={},
                occurred_at=T0 + DAY,
                received_at=T0 + DAY,
            )
        )
    with db.tenant(ws) as s:
        result = uplift.compute(s, PARAMS, as_of=AS_OF)
    assert result["strata"][0]["index_date"] == (T0 + 2 * DAY).isoformat()
    assert (result["reached"], result["comparison"]) == (3, 1)
    assert result["uplift"] == round(10 / 3, 6)
