"""Attributed conversions and revenue reach the rollups once each: per campaign, variant,
domain and segment, with conversion rate and revenue per recipient; a crash after the
counters were written is redone without double counting; unsettled ids wait."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest
from sqlalchemy import select

from postwise.analytics import jobs, report, rollup
from postwise.storage.database import Database
from postwise.storage.tables import AnalyticsWatermark, CampaignAttribution

from .conftest import T0, World, email_event, standard_events

NOW = T0 + timedelta(days=1)
LATER = T0 + timedelta(hours=3)
GOAL_EVENT_IDS = count(9000)  # one conversion per goal event (unique in the table)


def _attribution(world: World, i: int, revenue: float | None, **kw: object) -> CampaignAttribution:
    cid = world.contacts[i]
    return CampaignAttribution(
        campaign_id=world.campaign_id,
        campaign_key="launch",
        contact_id=cid,
        event_id=next(GOAL_EVENT_IDS),
        goal_event="Order Completed",
        touch="click",
        touch_event_id=1,
        touch_at=T0 + timedelta(hours=1),
        converted_at=kw.get("converted_at", LATER),  # type: ignore[arg-type]
        variant="A" if i < 4 else "B",
        revenue=revenue,
        created_at=kw.get("created_at", LATER),  # type: ignore[arg-type]
    )


def _seed(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
        # p0 buys twice (50 + no revenue), p4 (variant B, alpha.example) buys for 25.5
        s.add_all([_attribution(world, 0, 50.0), _attribution(world, 0, None)])
        s.add(_attribution(world, 4, 25.5))


def _report(db: Database, world: World) -> report.CampaignReport:
    with db.tenant(world.ws) as s:
        return report.campaign_report(s, world.campaign_id)


def _by_id(rows: list[report.Row]) -> dict[str, report.Row]:
    return {r.id: r for r in rows}


def test_conversions_and_revenue_show_per_campaign_variant_domain_and_segment(
    db: Database, world: World
) -> None:
    _seed(db, world)
    with db.tenant(world.ws) as s:
        rollup.roll_up(s, now=NOW)
        assert rollup.fold_attributions(s, now=NOW) == 3
        assert rollup.fold_attributions(s, now=NOW) == 0  # nothing twice
    r = _report(db, world)
    assert r.totals["conversions"] == 3
    assert r.totals["revenue"] == pytest.approx(75.5)
    assert r.kpis["conversion_rate"] == pytest.approx(3 / 8)
    assert r.kpis["revenue_per_recipient"] == pytest.approx(75.5 / 8)
    variants = _by_id(r.breakdowns["variant"])
    assert (variants["A"].counters["conversions"], variants["A"].counters["revenue"]) == (2, 50.0)
    assert (variants["B"].counters["conversions"], variants["B"].counters["revenue"]) == (1, 25.5)
    assert variants["B"].kpis["conversion_rate"] == pytest.approx(1 / 4)
    domains = _by_id(r.breakdowns["domain"])  # p0 and p4 are both alpha.example
    assert domains["alpha.example"].counters["conversions"] == 3
    assert domains["beta.example"].counters["conversions"] == 0
    assert _by_id(r.breakdowns["segment"])["7"].counters["revenue"] == pytest.approx(75.5)
    with db.tenant(world.ws) as s:
        csv = report.to_csv(report.breakdown(s, "launch", "variant"))
    header = csv.splitlines()[0].split(",")
    assert "conversions" in header and "revenue_per_recipient" in header


def test_a_crash_after_the_counters_is_redone_not_double_counted(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db, world)
    real_upsert = rollup._upsert

    def upsert_then_die(*args: object, **kwargs: object) -> None:
        real_upsert(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("killed mid-fold")

    monkeypatch.setattr(rollup, "_upsert", upsert_then_die)
    with pytest.raises(RuntimeError), db.tenant(world.ws) as s:
        rollup.fold_attributions(s, now=NOW)
    monkeypatch.setattr(rollup, "_upsert", real_upsert)
    with db.tenant(world.ws) as s:
        mark = s.scalars(select(AnalyticsWatermark)).one_or_none()
        assert mark is None or mark.last_attribution_id == 0
        assert rollup.fold_attributions(s, now=NOW) == 3
    assert _report(db, world).totals["conversions"] == 3
    assert _report(db, world).totals["revenue"] == pytest.approx(75.5)


def test_an_unsettled_attribution_stops_the_fold_before_it(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        s.add(_attribution(world, 0, 10.0))
        s.add(_attribution(world, 1, 20.0, created_at=NOW - timedelta(seconds=2)))
        s.add(_attribution(world, 2, 30.0))
    with db.tenant(world.ws) as s:
        assert rollup.fold_attributions(s, now=NOW) == 1
    with db.tenant(world.ws) as s:
        assert rollup.fold_attributions(s, now=NOW + timedelta(seconds=30)) == 2
    assert _report(db, world).totals["revenue"] == pytest.approx(60.0)


def test_the_worker_job_folds_attributions_too(db: Database, world: World) -> None:
    from postwise.jobs.runner import Worker

    _seed(db, world)
    with db.tenant(world.ws) as s:
        s.add(email_event(world, world.contacts[0], "Email Sent"))
        jobs.schedule(s, seconds=0)
    Worker(db, worker_id="analytics-conversions-test").run_until_idle()
    assert _report(db, world).totals["conversions"] == 3
