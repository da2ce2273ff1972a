"""The relay transport and the delivery loop against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from postwise.delivery.deliverer import Deliverer, Policy
from postwise.delivery.throttle import Limits, Pacer
from postwise.delivery.transports.base import Envelope, Outcome, Phase
from postwise.delivery.transports.smtp import Server, SmtpRelay
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import OutboxMessage

from .conftest import World, queue_raw, raw_message
from .smtp_peer import ScriptedHandler, smtp_server


def relay(host: str, port: int, pool: int = 2) -> SmtpRelay:
    return SmtpRelay(Server(host, port, tls="none", timeout=10), pool_size=pool)


def test_bytes_arrive_exactly_and_connections_are_reused() -> None:
    handler = ScriptedHandler()
    with smtp_server(handler) as (host, port):
        transport = relay(host, port, pool=1)

        async def go() -> list[Outcome]:
            out = []
            for n in range(5):
                rcpt = f"r{n}@corp.example"
                result = await transport.deliver(
                    Envelope("bounces@send.example", (rcpt,), raw_message(rcpt, n, 3000))
                )
                out.append(result.of(rcpt).outcome)
            await transport.close()
            return out

        outcomes = asyncio.run(go())
    assert outcomes == [Outcome.ACCEPTED] * 5
    assert [r.data for r in handler.received] == [
        raw_message(f"r{n}@corp.example", n, 3000) for n in range(5)
    ]
    assert handler.connections == 1


def test_rcpt_and_data_answers_become_per_recipient_results() -> None:
    handler = ScriptedHandler(
        rcpt_answers={
            "gone@corp.example": "550 5.1.1 <gone@corp.example>: Recipient address rejected",
            "later@corp.example": "451 4.7.1 Greylisted, try again",
        },
        data_answers={"spam@corp.example": "554 5.7.1 Message rejected as spam"},
    )
    with smtp_server(handler) as (host, port):
        transport = relay(host, port)

        async def go() -> dict[str, tuple[Outcome, int | None, str, Phase]]:
            out = {}
            for rcpt in ("gone@corp.example", "later@corp.example", "spam@corp.example"):
                r = (await transport.deliver(Envelope("b@send.example", (rcpt,), b"x\r\n"))).of(
                    rcpt
                )
                out[rcpt] = (r.outcome, r.code, r.full_reply, r.phase)
            await transport.close()
            return out

        got = asyncio.run(go())
    assert got == {
        "gone@corp.example": (
            Outcome.REJECTED,
            550,
            "550 5.1.1 <gone@corp.example>: Recipient address rejected",
            Phase.RCPT,
        ),
        "later@corp.example": (
            Outcome.DEFERRED,
            451,
            "451 4.7.1 Greylisted, try again",
            Phase.RCPT,
        ),
        "spam@corp.example": (
            Outcome.REJECTED,
            554,
            "554 5.7.1 Message rejected as spam",
            Phase.DATA,
        ),
    }
    assert handler.received == []


def test_unreachable_relay_defers_with_the_reason() -> None:
    handler = ScriptedHandler()
    with smtp_server(handler) as (host, port):
        pass  # the port is closed again
    result = asyncio.run(relay(host, port).deliver(Envelope("b@s.example", ("a@c.example",), b"x")))
    answer = result.of("a@c.example")
    assert (answer.outcome, answer.code, answer.phase) == (Outcome.DEFERRED, None, Phase.CONNECT)
    assert "cannot connect" in answer.reply


def test_dropped_connection_mid_data_is_retried_not_lost(
    db: Database, world: World, hasher: AddressHasher
) -> None:
    emails = [f"p{n}@corp.example" for n in range(6)]
    handler = ScriptedHandler(drop_data_times={"p2@corp.example": 1, "p4@corp.example": 2})
    queue_raw(db, world.ws, emails)
    with smtp_server(handler) as (host, port):
        for _ in range(4):
            deliverer = Deliverer(
                db,
                relay(host, port),
                hasher=hasher,
                worker_id="w1",
                policy=Policy(retry_base=0.001, retry_cap=0.001),
                pacer=Pacer(clock=time.monotonic, other=Limits(10, 60_000)),
            )
            asyncio.run(deliverer.run())
            asyncio.run(asyncio.sleep(0.01))
    with db.tenant(world.ws) as s:
        got = {r.email: (r.status, r.attempts) for r in s.scalars(select(OutboxMessage))}
    assert got == {
        **dict.fromkeys(emails, ("sent", 1)),
        "p2@corp.example": ("sent", 2),
        "p4@corp.example": ("sent", 3),
    }
    assert sorted(r.rcpt[0] for r in handler.received) == sorted(emails)
    assert {r.data for r in handler.received} == {raw_message(e, n) for n, e in enumerate(emails)}
