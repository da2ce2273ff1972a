"""A stop or a drain's deadline does not wait for a slow destination's pace: rows whose
pace wait would pass it go back to ``queued`` untried (attempts as before), and a later
run sends them once."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import select, update

from postwise.core import clock
from postwise.delivery.deliverer import Deliverer, Policy
from postwise.delivery.throttle import Limits, Pacer
from postwise.delivery.transports.memory import MemoryTransport
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import OutboxMessage

from .conftest import World, queue_raw

ROWS = 12


def slow_deliverer(db: Database, hasher: AddressHasher, transport: MemoryTransport) -> Deliverer:
    """corp.example at 60 a minute: two at once (the burst), then one a second."""
    pacer = Pacer(clock=time.monotonic, other=Limits(connections=2, per_minute=60))
    return Deliverer(db, transport, hasher=hasher, worker_id="w1", pacer=pacer, policy=Policy())


def states(db: Database, ws: int) -> list[tuple[str, int, str | None, bool]]:
    with db.tenant(ws) as s:
        return [
            (r.status, r.attempts, r.locked_by, r.first_attempt_at is not None)
            for r in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ]


def check_released(db: Database, world: World, sent: int) -> None:
    got = states(db, world.ws)
    assert sorted(got).count(("sent", 1, None, True)) == sent
    assert sorted(got).count(("queued", 0, None, False)) == ROWS - sent


def test_the_drain_deadline_releases_rows_waiting_for_their_pace(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    queue_raw(db, world.ws, [f"p{i}@corp.example" for i in range(ROWS)])
    transport = MemoryTransport()
    deliverer = slow_deliverer(db, hasher, transport)
    started = time.monotonic()
    totals = asyncio.run(deliverer.run(until_idle=True, max_seconds=1.5))
    took = time.monotonic() - started
    # Paced, the batch would take ten seconds; it ends at the deadline instead.
    assert took < 5, took
    assert 2 <= totals.sent <= 4
    assert totals.released == ROWS - totals.sent
    assert len(transport.sent) == totals.sent
    check_released(db, world, totals.sent)

    # Each released row is due again when its pace would have let it go (one a second).
    with db.tenant(world.ws) as s:
        due = sorted(
            clock.as_utc(r.next_attempt_at)
            for r in s.scalars(select(OutboxMessage).where(OutboxMessage.status == "queued"))
        )
    now = clock.utcnow()
    assert now < due[-1] < now + timedelta(seconds=ROWS)
    # When that time comes, another worker sends them; each counts one attempt.
    with db.tenant(world.ws) as s:
        s.execute(update(OutboxMessage).values(next_attempt_at=now))
    fast = Deliverer(db, MemoryTransport(), hasher=hasher, worker_id="w2")
    assert asyncio.run(fast.run(until_idle=True)).sent == ROWS - totals.sent
    assert set(states(db, world.ws)) == {("sent", 1, None, True)}


def test_a_stop_is_prompt_while_rows_wait_for_their_pace(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    queue_raw(db, world.ws, [f"p{i}@corp.example" for i in range(ROWS)])
    transport = MemoryTransport()
    deliverer = slow_deliverer(db, hasher, transport)

    async def run_then_stop() -> float:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        task = asyncio.create_task(deliverer.run(until_idle=False, stop=stop))
        await stop.wait()
        stopped = time.monotonic()
        await task
        return time.monotonic() - stopped

    after_stop = asyncio.run(run_then_stop())
    assert after_stop < 2, after_stop  # not the ten seconds the pace would take
    assert deliverer.totals.released == ROWS - deliverer.totals.sent
    check_released(db, world, deliverer.totals.sent)
