"""Per-MX-host pace for direct delivery: many recipient domains behind one MX host (or
one shared gateway) share its connection and rate limits; real aiosmtpd peer on loopback."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from postwise.delivery.throttle import HostPacer, Limits, mx_group
from postwise.delivery.transports.base import Envelope, Outcome
from postwise.delivery.transports.mx import MxTransport

from .smtp_peer import ScriptedHandler, smtp_server
from .test_mx import StubFetcher, StubResolver


@dataclass
class SlowHandler(ScriptedHandler):
    """Holds each DATA a moment and records how many were in flight at once."""

    in_flight: int = 0
    most_in_flight: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.15)
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.in_flight -= 1


def test_shared_gateways_group_their_hosts() -> None:
    assert mx_group("acme-com.mail.protection.outlook.com.") == "mail.protection.outlook.com"
    assert mx_group("MX0A-00123.pphosted.com") == "pphosted.com"
    assert mx_group("eu-smtp-inbound-1.mimecast.com") == "mimecast.com"
    assert mx_group("mx.acme.example") == "mx.acme.example"
    assert mx_group("notpphosted.com") == "notpphosted.com"


def test_host_pacer_connection_limit_and_rate() -> None:
    now = [0.0]
    pacer = HostPacer(lambda: now[0], other=Limits(2, 60))
    for _ in range(2):
        assert pacer.wait_time("mx.a", new_connection=True) == 0
        pacer.take("mx.a")
        pacer.opened("mx.a")
    assert pacer.wait_time("mx.a", new_connection=True) > 0  # two open: no third
    assert pacer.wait_time("mx.a", new_connection=False) == 1.0  # burst spent: 1/s
    now[0] = 1.0
    assert pacer.wait_time("mx.a", new_connection=False) == 0
    pacer.closed("mx.a")
    assert pacer.wait_time("mx.a", new_connection=True) == 0
    assert pacer.wait_time("mx.b", new_connection=True) == 0  # another host is separate


def _envelopes(n: int) -> list[Envelope]:
    return [
        Envelope("b@send.example", (f"p{i}@d{i}.example",), b"Subject: x\r\n\r\nhi\r\n")
        for i in range(n)
    ]


def test_many_domains_behind_one_mx_share_its_connection_limit() -> None:
    handler = SlowHandler()
    with smtp_server(handler) as (host, port):
        resolver = StubResolver(mx_records={f"d{i}.example": [(10, host)] for i in range(8)})
        pacer = HostPacer(time.monotonic, other=Limits(2, 60_000))
        transport = MxTransport(resolver=resolver, fetcher=StubFetcher(), port=port, pacer=pacer)

        async def go() -> list[Outcome]:
            results = await asyncio.gather(*(transport.deliver(e) for e in _envelopes(8)))
            assert pacer.open[host] <= 2
            await transport.close()
            return [o.outcome for r in results for o in r.recipients.values()]

        outcomes = asyncio.run(go())
    assert outcomes == [Outcome.ACCEPTED] * 8
    assert len(handler.received) == 8
    assert handler.most_in_flight == 2
    assert handler.connections == 2  # the two connections were reused
    assert pacer.open[host] == 0


def test_messages_per_minute_per_mx_host() -> None:
    handler = ScriptedHandler()
    with smtp_server(handler) as (host, port):
        resolver = StubResolver(mx_records={f"d{i}.example": [(10, host)] for i in range(4)})
        pacer = HostPacer(time.monotonic, other=Limits(1, 240))  # 4/s, burst of 1
        transport = MxTransport(resolver=resolver, fetcher=StubFetcher(), port=port, pacer=pacer)

        async def go() -> float:
            started = time.monotonic()
            await asyncio.gather(*(transport.deliver(e) for e in _envelopes(4)))
            took = time.monotonic() - started
            await transport.close()
            return took

        took = asyncio.run(go())
    assert len(handler.received) == 4
    assert took >= 0.7  # 1 at once, then 3 more at 0.25 s each
