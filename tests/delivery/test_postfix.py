"""The relay transport and the outbox against Debian's Postfix on loopback."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from postwise.delivery.deliverer import Deliverer, Policy
from postwise.delivery.throttle import Limits, Pacer
from postwise.delivery.transports.smtp import Server, SmtpRelay
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage

from .conftest import World, queue_raw, raw_message
from .postfix_peer import PostfixInstance, postfix  # noqa: F401 (fixture)


def wait_delivered(instance: PostfixInstance, count: int, timeout: float = 30.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = instance.delivered()
        if len(found) >= count:
            return found
        time.sleep(0.1)
    return instance.delivered()


def test_postfix_accepts_defers_and_rejects_per_recipient(
    postfix: PostfixInstance,  # noqa: F811
    db: Database,
    world: World,
    hasher: AddressHasher,
) -> None:
    emails = ["ann@corp.example", "unknown@corp.example", "slow@corp.example"]
    before = len(postfix.delivered())  # the instance is shared by the whole session
    queue_raw(db, world.ws, emails, size=20_000)
    deliverer = Deliverer(
        db,
        SmtpRelay(Server(postfix.host, postfix.port, tls="opportunistic", validate_certs=False)),
        hasher=hasher,
        worker_id="w1",
        policy=Policy(),
        pacer=Pacer(clock=time.monotonic, other=Limits(10, 60_000)),
    )
    asyncio.run(deliverer.run())
    with db.tenant(world.ws) as s:
        rows = {r.email: r for r in s.scalars(select(OutboxMessage))}
        bounce = s.scalars(select(Event).where(Event.name == "Email Bounced")).one()
    assert rows["ann@corp.example"].status == "sent"
    assert rows["ann@corp.example"].last_reply.startswith("250 2.0.0 Ok: queued as")  # type: ignore[union-attr]
    assert (rows["unknown@corp.example"].status, rows["unknown@corp.example"].reason) == (
        "bounced",
        "rejected",
    )
    assert rows["unknown@corp.example"].last_reply == (
        "550 5.1.1 <unknown@corp.example>: Recipient address rejected: User unknown"
    )
    assert bounce.properties["enhanced_code"] == "5.1.1"
    assert bounce.properties["phase"] == "rcpt"
    assert rows["slow@corp.example"].status == "deferred"
    assert rows["slow@corp.example"].last_reply == (
        "451 4.7.1 <slow@corp.example>: Recipient address rejected: Try again later"
    )
    [delivered] = wait_delivered(postfix, before + 1)[before:]
    # Postfix prepends its trace headers; everything we sent follows byte for byte
    # (the maildir stores LF line ends).
    sent = raw_message("ann@corp.example", 0, 20_000).replace(b"\r\n", b"\n")
    assert delivered.endswith(sent)
    assert b"Received: from " in delivered[: len(delivered) - len(sent)]
