"""Campaigns through their real paths on both databases: estimate, schedule, fan-out via
the job worker into the outbox and the capture transport, pause/resume/cancel, errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from postwise.campaigns import audience, fanout, jobs, lifecycle, store
from postwise.contacts.actions import set_status
from postwise.core import clock
from postwise.core.errors import Conflict, ValidationFailed
from postwise.core.settings import Settings
from postwise.delivery import outbox
from postwise.delivery.transports.maildir import list_captured
from postwise.privacy.hashing import AddressHasher
from postwise.privacy.suppression import add_suppression
from postwise.segments import store as segments
from postwise.storage.database import Database
from postwise.storage.tables import (
    Campaign,
    CampaignRecipient,
    DkimKeyRecord,
    OutboxMessage,
    Segment,
)

from .conftest import World, base_campaign, drain


def _expected(world: World) -> dict[int, str]:
    """contact id -> first matching source: seniors (even numbers) by segment, else list."""
    out = {}
    for email, cid in world.contacts.items():
        n = int(email[1:4])
        if n % 2 == 0:
            out[cid] = "segment"
        elif n % 3 == 0:
            out[cid] = "list"
    return out


def test_estimate_dedupes_names_the_first_source_and_drops_the_unmailable(
    db: Database, world: World
) -> None:
    expected = _expected(world)
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world))
        est = audience.estimate(s, c)
        assert est["total"] == len(expected)
        assert [b["count"] for b in est["by_source"]] == [
            sum(1 for v in expected.values() if v == "segment"),
            sum(1 for v in expected.values() if v == "list"),
        ]
        gone = sorted(expected)[:2]
        set_status(s, gone[0], "unsubscribed", source="api")
        email = next(e for e, i in world.contacts.items() if i == gone[1])
        add_suppression(s, email=email, reason="manual", hasher=AddressHasher.from_secret(b"x"))
        assert audience.estimate(s, c)["total"] == len(expected) - 2
        c2 = store.create_campaign(
            s,
            base_campaign(
                world,
                key="no-list-people",
                audience={
                    "sources": [{"segment": world.segment_id}],
                    "exclude_list_ids": [world.list_id],
                },
            ),
        )
        seniors_off_list = [
            cid
            for e, cid in world.contacts.items()
            if int(e[1:4]) % 2 == 0 and int(e[1:4]) % 3 != 0 and cid not in gone
        ]
        assert audience.estimate(s, c2)["total"] == len(seniors_off_list)


def test_a_scheduled_campaign_fans_out_once_and_is_delivered(
    db: Database, world: World, settings: Settings
) -> None:
    expected = _expected(world)
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world))
        lifecycle.schedule(s, c.id)
        cid = c.id
    drain(db)
    with db.tenant(world.ws) as s:
        c = store.get_campaign(s, cid)
        snap = {r.contact_id: r for r in s.scalars(select(CampaignRecipient))}
        assert {k: r.source_kind for k, r in snap.items()} == expected
        assert {r.source_id for r in snap.values() if r.source_kind == "list"} == {world.list_id}
        rows = list(s.scalars(select(OutboxMessage)))
        assert len(rows) == len(expected) == c.recipient_count
        assert {(r.kind, r.campaign_key, r.status) for r in rows} == {
            ("marketing", "launch", "sent")
        }
        assert {r.id for r in rows} == {r.outbox_id for r in snap.values()}
        # ``sent`` once the progress job (due 1 s after the fan-out) saw nothing pending:
        # on a loaded machine the drain itself can outlast that second.
        assert c.status in ("sending", "sent")
        assert jobs.check_progress(s, cid) == "sent"
        # A re-run of the whole fan-out (a crash before the cursor moved) adds nobody.
        c.fanout_cursor, c.status = 0, "sending"
        fanout.snapshot_batch(s, c, 1000)
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == len(expected)
        assert s.scalar(select(func.count()).select_from(CampaignRecipient)) == len(expected)
    assert len(list_captured(settings.resolved_capture_dir(), world.ws)) == len(expected)


def test_fan_out_in_small_batches_resumes_from_its_cursor(
    db: Database, world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "campaign_fanout_batch", 3)
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world))
        lifecycle.schedule(s, c.id)
        cid = c.id
    with db.tenant(world.ws) as s:
        assert jobs.run_fanout_batch(s, cid) is False
        assert s.scalar(select(func.count()).select_from(CampaignRecipient)) <= 3
    drain(db)
    with db.tenant(world.ws) as s:
        assert s.scalar(select(func.count()).select_from(CampaignRecipient)) == len(
            _expected(world)
        )


def test_scheduling_refuses_what_would_fail_at_send_time(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world, audience={"sources": []}))
        with pytest.raises(ValidationFailed) as err:
            lifecycle.schedule(s, c.id)
        assert err.value.code == "audience_required"
        store.update_campaign(
            s, c.id, {"audience": {"segment_ids": [world.segment_id]}, "template_id": None}
        )
        with pytest.raises(ValidationFailed) as err:
            lifecycle.schedule(s, c.id)
        assert err.value.code == "template_required"
        store.update_campaign(
            s, c.id, {"template_id": world.template_id, "sending_domain": "other.example"}
        )
        with pytest.raises(ValidationFailed) as err:
            lifecycle.schedule(s, c.id)
        assert err.value.code == "sender_unverified"
        store.update_campaign(s, c.id, {"sending_domain": "send.example"})
        s.execute(update(DkimKeyRecord).values(active=False))
        with pytest.raises(ValidationFailed):
            lifecycle.schedule(s, c.id)
        s.execute(update(DkimKeyRecord).values(active=True))
        assert store.get_campaign(s, c.id).status == "draft"


def test_no_postal_address_means_no_unsubscribe_footer_and_no_schedule(
    db: Database, world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "delivery_postal_address", "")
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world))
        with pytest.raises(ValidationFailed) as err:
            lifecycle.schedule(s, c.id)
        assert err.value.code == "message_unbuildable"
        assert store.get_campaign(s, c.id).status == "draft"


def test_illegal_moves_are_409_and_change_nothing(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world))
        with pytest.raises(Conflict):
            store.create_campaign(s, base_campaign(world))
        with pytest.raises(Conflict):
            lifecycle.pause(s, c.id)
        with pytest.raises(Conflict):
            lifecycle.resume(s, c.id)
        lifecycle.schedule(s, c.id)
        with pytest.raises(Conflict):
            lifecycle.schedule(s, c.id)
        lifecycle.pause(s, c.id)
        with pytest.raises(Conflict) as err:
            lifecycle.pause(s, c.id)
        assert "it is paused" in err.value.message
        lifecycle.cancel(s, c.id)
        with pytest.raises(Conflict):
            lifecycle.cancel(s, c.id)
        with pytest.raises(Conflict):
            lifecycle.resume(s, c.id)
        with pytest.raises(Conflict) as err:
            store.update_campaign(s, c.id, {"name": "x"})
        assert err.value.code == "campaign_not_editable"
        assert store.get_campaign(s, c.id).status == "cancelled"
        c.status = "sent"
        with pytest.raises(Conflict):
            lifecycle.resume(s, c.id)


def test_pause_holds_unsent_rows_the_deliverer_never_claims_resume_and_cancel(
    db: Database, world: World
) -> None:
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world))
        lifecycle.schedule(s, c.id)
        cid = c.id
        assert jobs.run_fanout_batch(s, cid) is True
        total = c.recipient_count
        lifecycle.pause(s, cid)
    with db.tenant(world.ws) as s:
        assert outbox.stats(s, world.ws) == {"held": total}
    assert outbox.claim(db, "w", 100, 30) == []
    with db.tenant(world.ws) as s:
        lifecycle.resume(s, cid)
        assert outbox.stats(s, world.ws) == {"queued": total}
    claimed = outbox.claim(db, "w", 2, 30)
    assert len(claimed) == 2
    with db.tenant(world.ws) as s:
        lifecycle.pause(s, cid)  # leased rows are held too: their fence no longer holds
        lifecycle.cancel(s, cid)
        assert outbox.stats(s, world.ws) == {"cancelled": total}
        assert store.get_campaign(s, cid).status == "cancelled"
    assert outbox.claim(db, "w", 100, 30) == []


def test_local_time_sends_at_the_wall_clock_time_of_each_recipient(
    db: Database, world: World
) -> None:
    day = (clock.utcnow() + timedelta(days=2)).date()
    wall = datetime(day.year, day.month, day.day, 9, 0)
    with db.tenant(world.ws) as s:
        c = store.create_campaign(
            s,
            base_campaign(
                world,
                schedule={
                    "mode": "local",
                    "at": wall.isoformat(),
                    "fallback_timezone": "Asia/Tokyo",
                },
            ),
        )
        lifecycle.schedule(s, c.id)
        jobs.run_fanout_batch(s, c.id)
        tz = {cid: e for e, cid in world.contacts.items()}
        zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo"]
        for r in s.scalars(select(CampaignRecipient)):
            zone = zones[int(tz[r.contact_id][1:4]) % 3]
            want = wall.replace(tzinfo=ZoneInfo(zone))
            assert r.scheduled_for == want
            row = s.get(OutboxMessage, r.outbox_id)
            assert row is not None and row.next_attempt_at == want


def test_pace_spreads_the_send_over_minutes(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world, pace_per_minute=2))
        lifecycle.schedule(s, c.id)
        jobs.run_fanout_batch(s, c.id)
        times = sorted(r.scheduled_for for r in s.scalars(select(CampaignRecipient)))
        assert times[-1] - times[0] >= timedelta(seconds=30 * (len(times) - 1) - 1)
        assert times[1] - times[0] == pytest.approx(timedelta(seconds=30), abs=timedelta(seconds=1))


def test_test_send_goes_to_chosen_addresses_without_the_campaign_key(
    db: Database, world: World
) -> None:
    with db.tenant(world.ws) as s:
        c = store.create_campaign(s, base_campaign(world))
        ids = lifecycle.test_send(s, c.id, ["me@corp.example"])
        row = s.get(OutboxMessage, ids[0])
        assert row is not None and row.campaign_key is None and row.kind == "marketing"
        assert store.get_campaign(s, c.id).test_send_count == 1
        assert s.scalar(select(Campaign.status)) == "draft"


def test_campaigns_of_another_workspace_are_invisible(db: Database, world: World) -> None:
    with db.tenant(world.ws) as s:
        cid = store.create_campaign(s, base_campaign(world)).id
    with db.tenant(world.other_ws) as s:
        assert store.list_campaigns(s) == []
        with pytest.raises(Exception, match="does not exist"):
            store.get_campaign(s, cid)


def test_a_segment_saved_just_before_the_send_is_refreshed_when_the_fan_out_starts(
    db: Database, world: World
) -> None:
    directors = {"field": "contact.seniority", "op": "eq", "value": "director"}
    with db.tenant(world.ws) as s:
        fresh = segments.create_segment(
            s, segments.SegmentInput("Directors", directors), refresh=False
        )
        assert fresh.refreshed_at is None
        c = store.create_campaign(
            s, base_campaign(world, audience={"sources": [{"segment": fresh.id}]})
        )
        lifecycle.schedule(s, c.id)
    drain(db)
    with db.tenant(world.ws) as s:
        got = set(s.scalars(select(CampaignRecipient.contact_id)))
        want = {cid for email, cid in world.contacts.items() if int(email[1:4]) % 2 == 0}
        assert got == want and want
        segment = s.get(Segment, fresh.id)
        assert segment is not None and segment.refreshed_at is not None
        assert segment.member_count == len(want)
