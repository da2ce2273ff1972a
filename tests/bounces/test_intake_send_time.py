"""SMTP-time rejections: the deliverer's refusals become the same classified records,
and a domain marked as blocking is paced down by the deliverer."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from postwise.bounces import filterblock, intake, policy
from postwise.bounces.parser import parse_message
from postwise.delivery import throttle
from postwise.delivery.deliverer import Deliverer
from postwise.delivery.transports.memory import MemoryTransport
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, DomainBlock, Event, OutboxMessage, Suppression
from tests.bounces.scenario import audience, context
from tests.delivery.conftest import raw_message

UNKNOWN = "550 5.1.1 <gone@gmail.com>: Recipient address rejected: User unknown"


def _prebuilt(db: Database, ws: int) -> None:
    """Make the scenario's rows prebuilt and due, so the deliverer needs no templates."""
    with db.tenant(ws) as s:
        for row in s.scalars(select(OutboxMessage)):
            row.raw, row.mail_from, row.status = raw_message(row.email), "b@send.example", "queued"


def test_a_refusal_at_send_time_is_classified_recorded_and_suppressed(db: Database) -> None:
    people = audience(db, ["gone@gmail.com", "fine@gmail.com"])
    _prebuilt(db, people.workspace_id)
    ctx = intake.Context(**{**vars(context(db)), "parse": parse_message})
    transport = MemoryTransport({"gone@gmail.com": (550, UNKNOWN.removeprefix("550 "))})
    deliverer = Deliverer(
        db,
        transport,
        hasher=ctx.hasher,
        worker_id="w",
        on_rejected=intake.SendTimeRecorder(ctx),
    )
    totals = asyncio.run(deliverer.run())
    assert (totals.sent, totals.bounced) == (1, 1)
    with db.tenant(people.workspace_id) as s:
        record = s.scalars(select(BounceRecord)).one()
        assert (record.email, record.source, record.kind) == (
            "gone@gmail.com",
            "send_time",
            "bounce",
        )
        assert (record.reason, record.hard, record.status, record.reply_code) == (
            "userunknown",
            True,
            "5.1.1",
            550,
        )
        assert record.outbox_id == people.outbox["gone@gmail.com"]
        assert record.campaign_key == "launch" and record.verdict == policy.SUPPRESSED
        assert [r.value for r in s.scalars(select(Suppression))] == ["gone@gmail.com"]
        # The outbox's own event stands for the message; none is added twice.
        bounced = s.scalars(select(Event).where(Event.name == "Email Bounced")).all()
        assert len(bounced) == 1 and bounced[0].properties["outbox_id"] == record.outbox_id


def test_a_failing_bounce_hook_never_undoes_the_delivery_record(db: Database) -> None:
    people = audience(db, ["gone@gmail.com"])
    _prebuilt(db, people.workspace_id)

    def broken(*_: object) -> None:
        raise RuntimeError("bounce handling is down")

    transport = MemoryTransport({"gone@gmail.com": (550, "5.1.1 unknown")})
    deliverer = Deliverer(
        db, transport, hasher=context(db).hasher, worker_id="w", on_rejected=broken
    )
    assert asyncio.run(deliverer.run()).bounced == 1
    with db.tenant(people.workspace_id) as s:
        assert s.scalars(select(OutboxMessage.status)).one() == "bounced"


def test_the_deliverer_paces_a_blocked_domain_down(db: Database) -> None:
    people = audience(db, [f"p{i}@bigcorp.example" for i in range(3)])
    _prebuilt(db, people.workspace_id)
    with db.tenant(people.workspace_id) as s:
        from datetime import timedelta

        from postwise.core import clock

        s.add(
            DomainBlock(
                domain="bigcorp.example",
                per_minute=6.0,
                slow_until=clock.utcnow() + timedelta(hours=1),
            )
        )
    now = [0.0]
    pacer = throttle.Pacer(clock=lambda: now[0])
    deliverer = Deliverer(
        db,
        MemoryTransport(),
        hasher=context(db).hasher,
        worker_id="w",
        pacer=pacer,
        paces=filterblock.pace_reader(db),
    )
    deliverer._refresh_caps()
    assert pacer.rate_of("bigcorp.example") == 6.0
    assert pacer.rate_of("other.example") == 60.0
    pacer.start("bigcorp.example")
    assert pacer.wait_time("bigcorp.example") == 10.0  # one message per 10 s, no burst


def test_caps_lift_and_never_raise_a_slower_configured_rate() -> None:
    now = [0.0]
    pacer = throttle.Pacer(clock=lambda: now[0], other=throttle.Limits(2, 3.0))
    pacer.set_caps({"corp.example": 6.0})
    assert pacer.rate_of("corp.example") == 3.0  # the cap only ever slows down
    pacer.set_caps({"gmail.com": 6.0})
    assert pacer.rate_of("gmail.com") == 6.0
    pacer.finish("gmail.com", 250)
    assert pacer.rate_of("gmail.com") == 6.0  # successes do not win the cap back
    pacer.set_caps({})
    assert pacer.rate_of("gmail.com") == 1200.0
