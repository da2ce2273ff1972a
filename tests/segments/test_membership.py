"""Stored membership: full refresh, incremental re-evaluation, events, history, sweep."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from postwise.contacts.actions import delete_contact, update_contact, upsert_contacts
from postwise.contacts.companies import create_company
from postwise.core.clock import utcnow
from postwise.jobs import queue
from postwise.segments import changes, jobs, membership, store
from postwise.storage.database import Database
from postwise.storage.tables import Event, Job, Segment, SegmentMembership
from postwise.workspaces.actions import create_workspace
from tests.segments.jobrun import run_due

SENIOR = {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]}
BUYER = {"event": "Order Completed", "window": {"last": {"days": 30}}}


def _workspace(db: Database, name: str = "Acme") -> int:
    with db.system() as s:
        return create_workspace(s, name).workspace_id


def _contacts(db: Database, ws: int, rows: list[dict[str, Any]]) -> dict[str, int]:
    with db.tenant(ws) as s:
        results = upsert_contacts(s, rows, source="api")
    return {r.email or "": r.contact_id or 0 for r in results}


def _segment(db: Database, ws: int, name: str, definition: dict[str, Any]) -> int:
    with db.tenant(ws) as s:
        return store.create_segment(s, store.SegmentInput(name, definition), refresh=False).id


def _members(db: Database, ws: int, segment_id: int) -> set[int]:
    with db.tenant(ws) as s:
        return membership.current_members(s, segment_id)


def _segment_events(db: Database, ws: int) -> list[tuple[str, int | None, int]]:
    with db.tenant(ws) as s:
        rows = s.scalars(select(Event).where(Event.type == "segment").order_by(Event.id))
        return [(e.name, e.contact_id, e.properties["segment_id"]) for e in rows]


def _event(db: Database, ws: int, contact_id: int, name: str, days_ago: float = 0) -> None:
    at = utcnow() - timedelta(days=days_ago)
    with db.tenant(ws) as s:
        s.add(Event(contact_id=contact_id, type="track", name=name, occurred_at=at))


def _drop_jobs(db: Database) -> None:
    with db.system() as s:
        for job in s.scalars(select(Job)):
            s.delete(job)


def test_refresh_records_entries_exits_and_keeps_history(db: Database) -> None:
    ws = _workspace(db)
    ids = _contacts(
        db,
        ws,
        [
            {"email": "ann@acme.example", "seniority": "director"},
            {"email": "bob@acme.example", "seniority": "vp"},
            {"email": "cat@acme.example", "seniority": "entry"},
        ],
    )
    ann, bob, cat = ids["ann@acme.example"], ids["bob@acme.example"], ids["cat@acme.example"]
    seniors = _segment(db, ws, "Seniors", SENIOR)
    with db.tenant(ws) as s:
        result = membership.refresh(s, seniors)
    assert (result.members, result.entered, result.exited) == (2, 2, 0)
    assert _members(db, ws, seniors) == {ann, bob}
    with db.tenant(ws) as s:
        assert membership.refresh(s, seniors).entered == 0  # nothing moved: nothing written
        row = store.get_segment(s, seniors)
        assert (row.member_count, row.refreshed_at is not None) == (2, True)

    with db.tenant(ws) as s:
        update_contact(s, ann, {"seniority": "entry"}, source="api")
        update_contact(s, cat, {"seniority": "director"}, source="api")
    with db.tenant(ws) as s:
        result = membership.refresh(s, seniors)
    assert (result.members, result.entered, result.exited) == (2, 1, 1)
    with db.tenant(ws) as s:
        update_contact(s, ann, {"seniority": "vp"}, source="api")
        membership.refresh(s, seniors)
        history = membership.history(s, ann)
    assert [(h.name, h.exited_at is None) for h in history] == [
        ("Seniors", True),
        ("Seniors", False),
    ]
    assert _segment_events(db, ws) == [
        ("segment.entered", ann, seniors),
        ("segment.entered", bob, seniors),
        ("segment.entered", cat, seniors),
        ("segment.exited", ann, seniors),
        ("segment.entered", ann, seniors),
    ]


def test_reevaluation_runs_only_the_segments_the_change_can_move(db: Database) -> None:
    ws = _workspace(db)
    ann = _contacts(db, ws, [{"email": "ann@acme.example", "seniority": "director"}])[
        "ann@acme.example"
    ]
    seniors = _segment(db, ws, "Seniors", SENIOR)
    buyers = _segment(db, ws, "Buyers", BUYER)
    _event(db, ws, ann, "Order Completed", days_ago=1)
    with db.tenant(ws) as s:
        moves = membership.reevaluate(s, {ann: {changes.event_key("Order Completed")}})
    # Ann is a senior too, but an order cannot change that: Seniors was not evaluated.
    assert [(m.segment_id, m.entered) for m in moves] == [(buyers, [ann])]
    assert _members(db, ws, seniors) == set()
    with db.tenant(ws) as s:
        membership.reevaluate(s, {ann: {changes.field_key("contact.seniority")}})
        assert store.get_segment(s, seniors).member_count == 1
    assert _members(db, ws, seniors) == {ann}
    with db.tenant(ws) as s:  # a new contact may match anything
        moves = membership.reevaluate(s, {ann: {changes.ANYTHING}})
    assert moves == []


def test_a_committed_change_becomes_one_job_that_moves_the_contact(db: Database) -> None:
    ws = _workspace(db)
    ids = _contacts(db, ws, [{"email": f"p{i}@acme.example"} for i in range(3)])
    _drop_jobs(db)  # no segments yet: the creations above enqueued nothing anyway
    seniors = _segment(db, ws, "Seniors", SENIOR)
    with db.tenant(ws) as s:
        for contact_id in ids.values():
            update_contact(s, contact_id, {"seniority": "vp"}, source="api")
    with db.system() as s:
        [job] = s.scalars(select(Job).where(Job.task == changes.REEVALUATE)).all()
    assert job.workspace_id == ws
    assert job.payload == {
        "contacts": {str(c): ["field:contact.seniority"] for c in sorted(ids.values())}
    }
    assert run_due(db) == 1
    assert _members(db, ws, seniors) == set(ids.values())


def test_no_job_without_active_segments_and_none_for_a_rolled_back_write(db: Database) -> None:
    ws = _workspace(db)
    [ann] = _contacts(db, ws, [{"email": "ann@acme.example"}]).values()
    with db.tenant(ws) as s:
        update_contact(s, ann, {"seniority": "vp"}, source="api")
    seniors = _segment(db, ws, "Seniors", SENIOR)
    with db.tenant(ws) as s:
        store.update_segment(s, seniors, {"status": "paused"})
        update_contact(s, ann, {"seniority": "director"}, source="api")
    with db.tenant(ws) as s:
        store.update_segment(s, seniors, {"status": "active"})
    _drop_jobs(db)
    with pytest.raises(RuntimeError), db.tenant(ws) as s:
        update_contact(s, ann, {"seniority": "entry"}, source="api")
        raise RuntimeError("the request failed after the write")
    with db.system() as s:
        assert s.scalars(select(Job)).all() == []


def test_membership_flows_to_segments_that_use_the_segment(db: Database) -> None:
    ws = _workspace(db)
    ann = _contacts(db, ws, [{"email": "ann@acme.example", "seniority": "entry"}])[
        "ann@acme.example"
    ]
    seniors = _segment(db, ws, "Seniors", SENIOR)
    senior_buyers = _segment(db, ws, "Senior buyers", {"all": [{"segment": seniors}, BUYER]})
    not_senior = _segment(db, ws, "Not senior", {"not": {"segment": seniors}})
    _event(db, ws, ann, "Order Completed")
    with db.tenant(ws) as s:
        for segment_id in (seniors, senior_buyers, not_senior):
            membership.refresh(s, segment_id)
    assert _members(db, ws, not_senior) == {ann}
    with db.tenant(ws) as s:
        update_contact(s, ann, {"seniority": "director"}, source="api")
    run_due(db)
    assert _members(db, ws, seniors) == {ann}
    assert _members(db, ws, senior_buyers) == {ann}
    assert _members(db, ws, not_senior) == set()


def test_account_level_segments_move_the_whole_account(db: Database) -> None:
    ws = _workspace(db)
    with db.tenant(ws) as s:
        create_company(s, {"domain": "bigco.example", "name": "BigCo"})
    ids = _contacts(
        db, ws, [{"email": f"{n}@bigco.example"} for n in ("ann", "bob", "cat")]
        + [{"email": "dan@other.example"}],
    )  # fmt: skip
    pricing = {"event": "Pricing Viewed", "window": {"last": {"days": 7}}}
    hot = _segment(db, ws, "Hot accounts", {"account": {"min_contacts": 2, "where": pricing}})
    _drop_jobs(db)
    _event(db, ws, ids["ann@bigco.example"], "Pricing Viewed")
    with db.tenant(ws) as s:
        membership.reevaluate(s, {ids["ann@bigco.example"]: {"event:Pricing Viewed"}})
    assert _members(db, ws, hot) == set()
    _event(db, ws, ids["bob@bigco.example"], "Pricing Viewed")
    with db.tenant(ws) as s:
        membership.reevaluate(s, {ids["bob@bigco.example"]: {"event:Pricing Viewed"}})
    bigco = {ids[f"{n}@bigco.example"] for n in ("ann", "bob", "cat")}
    assert _members(db, ws, hot) == bigco  # cat did nothing, but her account is hot


def test_deleting_a_member_lowers_the_count(db: Database) -> None:
    ws = _workspace(db)
    ids = _contacts(db, ws, [{"email": f"p{i}@acme.example", "seniority": "vp"} for i in range(3)])
    seniors = _segment(db, ws, "Seniors", SENIOR)
    with db.tenant(ws) as s:
        membership.refresh(s, seniors)
        delete_contact(s, ids["p0@acme.example"])
    with db.tenant(ws) as s:
        assert store.get_segment(s, seniors).member_count == 2
        assert membership.refresh(s, seniors).members == 2


def test_sweep_refreshes_time_dependent_segments_and_reschedules(db: Database) -> None:
    ws = _workspace(db)
    ann = _contacts(db, ws, [{"email": "ann@acme.example", "seniority": "vp"}])["ann@acme.example"]
    _segment(db, ws, "Seniors", SENIOR)
    buyers = _segment(db, ws, "Buyers", BUYER)
    _event(db, ws, ann, "Order Completed", days_ago=29.9)
    with db.tenant(ws) as s:
        membership.refresh(s, buyers)
    assert _members(db, ws, buyers) == {ann}
    _drop_jobs(db)
    now = utcnow()
    with db.system() as s:
        jobs.ensure_sweep_scheduled(s, now=now)
        jobs.ensure_sweep_scheduled(s, now=now)  # once per period, however many workers
        [sweep] = s.scalars(select(Job).where(Job.task == jobs.SWEEP)).all()
    assert sweep.run_at > now
    run_due(db, now=sweep.run_at, tasks={jobs.SWEEP, jobs.SWEEP_WORKSPACE})
    with db.system() as s:
        refreshes = s.scalars(select(Job).where(Job.task == store.REFRESH)).all()
        assert [j.payload["segment_id"] for j in refreshes] == [buyers]  # not Seniors
        next_sweeps = s.scalars(
            select(Job).where(Job.task == jobs.SWEEP, Job.status == "queued")
        ).all()
        assert len(next_sweeps) == 1 and next_sweeps[0].run_at > sweep.run_at
    # Half a day later the order is more than 30 days old: a refresh notices.
    later = now + timedelta(days=0.5)
    with db.tenant(ws) as s:
        result = membership.refresh(s, buyers, now=later)
    assert (result.members, result.exited) == (0, 1)


def test_paused_and_deleted_segments_are_left_alone_by_refresh_jobs(db: Database) -> None:
    ws = _workspace(db)
    _contacts(db, ws, [{"email": "ann@acme.example", "seniority": "vp"}])
    with db.tenant(ws) as s:
        segment = store.create_segment(s, store.SegmentInput("Seniors", SENIOR))
        store.update_segment(s, segment.id, {"status": "paused"})
    run_due(db)
    with db.tenant(ws) as s:
        assert s.scalars(select(SegmentMembership)).all() == []
        assert s.get(Segment, segment.id) is not None
    with db.tenant(ws) as s:
        queue.enqueue(s, store.REFRESH, {"segment_id": 2**40})
    run_due(db)  # a refresh of a segment that is gone is done, not failed


def test_a_csv_import_refreshes_the_active_segments_once(db: Database, tmp_path: Any) -> None:
    from postwise.contacts import import_runs
    from postwise.contacts.importer import ImportOptions

    ws = _workspace(db)
    seniors = _segment(db, ws, "Seniors", SENIOR)
    _drop_jobs(db)
    csv = tmp_path / "people.csv"
    csv.write_text("email,seniority\nann@acme.example,vp\nbob@acme.example,entry\n")
    with db.tenant(ws) as s:
        run_id = import_runs.create_run(
            s, source="cli", filename="people.csv", options=ImportOptions()
        ).id
    import_runs.execute(db.engine, ws, run_id, source=str(csv))
    with db.system() as s:
        refreshes = s.scalars(select(Job).where(Job.task == store.REFRESH)).all()
    assert [j.payload["segment_id"] for j in refreshes] == [seniors]
    run_due(db)
    with db.tenant(ws) as s:
        [ann] = membership.members_page(s, seniors, cursor=None, limit=10).items
    assert ann.email == "ann@acme.example"


def test_concurrent_decisions_about_one_contact_take_turns_on_postgresql(
    postgres_url: str,
) -> None:
    import threading

    from postwise.storage import tenancy

    db = Database(postgres_url)
    try:
        ws = _workspace(db)
        [ann] = _contacts(db, ws, [{"email": "ann@acme.example", "seniority": "vp"}]).values()
        seniors = _segment(db, ws, "Seniors", SENIOR)
        with db.tenant(ws) as s:
            membership.refresh(s, seniors)
        # Neither decision writes anything (Ann is a member already): only the lock can
        # make the second one wait.
        first = db._sessions()
        tenancy.bind(first, ws)
        membership.reevaluate(first, {ann: {"field:contact.seniority"}})  # holds ann's lock
        finished = threading.Event()

        def second() -> None:
            with db.tenant(ws) as s:
                membership.reevaluate(s, {ann: {"field:contact.seniority"}})
            finished.set()

        worker = threading.Thread(target=second)
        worker.start()
        assert not finished.wait(0.5), "the second decision did not wait for the first"
        first.commit()
        first.close()
        assert finished.wait(10)
        worker.join()
        assert _members(db, ws, seniors) == {ann}
        assert _segment_events(db, ws) == [("segment.entered", ann, seniors)]
    finally:
        db.dispose()


def test_a_refresh_and_a_real_time_decision_take_turns_so_the_later_one_wins(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    db = Database(postgres_url)
    try:
        ws = _workspace(db)
        [ann] = _contacts(db, ws, [{"email": "ann@acme.example"}]).values()
        buyers = _segment(db, ws, "Buyers", BUYER)
        # The refresh computes its members (nobody has ordered yet), then pauses before
        # reading the stored ones.
        computed, resume = threading.Event(), threading.Event()
        stored_members = membership.current_members

        def paused(session: Any, segment_id: int, contact_ids: Any = None) -> set[int]:
            computed.set()
            assert resume.wait(20)
            return stored_members(session, segment_id, contact_ids)

        monkeypatch.setattr(membership, "current_members", paused)
        refreshed = threading.Event()

        def refresh() -> None:
            with db.tenant(ws) as s:
                membership.refresh(s, buyers)
            refreshed.set()

        refresher = threading.Thread(target=refresh)
        refresher.start()
        assert computed.wait(20)
        _event(db, ws, ann, "Order Completed")  # Ann orders while the refresh runs
        decided = threading.Event()

        def decide() -> None:
            with db.tenant(ws) as s:
                membership.reevaluate(s, {ann: {"event:Order Completed"}})
            decided.set()

        job = threading.Thread(target=decide)
        job.start()
        # Without the lock the job enters Ann at once and the refresh, finishing with
        # its older answer, takes her out again.
        assert not decided.wait(0.5), "the real-time decision did not wait for the refresh"
        resume.set()
        assert refreshed.wait(20) and decided.wait(20)
        refresher.join()
        job.join()
        assert _members(db, ws, buyers) == {ann}
        assert _segment_events(db, ws) == [("segment.entered", ann, buyers)]
    finally:
        db.dispose()
