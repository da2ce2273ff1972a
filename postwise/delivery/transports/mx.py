"""Direct-to-MX delivery: MX look-up, priority order, A/AAAA fallback, STARTTLS, MTA-STS.

DNS and the MTA-STS policy fetch sit behind two small interfaces (``Resolver``,
``PolicyFetcher``) so the logic is tested with stubs; ``DnsResolver`` (dnspython) and
``HttpsPolicyFetcher`` (stdlib HTTPS) are the real ones.

TLS: opportunistic STARTTLS (use it when offered, do not check the certificate) unless
the domain publishes an MTA-STS policy in ``enforce`` mode (RFC 8461): then only MX hosts
matching the policy are used, STARTTLS is required and the certificate must be valid for
the host; failing that the message is deferred, never sent in the clear.

Pace per MX host (``throttle.HostPacer``): open connections and messages per minute per
host, or per shared gateway (``*.mail.protection.outlook.com`` and the like serve many
domains, whose separate per-domain limits would add up at the one gateway).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from postwise.delivery.throttle import HostPacer
from postwise.delivery.transports.base import (
    DeliveryResult,
    Envelope,
    Outcome,
    Phase,
    RecipientResult,
    classify,
    same_for_all,
)
from postwise.delivery.transports.smtp import Server, _Stale, _text, open_connection, transact

if TYPE_CHECKING:
    from aiosmtplib import SMTP


class Resolver(Protocol):
    def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, host) pairs; empty when the domain has no MX records."""
        ...

    def addresses(self, host: str) -> list[str]:
        """A and AAAA addresses of ``host``; empty when it has none."""
        ...

    def txt(self, name: str) -> list[str]: ...


@dataclass(frozen=True)
class StsPolicy:
    mode: str  # enforce | testing | none
    mx: tuple[str, ...]
    max_age: int

    def allows(self, host: str) -> bool:
        """RFC 8461 §4.1: exact names, or ``*.example.com`` matching one extra label."""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            pattern = pattern.rstrip(".").lower()
            if pattern.startswith("*."):
                head, _, rest = host.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


