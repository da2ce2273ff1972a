"""The outbox and the delivery loop with the in-memory transport, on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from postwise.contacts import actions, lists
from postwise.core import clock
from postwise.delivery import outbox
from postwise.delivery.deliverer import Deliverer, Policy
from postwise.delivery.transports.memory import MemoryTransport
from postwise.privacy.hashing import AddressHasher
from postwise.privacy.suppression import add_suppression
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage

from .conftest import World, queue_raw


def deliver(
    db: Database, transport: MemoryTransport, hasher: AddressHasher, **policy: float
) -> Deliverer:
    d = Deliverer(db, transport, hasher=hasher, worker_id="w1", policy=Policy(**policy))  # type: ignore[arg-type]
    asyncio.run(d.run())
    return d


def rows(db: Database, ws: int) -> dict[str, OutboxMessage]:
    with db.tenant(ws) as s:
        return {r.email: r for r in s.scalars(select(OutboxMessage))}


def events(db: Database, ws: int) -> list[tuple[str, str]]:
    with db.tenant(ws) as s:
        return sorted((e.name, e.properties["email"]) for e in s.scalars(select(Event)))


def test_sent_rows_carry_reply_and_events(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    queue_raw(db, world.ws, ["ann@corp.example", "bob@corp.example"])
    transport = MemoryTransport()
    deliver(db, transport, hasher)
    got = rows(db, world.ws)
    assert {r.status for r in got.values()} == {"sent"}
    assert got["ann@corp.example"].last_reply == "250 2.0.0 OK"
    assert got["ann@corp.example"].transport == "memory"
    assert sorted(e.rcpt for e in transport.sent) == [("ann@corp.example",), ("bob@corp.example",)]
    assert events(db, world.ws) == [
        ("Email Sent", "ann@corp.example"),
        ("Email Sent", "bob@corp.example"),
    ]


def test_idempotency_key_queues_once_per_workspace(db: Database, world: World) -> None:
    first = queue_raw(db, world.ws, ["ann@corp.example"], idempotency_key="enroll:7:step:2")
    again = queue_raw(db, world.ws, ["ann@corp.example"], idempotency_key="enroll:7:step:2")
    elsewhere = queue_raw(
        db, world.other_ws, ["ann@corp.example"], idempotency_key="enroll:7:step:2"
    )
    assert first == again
    assert elsewhere != first


def test_rejection_is_recorded_with_full_reply_and_event(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    queue_raw(db, world.ws, ["ann@corp.example"])
    reply = "5.1.1 <ann@corp.example>: Recipient address rejected: User unknown"
    deliver(db, MemoryTransport({"ann@corp.example": (550, reply)}), hasher)
    row = rows(db, world.ws)["ann@corp.example"]
    assert (row.status, row.reason, row.last_reply) == ("bounced", "rejected", f"550 {reply}")
    with db.tenant(world.ws) as s:
        event = s.scalars(select(Event).where(Event.name == "Email Bounced")).one()
    assert event.type == "email"
    assert event.properties["code"] == 550
    assert event.properties["enhanced_code"] == "5.1.1"
    assert event.properties["phase"] == "rcpt"
    assert event.properties["reply"] == f"550 {reply}"


def test_deferral_backs_off_then_expires_as_bounce(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    queue_raw(db, world.ws, ["ann@corp.example"])
    transport = MemoryTransport({"ann@corp.example": (451, "4.7.1 Try again later")})
    deliver(db, transport, hasher)
    row = rows(db, world.ws)["ann@corp.example"]
    assert row.status == "deferred"
    assert row.last_reply == "451 4.7.1 Try again later"
    assert clock.as_utc(row.next_attempt_at) > clock.utcnow() + timedelta(seconds=20)
    # Not due yet: nothing is claimed.
    deliver(db, transport, hasher)
    assert transport.attempts["ann@corp.example"] == 1
    with db.tenant(world.ws) as s:
        r = s.get(OutboxMessage, row.id)
        assert r is not None
        r.next_attempt_at = clock.utcnow()
        r.first_attempt_at = clock.utcnow() - timedelta(days=6)
    deliver(db, transport, hasher)
    row = rows(db, world.ws)["ann@corp.example"]
    assert (row.status, row.reason, row.attempts) == ("bounced", "expired", 2)


def test_suppressed_unsubscribed_and_bounced_contacts_are_never_handed_over(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    with db.tenant(world.ws) as s:
        add_suppression(s, hasher=hasher, domain="gmail.com", reason="manual")
        actions.set_status(s, world.contacts["bob@corp.example"], "bounced", source="system")
        lists.unsubscribe(s, world.list_id, world.contacts["ann@corp.example"], source="api")
    emails = ["ann@corp.example", "bob@corp.example", "cy@gmail.com"]
    with db.tenant(world.ws) as s:
        outbox.enqueue(
            s,
            [
                outbox.NewMessage(
                    email=e,
                    kind="marketing",
                    contact_id=world.contacts[e],
                    list_id=world.list_id,
                    raw=b"Subject: x\r\n\r\nx\r\n",
                    mail_from="b@send.example",
                )
                for e in emails
            ],
        )
    transport = MemoryTransport()
    deliver(db, transport, hasher)
    got = rows(db, world.ws)
    assert transport.sent == []
    assert {e: (got[e].status, got[e].reason) for e in emails} == {
        "ann@corp.example": ("suppressed", "list_unsubscribed"),
        "bob@corp.example": ("suppressed", "contact_bounced"),
        "cy@gmail.com": ("suppressed", "manual"),
    }


def test_transactional_mail_still_reaches_an_unsubscribed_contact(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    with db.tenant(world.ws) as s:
        actions.set_status(s, world.contacts["ann@corp.example"], "unsubscribed", source="api")
    queue_raw(db, world.ws, ["ann@corp.example"], contact_id=world.contacts["ann@corp.example"])
    deliver(db, MemoryTransport(), hasher)
    assert rows(db, world.ws)["ann@corp.example"].status == "sent"


def test_a_row_suppressed_after_claim_is_not_handed_over(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    """The fence check right before the hand-over sees an unsubscribe made mid-batch."""
    [row_id] = queue_raw(
        db,
        world.ws,
        ["ann@corp.example"],
        contact_id=world.contacts["ann@corp.example"],
        kind="marketing",
    )
    [claimed] = outbox.claim(db, "w1", 10, 60)
    with db.tenant(world.ws) as s:
        assert (
            outbox.suppress_pending_for_contact(
                s, world.contacts["ann@corp.example"], marketing_only=True
            )
            == 1
        )
    with db.tenant(world.ws) as s:
        assert not outbox.still_ours(s, claimed)
        assert not outbox.mark_sent(
            s, claimed, message_id=None, transport="memory", reply="250", final_hop=False
        )
        assert s.get(OutboxMessage, row_id).status == "suppressed"  # type: ignore[union-attr]


def test_expired_lease_is_reclaimed_and_the_old_owner_is_fenced_out(
    db: Database, world: World
) -> None:
    queue_raw(db, world.ws, ["ann@corp.example"])
    [first] = outbox.claim(db, "dead-worker", 10, 60)
    assert outbox.claim(db, "w2", 10, 60) == []
    [second] = outbox.claim(db, "w2", 10, 60, now=clock.utcnow() + timedelta(seconds=61))
    assert (second.id, second.attempt) == (first.id, 2)
    with db.tenant(world.ws) as s:
        assert not outbox.mark_sent(
            s, first, message_id=None, transport="memory", reply="250", final_hop=False
        )
        assert outbox.mark_sent(
            s, second, message_id=None, transport="memory", reply="250", final_hop=False
        )
    assert rows(db, world.ws)["ann@corp.example"].status == "sent"


def test_stats_count_per_status(db: Database, world: World, hasher: AddressHasher) -> None:
    queue_raw(db, world.ws, ["ann@corp.example", "bob@corp.example"])
    deliver(db, MemoryTransport({"bob@corp.example": (550, "5.1.1 no")}), hasher)
    with db.tenant(world.ws) as s:
        assert outbox.stats(s, world.ws) == {"sent": 1, "bounced": 1}


def test_warm_up_caps_the_day_across_runs(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    queue_raw(db, world.ws, [f"p{n}@corp.example" for n in range(6)])
    policy = Policy(warmup_start=clock.utcnow().date(), warmup_schedule=(2, 4))
    for _ in range(3):  # later runs the same day find the cap used up
        asyncio.run(
            Deliverer(db, MemoryTransport(), hasher=hasher, worker_id="w", policy=policy).run()
        )
    with db.tenant(world.ws) as s:
        assert outbox.stats(s, world.ws) == {"sent": 2, "queued": 4}
    second_day = Policy(
        warmup_start=clock.utcnow().date() - timedelta(days=1), warmup_schedule=(2, 4)
    )
    asyncio.run(
        Deliverer(db, MemoryTransport(), hasher=hasher, worker_id="w", policy=second_day).run()
    )
    with db.tenant(world.ws) as s:
        assert outbox.stats(s, world.ws) == {"sent": 4, "queued": 2}
