"""The A/B decision job sends the rest of the audience the winner (or the fallback),
and last-touch attribution across campaigns, on both backends."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from postwise.campaigns import attribution, jobs, lifecycle, results, store
from postwise.core import clock
from postwise.storage.database import Database
from postwise.storage.tables import (
    Campaign,
    CampaignAttribution,
    CampaignRecipient,
    Event,
    Job,
    OutboxMessage,
)

from .conftest import World, base_campaign, drain, make_world


def _start(db: Database, ws: int, values: dict[str, object]) -> int:
    with db.tenant(ws) as s:
        c = store.create_campaign(s, values)
        lifecycle.schedule(s, c.id)
        jobs.run_fanout_batch(s, c.id)
        return c.id


def _touch(
    s: object, contact_id: int, key: str, name: str, at: object, machine: bool = False
) -> None:
    s.add(  # type: ignore[attr-defined]
        Event(
            contact_id=contact_id,
            type="email",
            name=name,
            properties={"campaign_key": key, "machine": machine},
            occurred_at=at,
        )
    )


def test_the_rest_waits_for_the_decision_then_gets_the_clear_winner(
    db: Database, settings: object
) -> None:
    world = make_world(db, n=400)
    ab = {
        "test_share": 0.5,
        "metric": "click_rate",
        "duration_hours": 2,
        "fallback": "send_nothing",
    }
    cid = _start(
        db,
        world.ws,
        base_campaign(world, ab=ab, variants=[{"key": "A"}, {"key": "B", "subject": "Other"}]),
    )
    now = clock.utcnow()
    with db.tenant(world.ws) as s:
        snap = list(s.scalars(select(CampaignRecipient)))
        test = [r for r in snap if r.phase == "test"]
        rest = [r for r in snap if r.phase == "rest"]
        assert test and rest and all(r.outbox_id is None for r in rest)
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == len(test)
        for r in test:  # B's recipients click, nobody of A does (and A has a machine click)
            if r.variant == "B":
                _touch(s, r.contact_id, "launch", "Email Clicked", now)
            else:
                _touch(s, r.contact_id, "launch", "Email Clicked", now, machine=True)
        assert jobs.check_progress(s, cid) == "sending"  # waits for the decision
    with db.tenant(world.ws) as s:
        decided = results.decide_and_send(s, cid)
        assert decided is not None and decided["winner"] == "B" and decided["significant"]
        assert decided["rest_queued"] == len(rest)
        assert results.decide_and_send(s, cid) == decided  # the job re-run does nothing
        rows = {r.contact_id: r for r in s.scalars(select(CampaignRecipient))}
        assert {rows[r.contact_id].variant for r in rest} == {"B"}
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == len(snap)
        b_template = {
            o.template_id for o in s.scalars(select(OutboxMessage)) if o.data.get("variant") == "B"
        }
        assert len(b_template) == 1 and b_template != {str(world.template_id)}


def test_no_winner_and_send_nothing_leaves_the_rest_unsent(db: Database, world: World) -> None:
    ab = {"test_share": 0.5, "metric": "open_rate", "fallback": "send_nothing"}
    cid = _start(db, world.ws, base_campaign(world, ab=ab, variants=[{"key": "A"}, {"key": "B"}]))
    with db.tenant(world.ws) as s:
        decided = results.decide_and_send(s, cid)
        assert decided is not None and decided["winner"] is None
        assert decided["sent_to_rest"] is None and decided["rest_queued"] == 0
        assert all(a["ci"][0] <= a["value"] <= a["ci"][1] for a in decided["arms"])


def test_the_last_human_click_before_the_conversion_wins_across_campaigns(
    db: Database, world: World
) -> None:
    goal = {"goal_event": "Order Completed", "revenue_property": "total"}
    first = _start(db, world.ws, base_campaign(world, key="first", **goal))
    second = _start(db, world.ws, base_campaign(world, key="second", credit="open", **goal))
    now = clock.utcnow()
    ids = sorted(world.contacts.values())
    with db.tenant(world.ws) as s:
        buyer, opener, late, machine_only = ids[0], ids[2], ids[4], ids[6]
        _touch(s, buyer, "second", "Email Clicked", now - timedelta(hours=5))
        _touch(s, buyer, "first", "Email Clicked", now - timedelta(hours=2))
        _touch(s, buyer, "second", "Email Opened", now - timedelta(hours=3))
        _touch(s, opener, "first", "Email Opened", now - timedelta(hours=1))  # first credits clicks
        _touch(s, opener, "second", "Email Opened", now - timedelta(hours=4))  # second: opens
        _touch(s, late, "first", "Email Clicked", now - timedelta(days=9))  # outside 7 days
        _touch(s, machine_only, "first", "Email Clicked", now - timedelta(hours=1), machine=True)
        for contact, total in ((buyer, "99.5"), (opener, 10), (late, 5), (machine_only, 7)):
            s.add(
                Event(
                    contact_id=contact,
                    type="track",
                    name="Order Completed",
                    properties={"total": total},
                    occurred_at=now,
                )
            )
    with db.tenant(world.ws) as s:
        assert attribution.attribute(s) == 2
        got = {
            a.contact_id: (a.campaign_key, a.touch, a.revenue)
            for a in s.scalars(select(CampaignAttribution))
        }
        assert got == {buyer: ("first", "click", 99.5), opener: ("second", "open", 10.0)}
        assert attribution.summary(s, first) == {"conversions": 1, "revenue": 99.5}
        assert attribution.summary(s, second) == {"conversions": 1, "revenue": 10.0}


def test_a_decision_that_found_the_campaign_paused_runs_again_after_resume(
    db: Database, world: World
) -> None:
    ab = {"test_share": 0.5, "metric": "open_rate", "duration_hours": 2, "fallback": "send_a"}
    cid = _start(db, world.ws, base_campaign(world, ab=ab, variants=[{"key": "A"}, {"key": "B"}]))
    with db.tenant(world.ws) as s:
        lifecycle.pause(s, cid)
    with db.system() as s:  # the test period ends while the campaign is paused
        s.execute(update(Job).where(Job.task == jobs.AB_DECIDE).values(run_at=clock.utcnow()))
    drain(db)
    with db.system() as s:
        assert s.scalar(select(Job.status).where(Job.task == jobs.AB_DECIDE)) == "done"
        campaign = s.get(Campaign, cid)
        assert campaign is not None and campaign.ab_result is None  # paused: nothing decided
        campaign.started_at = clock.utcnow() - timedelta(hours=3)
    with db.tenant(world.ws) as s:
        lifecycle.resume(s, cid)
    drain(db)
    with db.tenant(world.ws) as s:
        campaign = store.get_campaign(s, cid)
        assert campaign.ab_result is not None and campaign.winner_variant == "A"
        assert (
            s.scalar(select(func.count()).select_from(Job).where(Job.task == jobs.AB_DECIDE)) == 2
        )
        rest = s.scalar(
            select(func.count())
            .select_from(CampaignRecipient)
            .where(CampaignRecipient.phase == "rest", CampaignRecipient.outbox_id.is_(None))
        )
        assert rest == 0
