"""A burst arriving on parallel connections: whatever the interleaving, nobody of the
burst stays suppressed and the domain gets one block and one alert (both databases;
on PostgreSQL the transactions really overlap)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from postwise.bounces import intake, tying
from postwise.bounces.report import ParsedMessage
from postwise.core import clock
from postwise.storage.database import Database
from postwise.storage.tables import BounceAlert, DomainBlock, Suppression, SuppressionEvent
from tests.bounces.scenario import Audience, audience, context, hard, verp


def test_a_parallel_burst_leaves_nobody_suppressed(db: Database) -> None:
    emails = [f"p{i:03d}@megacorp.example" for i in range(100)]
    people = audience(db, emails)
    ctx = context(db, burst_min=10, burst_ratio=0.2)

    def bounce(email: str) -> list[str]:
        return intake.record_parsed(
            ctx,
            hard(email),
            raw=b"",
            source="smtp",
            envelope=intake.Envelope("", (verp(people.outbox[email]),)),
        ).verdicts

    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = [v for vs in pool.map(bounce, emails[:40]) for v in vs]
    assert len(verdicts) == 40
    with db.tenant(people.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0
        assert s.scalar(select(func.count()).select_from(DomainBlock)) == 1
        assert s.scalar(select(func.count()).select_from(BounceAlert)) == 1


def test_a_suppression_in_flight_when_the_domain_is_marked_is_lifted_too(db: Database) -> None:
    """Deterministic interleaving: bounce 4 has suppressed its address but not committed
    when bounce 5 (filter wording) marks the domain. Bounce 5 must wait for it and lift
    its suppression too, not leave it behind."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time: transactions cannot interleave")
    emails = [f"p{i}@acme-industries.example" for i in range(20)]
    people = audience(db, emails)
    ctx = context(db)
    for email in emails[:3]:
        assert bounce_of(ctx, people, email, hard(email)) == ["suppressed"]
    with ThreadPoolExecutor(max_workers=1) as pool, db.tenant(people.workspace_id) as s:
        sent = tying.Sent(
            people.outbox[emails[3]],
            people.workspace_id,
            people.contacts[emails[3]],
            emails[3],
            "launch",
            "verp",
        )
        outcome = hard(emails[3]).recipients[0]
        record = intake._record(s, ctx, outcome, "bounce", sent, "smtp", None, clock.utcnow())
        assert record is not None and record.verdict == "suppressed"
        wording = hard(emails[4], "5.7.1", filter_wording=True, diagnostic="550 5.7.1 spam")
        later = pool.submit(bounce_of, ctx, people, emails[4], wording)
        time.sleep(1.5)
        assert not later.done(), "the marking bounce must wait for the one in flight"
    assert later.result(timeout=30) == ["kept_filter_block"]
    with db.tenant(people.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0
        lifted = s.scalars(
            select(SuppressionEvent.value).where(SuppressionEvent.action == "lifted")
        ).all()
        assert sorted(lifted) == sorted(emails[:4])


def bounce_of(
    ctx: intake.Context, people: Audience, email: str, parsed: ParsedMessage
) -> list[str]:
    return intake.record_parsed(
        ctx,
        parsed,
        raw=b"",
        source="smtp",
        envelope=intake.Envelope("", (verp(people.outbox[email]),)),
    ).verdicts
