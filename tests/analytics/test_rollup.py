"""The rollup counts each event once: exact totals and uniques, human and machine apart,
a crash inside the transaction is redone without double counting, batches add up, and
the safe horizon never skips an id that becomes visible late."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from postwise.analytics import jobs, report, rollup
from postwise.storage.database import Database
from postwise.storage.tables import AnalyticsWatermark, Event, Job

from .conftest import EXPECTED, T0, World, email_event, standard_events

NOW = T0 + timedelta(days=1)


def _totals(db: Database, world: World) -> dict[str, float]:
    with db.tenant(world.ws) as s:
        return report.campaign_report(s, world.campaign_id).totals


def _check(totals: dict[str, float]) -> None:
    for name, value in EXPECTED.items():
        assert totals[name] == value, name


def test_rollup_counts_exactly_and_keeps_machine_apart(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    with db.tenant(world.ws) as s:
        result = rollup.roll_up(s, now=NOW)
        assert result.events == len(standard_events(world))
    _check(_totals(db, world))
    with db.tenant(world.ws) as s:
        again = rollup.roll_up(s, now=NOW)
        assert again.events == 0
        r = report.campaign_report(s, world.campaign_id)
        assert r.kpis["open_rate"] == pytest.approx(2 / 8)
        assert r.kpis["click_to_open"] == pytest.approx(1 / 2)
        variants = {row.id: row.counters for row in r.breakdowns["variant"]}
        assert variants["A"]["unique_opens_human"] == 1 and variants["B"]["unique_opens_human"] == 1
        domains = {row.id: row.counters["sent"] for row in r.breakdowns["domain"]}
        assert domains == {"alpha.example": 4, "beta.example": 4}
        hours = {p["at"]: p["opens_human"] for p in r.hourly}
        assert sum(hours.values()) == 3 and len(hours) == 3
    _check(_totals(db, world))


def test_a_crash_inside_the_transaction_is_redone_not_double_counted(
    db: Database, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    real_upsert = rollup._upsert

    def upsert_then_die(*args: object, **kwargs: object) -> None:
        real_upsert(*args, **kwargs)  # type: ignore[arg-type]
        raise RuntimeError("killed mid-rollup")

    monkeypatch.setattr(rollup, "_upsert", upsert_then_die)
    with pytest.raises(RuntimeError), db.tenant(world.ws) as s:
        rollup.roll_up(s, now=NOW)
    monkeypatch.setattr(rollup, "_upsert", real_upsert)
    with db.tenant(world.ws) as s:
        mark = s.scalars(select(AnalyticsWatermark)).one_or_none()
        assert mark is None or mark.last_event_id == 0
        assert rollup.roll_up(s, now=NOW).events == 26
    _check(_totals(db, world))


def test_small_batches_add_up_to_the_same_counts(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    runs = 0
    while True:
        with db.tenant(world.ws) as s:
            if rollup.roll_up(s, limit=3, now=NOW).events == 0:
                break
        runs += 1
    assert runs == 9
    _check(_totals(db, world))


def test_safe_horizon_stops_at_an_unsettled_id_and_counts_it_later(
    db: Database, world: World
) -> None:
    c = world.contacts
    with db.tenant(world.ws) as s:
        s.add(email_event(world, c[0], "Email Sent"))
        # Received just now: as a row committed late would be. The next id is older.
        s.add(email_event(world, c[1], "Email Sent", received_at=NOW - timedelta(seconds=2)))
        s.add(email_event(world, c[2], "Email Sent"))
    with db.tenant(world.ws) as s:
        assert rollup.roll_up(s, now=NOW).events == 1
    assert _totals(db, world)["sent"] == 1
    with db.tenant(world.ws) as s:
        assert rollup.roll_up(s, now=NOW + timedelta(seconds=30)).events == 2
    assert _totals(db, world)["sent"] == 3


def test_the_job_rolls_up(db: Database, world: World) -> None:
    from postwise.jobs.runner import Worker

    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
        jobs.schedule(s, seconds=0)
    Worker(db, worker_id="analytics-test").run_until_idle()
    _check(_totals(db, world))
    with db.tenant(world.ws) as s:
        assert s.scalars(select(Event)).first() is not None


def test_reports_of_one_workspace_never_see_another(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    with db.tenant(world.ws) as s:
        rollup.roll_up(s, now=NOW)
    from postwise.core.errors import NotFound

    with pytest.raises(NotFound), db.tenant(world.other_ws) as s:
        report.campaign_report(s, world.campaign_id)


def test_a_worker_rolls_up_a_new_workspace_without_being_asked(db: Database, world: World) -> None:
    from postwise.core import clock
    from postwise.jobs.runner import Worker

    with db.tenant(world.ws) as s:
        s.add_all(standard_events(world))
    period = timedelta(seconds=jobs.period_seconds())
    with db.system() as s:  # what `postwise worker` and `postwise run` do at start
        jobs.ensure_sweep_scheduled(s, now=clock.utcnow() - period)  # so it is due now
    Worker(db, worker_id="analytics-sweep-test").run_until_idle()
    _check(_totals(db, world))
    with db.system() as s:
        rollups = s.scalars(select(Job).where(Job.task == jobs.ROLLUP)).all()
        assert [j.workspace_id for j in rollups] == [world.ws]  # not the idle workspace
        [pending] = s.scalars(
            select(Job).where(Job.task == jobs.SWEEP, Job.status == "queued")
        ).all()
        assert pending.run_at > clock.utcnow()  # the chain goes on, once


def test_one_sweep_per_period_however_many_workers_start(db: Database) -> None:
    from postwise.core import clock

    now = clock.utcnow()
    with db.system() as s:
        first = jobs.ensure_sweep_scheduled(s, now=now)
        assert jobs.ensure_sweep_scheduled(s, now=now) == first
        [sweep] = s.scalars(select(Job).where(Job.task == jobs.SWEEP)).all()
    assert now < sweep.run_at <= now + timedelta(seconds=jobs.period_seconds())


def test_only_workspaces_past_their_watermark_are_behind(db: Database, world: World) -> None:
    with db.system() as s:
        assert jobs.workspaces_behind(s) == []
    with db.tenant(world.ws) as s:
        s.add(email_event(world, world.contacts[0], "Email Sent"))
    with db.system() as s:
        assert jobs.workspaces_behind(s) == [world.ws]
    with db.tenant(world.ws) as s:
        rollup.roll_up(s, now=NOW)
    with db.system() as s:
        assert jobs.workspaces_behind(s) == []
