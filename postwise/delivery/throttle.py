"""Pace: how fast, how parallel and how often again mail may go to each destination.

Pure logic with a clock passed in (seconds, monotonic), so tests move time by hand.
State is per process (documented in docs/delivery.md): with W worker processes each
destination may see up to W times its limits, so the defaults are per process and
conservative; the warm-up cap is checked against the database count of the day by the
caller, which makes it global.

- ``Pacer.wait_time(dest)``: seconds until a message to ``dest`` may start (token bucket
  for messages per minute, counter for open connections, and a global bucket);
  ``start``/``finish`` bracket a delivery.
- Adaptive slow-down: a 421/450/451 answer or a dropped connection halves that
  destination's rate (down to ``MIN_RATE``) for ``COOL_DOWN`` seconds; each later success
  wins back 10 % of the way to the configured rate.
- Persisted slow-down: ``set_caps`` caps destinations at a rate per minute, from the
  domains bounce handling marks as blocking (``bounces/filterblock.paced_domains``, read
  by the deliverer every ``CAP_REFRESH`` seconds), so every worker slows down for them.
- ``HostPacer``: direct-to-MX limits per MX host, or per shared gateway (many corporate
  domains share ``*.mail.protection.outlook.com``, ``*.pphosted.com``, ``*.mimecast.com``):
  open connections and messages per minute, used by ``transports/mx.py`` once it knows
  the host, on top of the per-recipient-domain ``Pacer``.
- ``retry_delay``: exponential backoff with jitter; ``expired`` says when to give up.
- ``warmup_cap``: the day's volume cap of a new sending domain or IP.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

MIN_RATE = 1.0  # messages per minute, the floor of adaptive slow-down
COOL_DOWN = 300.0
SLOW_DOWN_CODES = frozenset({421, 450, 451})
CAP_REFRESH = 30.0  # seconds between reads of the persisted per-domain caps


@dataclass(frozen=True)
class Limits:
    connections: int
    per_minute: float


# Big mailbox providers take volume from a known sender; corporate gateways often do not.
PROVIDER_LIMITS: Mapping[str, Limits] = {
    "gmail.com": Limits(10, 1200),
    "googlemail.com": Limits(10, 1200),
    "outlook.com": Limits(8, 600),
    "hotmail.com": Limits(8, 600),
    "live.com": Limits(8, 600),
    "msn.com": Limits(4, 300),
    "yahoo.com": Limits(5, 300),
    "aol.com": Limits(3, 200),
    "icloud.com": Limits(5, 300),
    "me.com": Limits(3, 200),
    "gmx.de": Limits(3, 200),
    "web.de": Limits(3, 200),
}
OTHER_LIMITS = Limits(2, 60)

# Day index (0 = first day of sending) → cap; the last entry holds from then on.
DEFAULT_WARMUP: tuple[int, ...] = (
    200,
    500,
    1000,
    2000,
    5000,
    10000,
    20000,
    40000,
    80000,
    150000,
    300000,
    600000,
)


def warmup_cap(days_since_start: int, schedule: Sequence[int] = DEFAULT_WARMUP) -> int:
    """The most messages a domain or IP in its ``days_since_start``-th day may send."""
    if not schedule:
        raise ValueError("a warm-up schedule needs at least one day")
    return schedule[min(max(days_since_start, 0), len(schedule) - 1)]


def retry_delay(
    attempt: int,
    *,
    base: float = 60.0,
    cap: float = 4 * 3600.0,
    rng: random.Random | None = None,
) -> float:
    """Delay after failed ``attempt`` (1-based): doubling from ``base``, capped, half jittered."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def expired(first_attempt_age: float, give_up_after: float) -> bool:
    """Whether a message first tried ``first_attempt_age`` seconds ago should bounce now."""
    return first_attempt_age >= give_up_after


@dataclass
class _Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self, now: float) -> float:
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


@dataclass
class _Destination:
    limits: Limits
    bucket: _Bucket
    factor: float = 1.0  # share of the configured rate currently allowed
    slowed_until: float = 0.0
    open: int = 0


