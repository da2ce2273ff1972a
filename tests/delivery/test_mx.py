"""Direct-to-MX routing and MTA-STS with a stub resolver and policy fetcher, and one real
delivery to an aiosmtpd "MX" on loopback."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from postwise.delivery.transports.base import Envelope, Outcome
from postwise.delivery.transports.mx import (
    HttpsPolicyFetcher,
    MxTransport,
    StsPolicy,
    parse_policy,
    route,
)

from .smtp_peer import ScriptedHandler, smtp_server


@dataclass
class StubResolver:
    mx_records: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a_records: dict[str, list[str]] = field(default_factory=dict)
    txt_records: dict[str, list[str]] = field(default_factory=dict)

    def mx(self, domain: str) -> list[tuple[int, str]]:
        return self.mx_records.get(domain, [])

    def addresses(self, host: str) -> list[str]:
        return self.a_records.get(host, [])

    def txt(self, name: str) -> list[str]:
        return self.txt_records.get(name, [])


@dataclass
class StubFetcher:
    policies: dict[str, StsPolicy | None] = field(default_factory=dict)

    def fetch(self, domain: str) -> StsPolicy | None:
        return self.policies.get(domain)


def test_hosts_in_priority_order_then_a_record_fallback() -> None:
    resolver = StubResolver(
        mx_records={"corp.example": [(20, "mx2.corp.example"), (10, "mx1.corp.example")]},
        a_records={"plain.example": ["192.0.2.1"]},
    )
    assert route("corp.example", resolver, None).hosts == ["mx1.corp.example", "mx2.corp.example"]
    assert route("plain.example", resolver, None).hosts == ["plain.example"]
    nothing = route("void.example", resolver, None)
    assert nothing.hosts == [] and nothing.error is not None
    assert (nothing.error.outcome, nothing.error.code) == (Outcome.REJECTED, 550)


def test_null_mx_rejects() -> None:
    plan = route("nomail.example", StubResolver(mx_records={"nomail.example": [(0, ".")]}), None)
    assert plan.error is not None and plan.error.code == 556


def test_mta_sts_enforce_keeps_only_matching_hosts_and_requires_tls() -> None:
    resolver = StubResolver(
        mx_records={"corp.example": [(10, "evil.example.net"), (20, "mx1.mail.corp.example")]}
    )
    policy = StsPolicy("enforce", ("*.mail.corp.example",), 86400)
    plan = route("corp.example", resolver, StubFetcher({"corp.example": policy}))
    assert (plan.hosts, plan.enforce) == (["mx1.mail.corp.example"], True)
    testing = StsPolicy("testing", ("*.mail.corp.example",), 86400)
    plan = route("corp.example", resolver, StubFetcher({"corp.example": testing}))
    assert (plan.hosts, plan.enforce) == (["evil.example.net", "mx1.mail.corp.example"], False)


def test_mta_sts_enforce_with_no_matching_host_defers() -> None:
    resolver = StubResolver(mx_records={"corp.example": [(10, "evil.example.net")]})
    policy = StsPolicy("enforce", ("mx.corp.example",), 86400)
    plan = route("corp.example", resolver, StubFetcher({"corp.example": policy}))
    assert plan.hosts == [] and plan.error is not None
    assert plan.error.outcome is Outcome.DEFERRED


def test_policy_parsing_and_wildcards() -> None:
    text = (
        "version: STSv1\r\nmode: enforce\r\nmx: mx1.corp.example\r\n"
        "mx: *.backup.example\r\nmax_age: 604800\r\n"
    )
    policy = parse_policy(text)
    assert policy == StsPolicy("enforce", ("mx1.corp.example", "*.backup.example"), 604800)
    assert policy.allows("MX1.corp.example.")
    assert policy.allows("a.backup.example")
    assert not policy.allows("a.b.backup.example")
    assert not policy.allows("backup.example")
    assert parse_policy("version: STSv2\nmode: enforce") is None
    assert parse_policy("version: STSv1\nmode: sometimes\nmax_age: 1") is None


def test_fetcher_only_downloads_when_the_txt_record_says_so_and_caches() -> None:
    downloads: list[str] = []

    class Fetcher(HttpsPolicyFetcher):
        def _download(self, domain: str) -> str:
            downloads.append(domain)
            return "version: STSv1\nmode: enforce\nmx: mx.corp.example\nmax_age: 600\n"

    now = [0.0]
    resolver = StubResolver(txt_records={"_mta-sts.corp.example": ["v=STSv1; id=20260101"]})
    fetcher = Fetcher(resolver, clock=lambda: now[0])
    assert fetcher.fetch("plain.example") is None
    assert fetcher.fetch("corp.example") == StsPolicy("enforce", ("mx.corp.example",), 600)
    fetcher.fetch("corp.example")
    now[0] = 601
    fetcher.fetch("corp.example")
    assert downloads == ["corp.example", "corp.example"]


def test_a_refusing_mx_is_skipped_for_the_next_one() -> None:
    """127.0.0.2 has nothing listening (the server binds 127.0.0.1 only): the lower
    preference host gets the message."""
    handler = ScriptedHandler()
    with smtp_server(handler) as (host, port):
        resolver = StubResolver(mx_records={"corp.example": [(10, "127.0.0.2"), (20, host)]})
        transport = MxTransport(resolver=resolver, fetcher=StubFetcher(), port=port)

        async def go() -> Outcome:
            result = await transport.deliver(
                Envelope("b@send.example", ("ann@corp.example",), b"Subject: x\r\n\r\nhi\r\n")
            )
            await transport.close()
            return result.of("ann@corp.example").outcome

        assert asyncio.run(go()) is Outcome.ACCEPTED
    assert [r.rcpt for r in handler.received] == [["ann@corp.example"]]
