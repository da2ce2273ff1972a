"""The engagement score: the documented formula, machines count nothing, the rollup keeps
touched contacts current, and segments select on ``contact.engagement_score``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from postwise.analytics import engagement, jobs
from postwise.core import clock
from postwise.segments import membership
from postwise.segments import store as segments
from postwise.storage.database import Database
from postwise.storage.tables import Event

from .conftest import World, email_event


def test_score_formula_human_only_and_segment_field(db: Database, world: World) -> None:
    now = clock.utcnow()
    c = world.contacts
    day = timedelta(days=1)
    with db.tenant(world.ws) as s:
        s.add_all(
            [
                email_event(world, c[0], "Email Opened", at=now - 14 * day, machine=False),
                email_event(world, c[0], "Email Clicked", at=now - day, machine=False),
                Event(
                    contact_id=c[0],
                    type="page",
                    name="Pricing",
                    properties={},
                    context={},
                    occurred_at=now,
                    received_at=now,
                ),
                email_event(world, c[1], "Email Opened", at=now - day, machine=True),
                email_event(world, c[1], "Email Clicked", at=now - day, machine=True),
            ]
        )
    with db.tenant(world.ws) as s:
        engagement.rescore(s, [c[0], c[1]], now=now)
        expected = 1.0 * 0.5 + 3.0 * 0.5 ** (1 / 14) + 2.0
        assert engagement.score_of(s, c[0]) == pytest.approx(expected, rel=1e-5)
        assert engagement.score_of(s, c[1]) == 0.0
        seg = segments.create_segment(
            s,
            segments.SegmentInput(
                "Engaged", {"field": "contact.engagement_score", "op": "gt", "value": 1}
            ),
            refresh=False,
        )
        membership.refresh(s, seg.id)
        members = list(membership.current_members(s, seg.id))
        assert members == [c[0]]
        assert engagement.segment_mean(s, seg.id) == pytest.approx(expected, rel=1e-5)


def test_the_rollup_job_rescores_contacts_it_touched(db: Database, world: World) -> None:
    now = clock.utcnow()
    c = world.contacts
    with db.tenant(world.ws) as s:
        s.add(
            email_event(
                world,
                c[2],
                "Email Clicked",
                at=now - timedelta(minutes=5),
                received_at=now - timedelta(minutes=5),
                machine=False,
            )
        )
    with db.tenant(world.ws) as s:
        result = jobs.run_once(s)
        assert result.contacts == frozenset({c[2]})
    with db.tenant(world.ws) as s:
        assert engagement.score_of(s, c[2]) == pytest.approx(3.0, rel=1e-3)


def test_stale_scores_decay_without_touches_through_the_daily_rescore(
    db: Database, world: World
) -> None:
    from sqlalchemy import select

    from postwise.jobs.runner import Worker
    from postwise.storage.tables import ContactEngagement

    now = clock.utcnow()
    c = world.contacts
    with db.tenant(world.ws) as s:
        s.add(email_event(world, c[0], "Email Clicked", at=now - timedelta(days=3), machine=False))
        s.add(email_event(world, c[1], "Email Opened", at=now - timedelta(hours=2), machine=False))
        engagement.rescore(s, [c[0]], now=now - timedelta(days=2))  # scored 2 days ago
        engagement.rescore(s, [c[1]], now=now)  # fresh: not stale
        engagement.rescore(s, [c[2]], now=now - timedelta(days=5))  # 0: nothing to decay
        assert engagement.stale_contacts(s, now=now, limit=10) == [c[0]]
    period = timedelta(seconds=jobs.period_seconds())
    with db.system() as s:
        jobs.ensure_sweep_scheduled(s, now=now - period)
    Worker(db, worker_id="analytics-rescore-test").run_until_idle()
    with db.tenant(world.ws) as s:
        score = engagement.score_of(s, c[0])
        assert score == pytest.approx(engagement.decayed(3.0, timedelta(days=3)), rel=1e-3)
        assert engagement.stale_contacts(s, now=clock.utcnow(), limit=10) == []
        zero = s.scalars(select(ContactEngagement).where(ContactEngagement.contact_id == c[2]))
        assert clock.as_utc(zero.one().scored_at) < now - timedelta(days=4)  # left alone


def test_rescores_notify_segments_on_the_score_field(db: Database, world: World) -> None:
    """A rescore notes ``contact.engagement_score`` for contacts whose score moved, so a
    segment on it gains a contact the rollup scored up and loses one the daily rescore
    decayed, through the worker alone (no full refresh)."""
    import postwise.segments.jobs  # noqa: F401  (registers segments.reevaluate)
    from postwise.jobs.runner import Worker

    now = clock.utcnow()
    c = world.contacts
    with db.tenant(world.ws) as s:
        seg = segments.create_segment(
            s,
            segments.SegmentInput(
                "Engaged", {"field": "contact.engagement_score", "op": "gt", "value": 1}
            ),
        )
        recent = now - timedelta(minutes=5)
        s.add(email_event(world, c[2], "Email Clicked", at=recent, received_at=recent))
        jobs.schedule(s, seconds=0)
    Worker(db, worker_id="analytics-notes-rollup").run_until_idle()
    with db.tenant(world.ws) as s:
        assert list(membership.current_members(s, seg.id)) == [c[2]]  # scored 3 by the rollup

    with db.tenant(world.ws) as s:
        old_click = now - timedelta(days=40)
        s.add(email_event(world, c[0], "Email Clicked", at=old_click))
    with db.tenant(world.ws) as s:
        jobs.run_once(s)  # counted (and scored 0.41 today) before the back-dated score below
        engagement.rescore(s, [c[0]], now=old_click + timedelta(days=1))  # 2.85, stale
    Worker(db, worker_id="analytics-notes-enter").run_until_idle()
    with db.tenant(world.ws) as s:
        assert sorted(membership.current_members(s, seg.id)) == sorted([c[0], c[2]])

    period = timedelta(seconds=jobs.period_seconds())
    with db.system() as s:
        jobs.ensure_sweep_scheduled(s, now=now - period)
    Worker(db, worker_id="analytics-notes-daily").run_until_idle()
    with db.tenant(world.ws) as s:
        assert engagement.score_of(s, c[0]) < 1  # 3 * 0.5 ** (40 / 14) = 0.41
        assert list(membership.current_members(s, seg.id)) == [c[2]]


def test_a_rescore_that_moves_nothing_notes_nothing(db: Database, world: World) -> None:
    from sqlalchemy import func, select

    from postwise.storage.tables import Job

    now = clock.utcnow()
    c = world.contacts
    with db.tenant(world.ws) as s:
        segments.create_segment(
            s,
            segments.SegmentInput(
                "Engaged", {"field": "contact.engagement_score", "op": "gt", "value": 1}
            ),
            refresh=False,
        )
        s.add(email_event(world, c[1], "Email Opened", at=now - timedelta(hours=1), machine=False))
    with db.tenant(world.ws) as s:
        engagement.rescore(s, [c[1]], now=now)
    with db.system() as s:
        reevaluations = select(func.count()).where(Job.task == "segments.reevaluate")
        assert s.scalar(reevaluations) == 1
    with db.tenant(world.ws) as s:
        engagement.rescore(s, [c[1]], now=now)  # same instant: same score
    with db.system() as s:
        assert s.scalar(reevaluations) == 1