@dataclass
class Pacer:
    clock: Callable[[], float]
    limits: Mapping[str, Limits] = field(default_factory=lambda: dict(PROVIDER_LIMITS))
    other: Limits = OTHER_LIMITS
    global_per_second: float = 1000.0
    _dests: dict[str, _Destination] = field(default_factory=dict)
    _global: _Bucket | None = None
    _caps: dict[str, float] = field(default_factory=dict)  # messages per minute

    def set_caps(self, caps: Mapping[str, float]) -> None:
        """Cap these destinations' rates (messages per minute); others lose their cap."""
        self._caps = {dest.lower(): max(MIN_RATE, rate) for dest, rate in caps.items()}
        now = self.clock()
        for dest, state in self._dests.items():
            state.bucket.refill(now)
            state.bucket.rate = self._rate(dest, state)
            if dest in self._caps:
                state.bucket.capacity = 1.0
                state.bucket.tokens = min(state.bucket.tokens, 1.0)

    def _rate(self, dest: str, state: _Destination) -> float:
        """Tokens per second now allowed: the configured rate, slowed, under any cap."""
        rate = state.limits.per_minute / 60 * state.factor
        cap = self._caps.get(dest)
        return min(rate, cap / 60) if cap is not None else rate

    def limits_for(self, dest: str) -> Limits:
        return self.limits.get(dest.lower(), self.other)

    def _dest(self, dest: str) -> _Destination:
        state = self._dests.get(dest)
        if state is None:
            limits = self.limits_for(dest)
            rate = limits.per_minute / 60
            # A burst of one connection's worth lets a fresh destination start at once.
            capacity = 1.0 if dest in self._caps else max(1.0, float(limits.connections))
            state = _Destination(limits, _Bucket(rate, capacity, capacity, self.clock()))
            state.bucket.rate = self._rate(dest, state)
            self._dests[dest] = state
        return state

    def _global_bucket(self) -> _Bucket:
        if self._global is None:
            rate = self.global_per_second
            self._global = _Bucket(rate, max(1.0, rate), max(1.0, rate), self.clock())
        return self._global

    def wait_time(self, dest: str) -> float:
        """Seconds until a message to ``dest`` may start; 0 means now (then call ``start``).

        A destination at its connection limit answers a short poll interval: a slot
        frees when another delivery finishes, not at a computable time.
        """
        now = self.clock()
        state = self._dest(dest)
        if state.open >= state.limits.connections:
            return 0.05
        return max(state.bucket.wait(now), self._global_bucket().wait(now))

    def start(self, dest: str) -> None:
        now = self.clock()
        state = self._dest(dest)
        state.bucket.refill(now)
        state.bucket.tokens -= 1
        bucket = self._global_bucket()
        bucket.refill(now)
        bucket.tokens -= 1
        state.open += 1

    def finish(self, dest: str, code: int | None, *, dropped: bool = False) -> None:
        """Record how a delivery to ``dest`` ended (``code`` None: no answer)."""
        now = self.clock()
        state = self._dest(dest)
        state.open = max(0, state.open - 1)
        configured = state.limits.per_minute / 60
        if dropped or code in SLOW_DOWN_CODES:
            state.factor = max(MIN_RATE / 60 / configured, state.factor / 2)
            state.slowed_until = now + COOL_DOWN
        elif now >= state.slowed_until:
            state.factor = 1.0
        elif code is not None and code < 400:
            state.factor = min(1.0, state.factor + 0.1 * (1.0 - state.factor) + 0.01)
        state.bucket.refill(now)
        state.bucket.rate = self._rate(dest, state)

    def rate_of(self, dest: str) -> float:
        """Messages per minute currently allowed to ``dest``."""
        return self._dest(dest).bucket.rate * 60


# MX hosts under these suffixes are one gateway serving many domains: limited together.
SHARED_MX_LIMITS: Mapping[str, Limits] = {
    "mail.protection.outlook.com": Limits(10, 600),
    "pphosted.com": Limits(5, 300),
    "mimecast.com": Limits(5, 300),
    "iphmx.com": Limits(5, 300),
    "messagelabs.com": Limits(5, 300),
    "barracudanetworks.com": Limits(5, 300),
    "google.com": Limits(10, 1200),
    "googlemail.com": Limits(10, 1200),
}
MX_HOST_LIMITS = Limits(4, 240)


def mx_group(host: str, shared: Mapping[str, Limits] = SHARED_MX_LIMITS) -> str:
    """The key an MX host is limited under: its shared gateway's suffix, else itself."""
    host = host.rstrip(".").lower()
    for suffix in shared:
        if host == suffix or host.endswith("." + suffix):
            return suffix
    return host


@dataclass
class HostPacer:
    """Per-MX-group connection count and token bucket (per process, like ``Pacer``).

    ``open`` counts connections held, busy or idle in the transport's pool: a new
    connection may be opened only under the group's limit, a pooled one is reused freely.
    """

    clock: Callable[[], float]
    shared: Mapping[str, Limits] = field(default_factory=lambda: dict(SHARED_MX_LIMITS))
    other: Limits = MX_HOST_LIMITS
    open: dict[str, int] = field(default_factory=dict)
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def group(self, host: str) -> str:
        return mx_group(host, self.shared)

    def limits_for(self, group: str) -> Limits:
        return self.shared.get(group, self.other)

    def _bucket(self, group: str) -> _Bucket:
        bucket = self._buckets.get(group)
        if bucket is None:
            limits = self.limits_for(group)
            burst = max(1.0, float(limits.connections))
            bucket = self._buckets[group] = _Bucket(
                limits.per_minute / 60, burst, burst, self.clock()
            )
        return bucket

    def at_connection_limit(self, group: str) -> bool:
        return self.open.get(group, 0) >= self.limits_for(group).connections

    def wait_time(self, group: str, *, new_connection: bool) -> float:
        """Seconds until a message may go to ``group`` (0: now, then call ``take``)."""
        if new_connection and self.at_connection_limit(group):
            return 0.05
        return self._bucket(group).wait(self.clock())

    def take(self, group: str) -> None:
        bucket = self._bucket(group)
        bucket.refill(self.clock())
        bucket.tokens -= 1

    def opened(self, group: str) -> None:
        self.open[group] = self.open.get(group, 0) + 1

    def closed(self, group: str) -> None:
        self.open[group] = max(0, self.open.get(group, 0) - 1)