def parse_policy(text: str) -> StsPolicy | None:
    """The policy file (``version: STSv1``, ``mode``, ``mx`` lines, ``max_age``) or None."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        return None
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        return None
    try:
        max_age = int((fields.get("max_age") or ["0"])[0])
    except ValueError:
        return None
    return StsPolicy(mode, tuple(fields.get("mx", [])), max_age)


class PolicyFetcher(Protocol):
    def fetch(self, domain: str) -> StsPolicy | None: ...


class HttpsPolicyFetcher:
    """``_mta-sts.DOMAIN`` TXT says a policy exists; it is read over HTTPS and cached."""

    def __init__(self, resolver: Resolver, clock: Callable[[], float] = time.monotonic) -> None:
        self.resolver = resolver
        self.clock = clock
        self._cache: dict[str, tuple[float, StsPolicy | None]] = {}

    def _download(self, domain: str) -> str:
        import urllib.request

        url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read(64 * 1024).decode("utf-8", "replace"))

    def fetch(self, domain: str) -> StsPolicy | None:
        cached = self._cache.get(domain)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        records = [t for t in self.resolver.txt(f"_mta-sts.{domain}") if t.startswith("v=STSv1")]
        policy: StsPolicy | None = None
        if records:
            try:
                policy = parse_policy(self._download(domain))
            except OSError:
                policy = cached[1] if cached is not None else None  # keep the last known
        ttl = policy.max_age if policy is not None else 3600
        self._cache[domain] = (self.clock() + min(ttl, 86400 * 7), policy)
        return policy


class DnsResolver:
    """dnspython, imported when first used."""

    def __init__(self, lifetime: float = 10.0) -> None:
        self.lifetime = lifetime

    def _query(self, name: str, rdtype: str) -> list[object]:
        import dns.exception
        import dns.resolver

        try:
            return list(dns.resolver.resolve(name, rdtype, lifetime=self.lifetime))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []
        except dns.exception.Timeout:
            raise OSError(f"DNS timeout for {name} {rdtype}") from None

    def mx(self, domain: str) -> list[tuple[int, str]]:
        return [
            (int(r.preference), str(r.exchange).rstrip("."))  # type: ignore[attr-defined]
            for r in self._query(domain, "MX")
        ]

    def addresses(self, host: str) -> list[str]:
        return [str(r) for kind in ("A", "AAAA") for r in self._query(host, kind)]

    def txt(self, name: str) -> list[str]:
        return [
            b"".join(r.strings).decode("ascii", "replace")  # type: ignore[attr-defined]
            for r in self._query(name, "TXT")
        ]


@dataclass
class Route:
    hosts: list[str]
    enforce: bool
    error: RecipientResult | None = None


def route(domain: str, resolver: Resolver, fetcher: PolicyFetcher | None) -> Route:
    """Which hosts to try, in order, and whether TLS is mandatory (pure; stub-tested)."""
    records = sorted(resolver.mx(domain))
    if len(records) == 1 and records[0][1] in ("", "."):
        null = RecipientResult(
            Outcome.REJECTED, 556, f"5.1.10 {domain} accepts no mail (null MX)", Phase.CONNECT
        )
        return Route([], False, null)
    hosts = [host for _, host in records] or ([domain] if resolver.addresses(domain) else [])
    if not hosts:
        gone = RecipientResult(
            Outcome.REJECTED, 550, f"5.1.2 {domain} has no MX, A or AAAA record", Phase.CONNECT
        )
        return Route([], False, gone)
    policy = fetcher.fetch(domain) if fetcher is not None else None
    if policy is not None and policy.mode == "enforce":
        allowed = [h for h in hosts if policy.allows(h)]
        if not allowed:
            refused = RecipientResult(
                Outcome.DEFERRED,
                None,
                f"no MX host of {domain} matches its MTA-STS policy {list(policy.mx)}",
                Phase.CONNECT,
            )
            return Route([], True, refused)
        return Route(allowed, True)
    return Route(hosts, False)


@dataclass
class MxTransport:
    name: str = "mx"
    resolver: Resolver = field(default_factory=DnsResolver)
    fetcher: PolicyFetcher | None = None
    port: int = 25
    local_hostname: str | None = None
    timeout: float = 60.0
    pacer: HostPacer = field(default_factory=lambda: HostPacer(time.monotonic))
    _idle: dict[tuple[str, bool], list[SMTP]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fetcher is None:
            self.fetcher = HttpsPolicyFetcher(self.resolver)

    async def deliver(self, envelope: Envelope) -> DeliveryResult:
        import aiosmtplib

        domain = envelope.rcpt[0].rsplit("@", 1)[-1].lower()
        try:
            plan = await asyncio.to_thread(route, domain, self.resolver, self.fetcher)
        except OSError as exc:
            failure = RecipientResult(Outcome.DEFERRED, None, str(exc), Phase.CONNECT)
            return same_for_all(envelope, self.name, failure)
        if plan.error is not None:
            return same_for_all(envelope, self.name, plan.error)
        last = RecipientResult(Outcome.DEFERRED, None, f"no MX of {domain} answered", Phase.CONNECT)
        for host in plan.hosts:
            key = (host, plan.enforce)
            group = self.pacer.group(host)
            server = Server(
                host,
                self.port,
                tls="starttls" if plan.enforce else "opportunistic",
                validate_certs=plan.enforce,
                timeout=self.timeout,
                local_hostname=self.local_hostname,
            )
            client = await self._slot(key, group)
            try:
                if client is None:
                    self.pacer.opened(group)  # reserved before the await: others see it
                    client = await open_connection(server)
                result = await transact(client, envelope, self.name, host)
            except aiosmtplib.SMTPResponseException as exc:
                self._discard(client, group)
                last = RecipientResult(classify(exc.code), exc.code, _text(exc), Phase.CONNECT)
                if last.outcome is Outcome.REJECTED:
                    break
                continue
            except (_Stale, aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                self._discard(client, group)
                last = RecipientResult(
                    Outcome.DEFERRED, None, f"{host}: {_text(exc)}", Phase.CONNECT
                )
                continue
            if client.is_connected:
                self._idle.setdefault(key, []).append(client)
            else:
                self.pacer.closed(group)
            return result
        return same_for_all(envelope, self.name, last)

    async def _slot(self, key: tuple[str, bool], group: str) -> SMTP | None:
        """Wait for the MX group's pace; a pooled connection (returned) or room for a
        new one (None). At the connection limit an idle connection to another host of
        the same gateway is closed to make room rather than waiting for ever."""
        while True:
            idle = self._idle.setdefault(key, [])
            client = idle.pop() if idle else None
            while client is not None and not client.is_connected:
                self.pacer.closed(group)
                client = idle.pop() if idle else None
            if client is None and self.pacer.at_connection_limit(group):
                self._evict_idle(group)
            wait = self.pacer.wait_time(group, new_connection=client is None)
            if wait <= 0:
                self.pacer.take(group)
                return client
            if client is not None:
                idle.append(client)
            await asyncio.sleep(wait)

    def _evict_idle(self, group: str) -> None:
        for (host, _), clients in self._idle.items():
            if clients and self.pacer.group(host) == group:
                clients.pop(0).close()
                self.pacer.closed(group)
                return

    def _discard(self, client: SMTP | None, group: str) -> None:
        """A connection that failed mid-transaction is not reused (its state is unknown)."""
        if client is not None and client.is_connected:
            client.close()
        self.pacer.closed(group)

    async def close(self) -> None:
        for (host, _), clients in self._idle.items():
            for client in clients:
                try:
                    await client.quit()
                except Exception:
                    client.close()
                self.pacer.closed(self.pacer.group(host))
        self._idle.clear()
