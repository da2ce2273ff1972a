"""Saving segments: validation through the parser, versions, refresh jobs, dependents."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from postwise.core.clock import as_utc, utcnow
from postwise.core.errors import Conflict, NotFound, ValidationFailed
from postwise.segments import catalog, store
from postwise.segments.definition import InvalidSegment
from postwise.storage.database import Database
from postwise.storage.tables import Job
from postwise.workspaces.actions import create_workspace
from tests.segments import seeding
from tests.segments.jobrun import run_due

SENIOR = {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]}
BUYERS = {"event": "Order Completed", "window": {"last": {"days": 30}}}


def _workspace(db: Database, name: str = "Acme") -> int:
    with db.system() as s:
        return create_workspace(s, name).workspace_id


def _refresh_jobs(db: Database) -> list[Job]:
    with db.system() as s:
        return list(s.scalars(select(Job).where(Job.task == store.REFRESH).order_by(Job.id)))


def test_create_validates_and_enqueues_a_refresh_and_its_settling_one(db: Database) -> None:
    ws = _workspace(db)
    before = utcnow()
    with db.tenant(ws) as s:
        segment = store.create_segment(s, store.SegmentInput("Seniors", SENIOR))
        assert (segment.version, segment.member_count, segment.status) == (1, 0, "active")
    jobs = _refresh_jobs(db)
    assert [(j.payload, j.workspace_id) for j in jobs] == [
        ({"segment_id": segment.id, "version": 1}, ws)
    ] * 2
    now_job, settle_job = jobs
    assert as_utc(now_job.run_at) < before + timedelta(seconds=store.SETTLE_SECONDS)
    assert as_utc(settle_job.run_at) >= before + timedelta(seconds=store.SETTLE_SECONDS)


def test_the_settling_refresh_takes_in_what_a_stale_writer_stored_without_a_note(
    db: Database,
) -> None:
    """A writer in another process whose view of the segments predates the save stores an
    event unnoted (tracking's one-statement path); the settling refresh finds it."""
    ws = _workspace(db)
    with db.engine.begin() as conn:
        buyer = seeding.contact(conn, ws, "buyer@acme.example")
    with db.tenant(ws) as s:
        segment_id = store.create_segment(s, store.SegmentInput("Buyers", BUYERS)).id
    run_due(db)  # the refresh now: nobody has bought
    with db.engine.begin() as conn:
        seeding.event(conn, ws, buyer, "Order Completed", utcnow())
    run_due(db)
    with db.tenant(ws) as s:
        assert store.get_segment(s, segment_id).member_count == 0
    run_due(db, now=utcnow() + timedelta(seconds=store.SETTLE_SECONDS + 1))
    with db.tenant(ws) as s:
        assert store.get_segment(s, segment_id).member_count == 1


def test_bad_definitions_are_refused_with_the_path_and_nothing_is_saved(db: Database) -> None:
    ws = _workspace(db)
    bad = {"all": [SENIOR, {"field": "contact.shoe_size", "op": "eq", "value": 42}]}
    with db.tenant(ws) as s, pytest.raises(InvalidSegment) as caught:
        store.create_segment(s, store.SegmentInput("Broken", bad))
    assert caught.value.status == 422
    assert caught.value.field == "all[1].field"
    with db.tenant(ws) as s:
        assert store.list_segments(s) == []
    assert _refresh_jobs(db) == []


def test_names_are_unique_per_workspace_and_checked(db: Database) -> None:
    ws, other = _workspace(db), _workspace(db, "Other")
    with db.tenant(ws) as s:
        store.create_segment(s, store.SegmentInput("Seniors", SENIOR))
    with db.tenant(ws) as s, pytest.raises(Conflict):
        store.create_segment(s, store.SegmentInput("Seniors", BUYERS))
    with db.tenant(ws) as s, pytest.raises(ValidationFailed):
        store.create_segment(s, store.SegmentInput("  ", BUYERS))
    with db.tenant(other) as s:  # another workspace may use the name
        store.create_segment(s, store.SegmentInput("Seniors", SENIOR))


def test_update_bumps_version_only_for_a_new_definition(db: Database) -> None:
    ws = _workspace(db)
    with db.tenant(ws) as s:
        segment_id = store.create_segment(s, store.SegmentInput("Seniors", SENIOR)).id
    with db.tenant(ws) as s:
        renamed = store.update_segment(s, segment_id, {"name": "Senior people"})
        assert (renamed.name, renamed.version) == ("Senior people", 1)
        changed = store.update_segment(s, segment_id, {"definition": BUYERS})
        assert changed.version == 2
        same = store.update_segment(s, segment_id, {"definition": BUYERS})
        assert same.version == 2
    assert [j.payload["version"] for j in _refresh_jobs(db)] == [1, 1, 2, 2]
    with db.tenant(ws) as s, pytest.raises(InvalidSegment):
        store.update_segment(s, segment_id, {"definition": {"all": [{"nope": 1}]}})
    with db.tenant(ws) as s, pytest.raises(ValidationFailed):
        store.update_segment(s, segment_id, {"version": 9})


def test_other_workspaces_segments_are_not_found(db: Database) -> None:
    ws, other = _workspace(db), _workspace(db, "Other")
    with db.tenant(ws) as s:
        segment_id = store.create_segment(s, store.SegmentInput("Seniors", SENIOR)).id
    with db.tenant(other) as s:
        for call in (
            lambda: store.get_segment(s, segment_id),
            lambda: store.update_segment(s, segment_id, {"name": "x"}),
            lambda: store.delete_segment(s, segment_id),
        ):
            with pytest.raises(NotFound):
                call()
        assert store.list_segments(s) == []


def test_segment_references_dependents_and_cycles(db: Database) -> None:
    ws = _workspace(db)
    with db.tenant(ws) as s:
        base = store.create_segment(s, store.SegmentInput("Seniors", SENIOR)).id
        user = store.create_segment(
            s, store.SegmentInput("Senior buyers", {"all": [{"segment": base}, BUYERS]})
        ).id
        top = store.create_segment(s, store.SegmentInput("Top", {"segment": user})).id
        assert [r.id for r in catalog.dependents(s, base)] == [user]
        assert [r.id for r in catalog.dependents(s, base, transitive=True)] == [user, top]
        ordered = [item.id for item in catalog.load(s)]
        assert ordered.index(base) < ordered.index(user) < ordered.index(top)
    with db.tenant(ws) as s, pytest.raises(InvalidSegment) as caught:
        store.update_segment(s, base, {"definition": {"segment": top}})
    assert caught.value.code == "segment_cycle"
    with db.tenant(ws) as s, pytest.raises(Conflict):
        store.delete_segment(s, base)
    # A new definition of the base refreshes the segments that inline it, too.
    with db.tenant(ws) as s:
        store.update_segment(s, base, {"definition": {"all": [SENIOR, BUYERS]}})
    refreshed = [j.payload["segment_id"] for j in _refresh_jobs(db)]
    assert refreshed[-6:] == [base, base, user, user, top, top]  # each now and settling
    with db.tenant(ws) as s:
        store.delete_segment(s, top)
        store.delete_segment(s, user)
        store.delete_segment(s, base)
        assert store.list_segments(s) == []


def test_the_parsed_definition_follows_the_segments_it_inlines(db: Database) -> None:
    ws = _workspace(db)
    with db.tenant(ws) as s:
        base = store.create_segment(s, store.SegmentInput("Seniors", SENIOR))
        user = store.create_segment(s, store.SegmentInput("Users", {"segment": base.id}))
        assert "field:contact.seniority" in catalog.loaded(s, user).triggers
    with db.tenant(ws) as s:
        store.update_segment(s, base.id, {"definition": BUYERS})
    with db.tenant(ws) as s:
        triggers = catalog.loaded(s, store.get_segment(s, user.id)).triggers
        assert "event:Order Completed" in triggers
        assert "field:contact.seniority" not in triggers
