"""Pacing logic with a hand-moved clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postwise.delivery.throttle import (
    MIN_RATE,
    OTHER_LIMITS,
    Limits,
    Pacer,
    expired,
    retry_delay,
    warmup_cap,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sends_in(pacer: Pacer, clock: Clock, dest: str, seconds: float, step: float = 0.01) -> int:
    """How many messages a greedy sender gets through in ``seconds`` of simulated time."""
    sent = 0
    end = clock.now + seconds
    while clock.now < end:
        if pacer.wait_time(dest) == 0:
            pacer.start(dest)
            pacer.finish(dest, 250)
            sent += 1
        else:
            clock.now += step
    return sent


def test_corporate_domains_get_the_conservative_rate_and_providers_more() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    corporate = sends_in(pacer, clock, "corp.example", 60)
    gmail = sends_in(pacer, clock, "gmail.com", 60)
    assert (
        OTHER_LIMITS.per_minute <= corporate <= OTHER_LIMITS.per_minute + OTHER_LIMITS.connections
    )
    assert gmail >= 1000


def test_connection_limit_blocks_until_a_delivery_finishes() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, other=Limits(connections=2, per_minute=6000))
    for _ in range(2):
        assert pacer.wait_time("corp.example") == 0
        pacer.start("corp.example")
    assert pacer.wait_time("corp.example") > 0
    pacer.finish("corp.example", 250)
    clock.now += 1
    assert pacer.wait_time("corp.example") == 0


def test_global_rate_caps_all_destinations_together() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, other=Limits(100, 60_000), global_per_second=10)
    total = sum(sends_in(pacer, clock, f"d{n}.example", 1) for n in range(5))  # 5 s in all
    assert 50 <= total <= 50 + 10  # the rate, plus one bucket's worth of burst


def test_temporary_failures_halve_the_rate_and_successes_win_it_back() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    full = pacer.rate_of("corp.example")
    pacer.start("corp.example")
    pacer.finish("corp.example", 421)
    assert pacer.rate_of("corp.example") == pytest.approx(full / 2)
    pacer.start("corp.example")
    pacer.finish("corp.example", None, dropped=True)
    assert pacer.rate_of("corp.example") == pytest.approx(full / 4)
    for _ in range(200):
        pacer.start("corp.example")
        pacer.finish("corp.example", 250)
    assert pacer.rate_of("corp.example") == pytest.approx(full)


def test_slow_down_never_goes_below_the_floor() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    for _ in range(50):
        pacer.start("corp.example")
        pacer.finish("corp.example", 451)
    assert pacer.rate_of("corp.example") == pytest.approx(MIN_RATE)


def test_cool_down_restores_the_full_rate() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.start("corp.example")
    pacer.finish("corp.example", 450)
    clock.now += 301
    pacer.start("corp.example")
    pacer.finish("corp.example", 550)
    assert pacer.rate_of("corp.example") == pytest.approx(OTHER_LIMITS.per_minute)


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_retry_delay_doubles_within_jitter_and_respects_the_cap(attempt: int, seed: int) -> None:
    delay = retry_delay(attempt, base=60, cap=3600, rng=random.Random(seed))
    ceiling = min(3600, 60 * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_expiry_and_warmup() -> None:
    assert not expired(3600, 7200)
    assert expired(7200, 7200)
    assert [warmup_cap(d, (100, 200, 400)) for d in (0, 1, 2, 30)] == [100, 200, 400, 400]
    with pytest.raises(ValueError, match="at least one day"):
        warmup_cap(0, ())
