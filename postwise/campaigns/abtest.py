"""A/B/n statistics, pure: who is in the test, and whether a variant truly won.

Two deciders, chosen by setting (``POSTWISE_CAMPAIGN_AB_METHOD``) or per campaign:

* ``ztest``: the best observed variant against each other one, two-proportion z-tests
  (pooled), one-sided, Holm-Bonferroni over the k-1 comparisons at ``alpha``: a winner
  only when it beats every other variant after correction. Controls the family-wise
  rate of declaring a false winner.
* ``bayes``: Beta(1 + successes, 1 + failures) posteriors; the probability that each
  variant has the highest rate, by seeded Monte Carlo; a winner only at >= ``threshold``.

Rates are proportions per recipient (opens, clicks, conversions). Revenue per recipient
is not a proportion: it is decided by Welch's t on per-recipient means (ztest) with the
same Holm correction, or by normal posteriors on the means (bayes).

Every result carries each variant's rate and a Wilson interval, so a "no winner" can be
read ("B looked better, but with 200 recipients each that is noise").
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, cast

BUCKETS = 10_000
# A multiplicative hash of (contact, campaign) that SQL computes the same way on both
# backends: integer arithmetic only, every intermediate below 2**63.
_P = 2_147_483_647
_A, _B, _C, _D = 48_271, 16_807, 69_621, 12_345


def bucket(contact_id: int, campaign_id: int) -> int:
    """The contact's place (0..9999) in this campaign's split: stable, independent of
    the contact's neighbours and unrelated between campaigns (two linear steps alone
    left consecutive ids in arithmetic progression; the squarings break that)."""
    h = (contact_id * _A + campaign_id * _B + _D) % _P
    h = h * h % _P
    h = (h * _C + campaign_id) % _P
    return int(h * h % _P % BUCKETS)


def bucket_sql(contact_id: Any, campaign_id: int) -> Any:
    """``bucket`` as a SQL expression (integer arithmetic, every product below 2**63)."""
    h = (cast(contact_id, BigInteger) * _A + (campaign_id * _B + _D)) % _P
    h = h * h % _P
    h = (h * _C + campaign_id) % _P
    return h * h % _P % BUCKETS


def cuts(test_share: float, weights: Sequence[float]) -> list[int]:
    """Upper bucket bounds per variant: variant i takes [cuts[i-1], cuts[i])."""
    total = sum(weights)
    span = round(test_share * BUCKETS)
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(round(span * acc / total))
    return out


def variant_of(
    contact_id: int,
    campaign_id: int,
    test_share: float,
    keys: Sequence[str],
    weights: Sequence[float],
) -> str | None:
    b = bucket(contact_id, campaign_id)
    for key, cut in zip(keys, cuts(test_share, weights), strict=True):
        if b < cut:
            return key
    return None


@dataclass(frozen=True)
class Arm:
    key: str
    recipients: int
    successes: int = 0  # opens, clicks or conversions; unused for revenue
    revenue_sum: float = 0.0
    revenue_sq_sum: float = 0.0


@dataclass
class Decision:
    method: str
    metric: str
    winner: str | None
    significant: bool
    arms: list[dict[str, Any]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "metric": self.metric,
            "winner": self.winner,
            "significant": self.significant,
            "arms": self.arms,
            "detail": self.detail,
        }


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval: honest at small n and near 0 (email rates live there)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def z_test(a: Arm, b: Arm) -> float:
    """One-sided p-value that ``a``'s rate exceeds ``b``'s (pooled two-proportion z)."""
    if a.recipients == 0 or b.recipients == 0:
        return 1.0
    pa, pb = a.successes / a.recipients, b.successes / b.recipients
    pooled = (a.successes + b.successes) / (a.recipients + b.recipients)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.recipients + 1 / b.recipients))
    if se == 0:
        return 1.0
    return 1 - _phi((pa - pb) / se)


def _mean_var(arm: Arm) -> tuple[float, float]:
    n = arm.recipients
    if n == 0:
        return 0.0, 0.0
    mean = arm.revenue_sum / n
    var = max(0.0, (arm.revenue_sq_sum - n * mean * mean) / max(1, n - 1))
    return mean, var


def welch_test(a: Arm, b: Arm) -> float:
    """One-sided p-value that ``a``'s mean revenue exceeds ``b``'s (normal approximation,
    fine at the sizes a campaign test has)."""
    if a.recipients < 2 or b.recipients < 2:
        return 1.0
    (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
    se = math.sqrt(va / a.recipients + vb / b.recipients)
    if se == 0:
        return 1.0
    return 1 - _phi((ma - mb) / se)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm-Bonferroni: which hypotheses are rejected at family-wise level ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] <= alpha / (m - rank):
            rejected[i] = True
        else:
            break
    return rejected


def _value(arm: Arm, metric: str) -> float:
    if arm.recipients == 0:
        return 0.0
    if metric == "revenue_per_recipient":
        return arm.revenue_sum / arm.recipients
    return arm.successes / arm.recipients


def _arms_out(arms: Sequence[Arm], metric: str) -> list[dict[str, Any]]:
    out = []
    for arm in arms:
        row: dict[str, Any] = {
            "key": arm.key,
            "recipients": arm.recipients,
            "value": _value(arm, metric),
        }
        if metric == "revenue_per_recipient":
            mean, var = _mean_var(arm)
            half = 1.959964 * math.sqrt(var / arm.recipients) if arm.recipients else 0.0
            row["ci"] = [mean - half, mean + half]
            row["revenue"] = arm.revenue_sum
        else:
            row["successes"] = arm.successes
            row["ci"] = list(wilson(arm.successes, arm.recipients))
        out.append(row)
    return out


def decide_ztest(arms: Sequence[Arm], metric: str, alpha: float = 0.05) -> Decision:
    best = max(arms, key=lambda a: _value(a, metric))
    others = [a for a in arms if a.key != best.key]
    test = welch_test if metric == "revenue_per_recipient" else z_test
    p_values = [test(best, other) for other in others]
    rejected = holm(p_values, alpha)
    significant = bool(others) and all(rejected)
    return Decision(
        "ztest",
        metric,
        best.key if significant else None,
        significant,
        _arms_out(arms, metric),
        {
            "alpha": alpha,
            "leader": best.key,
            "p_values": {o.key: p for o, p in zip(others, p_values, strict=True)},
        },
    )


def prob_best(
    arms: Sequence[Arm], metric: str, *, draws: int = 20_000, seed: int = 0
) -> dict[str, float]:
    """P(each arm is best) under independent posteriors, by seeded Monte Carlo."""
    rng = random.Random(seed)
    wins = dict.fromkeys((a.key for a in arms), 0)
    if metric == "revenue_per_recipient":
        params = []
        for arm in arms:
            mean, var = _mean_var(arm)
            params.append((mean, math.sqrt(var / arm.recipients) if arm.recipients else 1e9))
        for _ in range(draws):
            samples = [rng.gauss(m, s) for m, s in params]
            wins[arms[samples.index(max(samples))].key] += 1
    else:
        for _ in range(draws):
            samples = [
                rng.betavariate(1 + a.successes, 1 + max(0, a.recipients - a.successes))
                for a in arms
            ]
            wins[arms[samples.index(max(samples))].key] += 1
    return {k: v / draws for k, v in wins.items()}


def decide_bayes(
    arms: Sequence[Arm],
    metric: str,
    threshold: float = 0.95,
    *,
    seed: int = 0,
    draws: int = 20_000,
) -> Decision:
    probs = prob_best(arms, metric, seed=seed, draws=draws)
    leader = max(probs, key=lambda k: probs[k])
    significant = probs[leader] >= threshold
    return Decision(
        "bayes",
        metric,
        leader if significant else None,
        significant,
        _arms_out(arms, metric),
        {"threshold": threshold, "leader": leader, "prob_best": probs},
    )


def decide(arms: Sequence[Arm], metric: str, method: str, **kw: Any) -> Decision:
    if len(arms) < 2:
        raise ValueError("an A/B test needs two or more arms")
    if method == "bayes":
        return decide_bayes(arms, metric, **kw)
    return decide_ztest(arms, metric, **kw)


def with_fallback(decision: Decision, fallback: str, first_key: str) -> str | None:
    """The variant the rest of the audience gets: the winner, else the configured fallback
    (``send_a``: the first variant, ``pick_highest``: the observed leader,
    ``send_nothing``: None)."""
    if decision.winner is not None:
        return decision.winner
    if fallback == "send_a":
        return first_key
    if fallback == "pick_highest":
        return str(decision.detail["leader"])
    return None
