"""The A/B statistics on simulated responses of known rates (seeded): both deciders pick
the true winner when there is one and, when there is none, declare one rarely (the
z-test's family-wise error stays near alpha despite three comparisons)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import literal, select

from postwise.campaigns import abtest
from postwise.storage.database import Database


def simulate(rng: random.Random, rates: list[float], n: int) -> list[abtest.Arm]:
    keys = "ABCD"
    return [
        abtest.Arm(keys[i], n, sum(rng.random() < r for _ in range(n))) for i, r in enumerate(rates)
    ]


@pytest.mark.parametrize("method", ["ztest", "bayes"])
def test_a_real_winner_is_found_and_a_tie_rarely_declared(method: str) -> None:
    rng = random.Random(7)
    trials = 60
    right = 0
    for t in range(trials):
        arms = simulate(rng, [0.10, 0.10, 0.16, 0.10], 1500)
        d = (
            abtest.decide_bayes(arms, "click_rate", seed=t, draws=1500)
            if method == "bayes"
            else abtest.decide(arms, "click_rate", "ztest")
        )
        right += d.winner == "C"
    assert right / trials >= 0.9
    false = 0
    for t in range(trials * 2):
        arms = simulate(rng, [0.10, 0.10, 0.10, 0.10], 1500)
        d = (
            abtest.decide_bayes(arms, "click_rate", seed=t, draws=1500)
            if method == "bayes"
            else abtest.decide(arms, "click_rate", "ztest")
        )
        false += d.winner is not None
    assert false / (trials * 2) <= 0.08


def test_small_differences_on_small_samples_are_not_winners() -> None:
    arms = [abtest.Arm("A", 200, 20), abtest.Arm("B", 200, 26)]
    for method in ("ztest", "bayes"):
        d = abtest.decide(arms, "open_rate", method)
        assert d.winner is None and d.detail["leader"] == "B"
    assert abtest.with_fallback(d, "send_a", "A") == "A"
    assert abtest.with_fallback(d, "pick_highest", "A") == "B"
    assert abtest.with_fallback(d, "send_nothing", "A") is None


def test_revenue_per_recipient_uses_means() -> None:
    rng = random.Random(3)

    def arm(key: str, buy: float, n: int = 3000) -> abtest.Arm:
        values = [rng.uniform(50, 150) if rng.random() < buy else 0.0 for _ in range(n)]
        return abtest.Arm(
            key, n, sum(v > 0 for v in values), sum(values), sum(v * v for v in values)
        )

    d = abtest.decide([arm("A", 0.02), arm("B", 0.05)], "revenue_per_recipient", "ztest")
    assert d.winner == "B"
    assert d.arms[1]["ci"][0] < d.arms[1]["value"] < d.arms[1]["ci"][1]


def test_wilson_interval_holds_the_rate_and_stays_in_bounds() -> None:
    lo, hi = abtest.wilson(0, 50)
    assert lo == 0.0 and 0 < hi < 0.1
    lo, hi = abtest.wilson(30, 100)
    assert lo < 0.3 < hi and hi - lo < 0.2


def test_holm_rejects_in_order_and_stops() -> None:
    assert abtest.holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert abtest.holm([0.001, 0.02, 0.04], 0.05) == [True, True, True]


@given(
    contact=st.integers(min_value=1, max_value=2**40),
    campaign=st.integers(min_value=1, max_value=2**31),
)
def test_bucket_is_in_range(contact: int, campaign: int) -> None:
    assert 0 <= abtest.bucket(contact, campaign) < abtest.BUCKETS


def test_the_split_is_even_and_independent_between_campaigns() -> None:
    ids = range(1, 40_001)
    share = sum(abtest.bucket(c, 5) < 2000 for c in ids) / len(ids)
    assert 0.19 < share < 0.21
    both = sum(abtest.bucket(c, 5) < 5000 and abtest.bucket(c, 6) < 5000 for c in ids) / len(ids)
    assert 0.24 < both < 0.26
    assert abtest.cuts(0.2, [1, 1]) == [1000, 2000]
    assert abtest.variant_of(1, 5, 1.0, ["A", "B"], [1, 1]) in ("A", "B")


def test_sql_bucket_equals_python_bucket(db: Database) -> None:
    ids = [1, 2, 3, 999, 123_456_789, 2**40]
    with db.system() as s:
        got = [s.scalar(select(abtest.bucket_sql(literal(c), 77))) for c in ids]
    assert got == [abtest.bucket(c, 77) for c in ids]
