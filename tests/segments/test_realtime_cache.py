"""The per-event costs of real time: the catalog read once per change of the workspace's
segments, open stays read once per job, and opens/clicks that no segment names costing
the pixel and the redirect no segment query at all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from postwise.contacts.actions import upsert_contacts
from postwise.core.settings import Settings
from postwise.segments import catalog, changes, membership, store
from postwise.storage.database import Database
from postwise.storage.tables import Event
from postwise.workspaces.actions import create_workspace
from tests.segments.jobrun import run_due

OPENED = {"email": "opened", "window": {"last": {"days": 7}}}
SENT = {"email": "sent", "window": {"last": {"days": 7}}}


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_c: Any, _cur: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_the_catalog_is_read_again_only_when_a_segment_changes(db: Database) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        first = store.create_segment(s, store.SegmentInput("Openers", OPENED), refresh=False)
        store.create_segment(s, store.SegmentInput("Mailed", SENT), refresh=False)
    with db.tenant(ws) as s:
        assert [x.id for x in catalog.load(s)] == [first.id, first.id + 1]
        with statements(db) as seen:
            catalog.load(s)
        assert len(seen) == 1 and "segments.definition" not in seen[0]  # the stamp only
    with db.tenant(ws) as s:
        store.update_segment(s, first.id, {"status": "paused"})
    with db.tenant(ws) as s:
        assert [x.id for x in catalog.load(s)] == [first.id + 1]
        store.update_segment(s, first.id, {"status": "active", "name": "Readers"})
    with db.tenant(ws) as s:
        assert [x.name for x in catalog.load(s)] == ["Readers", "Mailed"]


def test_a_job_reads_the_contacts_open_stays_once_for_every_segment(db: Database) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        [ann] = upsert_contacts(s, [{"email": "ann@corp.example"}], source="api")
        ids = [
            store.create_segment(s, store.SegmentInput(name, doc), refresh=False).id
            for name, doc in [
                ("A", {"email": "opened"}),
                ("B", {"email": "opened", "window": {"last": {"days": 30}}}),
            ]
        ]
        s.add(
            Event(
                workspace_id=ws,
                contact_id=ann.contact_id,
                type="email",
                name="Email Opened",
                properties={},
                context={},
            )
        )
    with db.tenant(ws) as s:
        catalog.load(s)
        with statements(db) as seen:
            moves = membership.reevaluate(s, {ann.contact_id: {"event:Email Opened"}})
        assert sorted(m.segment_id for m in moves) == ids
        for segment_id in ids:
            assert membership.current_members(s, segment_id) == {ann.contact_id}
    reads = [q for q in seen if q.lstrip().startswith("SELECT")]
    stay_reads = [q for q in reads if "segment_memberships" in q]
    assert len(stay_reads) == 1
    # both segments decide from one fact load: the contact row (its open stays with it)
    # and one read of its events
    assert stay_reads[0] in [q for q in reads if "FROM contacts" in q]
    assert len([q for q in reads if "FROM contacts" in q]) == 1
    assert len([q for q in reads if "FROM events" in q]) == 1


def test_opens_no_segment_names_cost_the_pixel_no_segment_query(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from postwise.api.app import create_app
    from postwise.delivery import outbox
    from postwise.tracking.tokens import TokenKind, TokenSigner

    settings = Settings(data_dir=tmp_path, secret_key="test-secret", environment="test")
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        [ann] = upsert_contacts(s, [{"email": "ann@corp.example"}], source="api")
        store.create_segment(s, store.SegmentInput("Mailed", SENT), refresh=False)
        outbox_ids = outbox.enqueue(
            s, [outbox.NewMessage(email="ann@corp.example", contact_id=ann.contact_id)]
        )
    run_due(db)
    monkeypatch.setattr(changes, "SEEN_SECONDS", 600.0)  # a slow machine must not expire it
    with db.tenant(ws) as s:  # a note seen now: the workspace's segments read no opens
        changes.note(s, [ann.contact_id], ["event:Email Opened"])
    assert not changes.may_matter(ws, "event:Email Opened")
    assert changes.may_matter(ws, "event:Email Sent")
    signer = TokenSigner(settings.resolved_secret_key())
    client = TestClient(create_app(settings.model_copy(update={"database_url": db.url}), db))
    agent = {"user-agent": "Mozilla/5.0 (Windows NT 10.0)"}
    with statements(db) as seen:
        pixel = client.get(f"/o/{signer.sign(TokenKind.OPEN, outbox_ids[0])}", headers=agent)
    assert pixel.status_code == 200
    assert not [q for q in seen if "FROM segments" in q]
    with db.tenant(ws) as s:  # a segment that reads opens is seen at once in this process
        store.create_segment(s, store.SegmentInput("Openers", OPENED), refresh=False)
    assert changes.may_matter(ws, "event:Email Opened")
    with statements(db) as seen:
        pixel = client.get(f"/o/{signer.sign(TokenKind.OPEN, outbox_ids[0])}", headers=agent)
    client.close()
    assert [q for q in seen if "FROM segments" in q]
    with db.system() as s:
        assert s.scalar(select(Event.id).where(Event.name == "Email Opened")) is not None


def test_an_attribute_declared_again_with_another_type_is_parsed_anew(db: Database) -> None:
    from postwise.contacts.attributes import define_attribute
    from postwise.storage.tables import AttributeDefinition

    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        define_attribute(s, "contact", "tier", "number")
        [ann] = upsert_contacts(
            s, [{"email": "ann@corp.example", "attributes": {"tier": 7}}], source="api"
        )
        high = {"field": "contact.attributes.tier", "op": "gt", "value": 3}
        segment = store.create_segment(s, store.SegmentInput("High tier", high), refresh=False)
    with db.tenant(ws) as s:
        [loaded] = catalog.load(s)
        assert loaded.definition.field("contact.attributes.tier").type.value == "number"
    # Another process deletes the declaration and declares it again as text (no ORM event
    # reaches this process; on SQLite the new row even takes the deleted id back).
    table = AttributeDefinition.__table__
    with db.engine.begin() as conn:
        conn.execute(table.delete().where(table.c.workspace_id == ws))
        conn.execute(
            table.insert().values(
                workspace_id=ws, entity="contact", name="tier", type="string", description=""
            )
        )
    with db.tenant(ws) as s:
        assert catalog.load(s) == []  # "gt 3" no longer parses against a text attribute
        assert membership.reevaluate(s, {ann.contact_id: {"field:contact.attributes.tier"}}) == []
        assert membership.current_members(s, segment.id) == set()
    with db.engine.begin() as conn:  # and back to a number: parsed anew and used again
        conn.execute(table.update().where(table.c.workspace_id == ws).values(type="number"))
    with db.tenant(ws) as s:
        [loaded] = catalog.load(s)
        moves = membership.reevaluate(s, {ann.contact_id: {"field:contact.attributes.tier"}})
        assert [m.entered for m in moves] == [[ann.contact_id]]


def test_a_decision_that_moves_nobody_is_two_statements_on_postgresql(postgres_url: str) -> None:
    """The stamp's statement also takes the advisory locks (the segments guessed from
    the last catalog this process saw), then one read decides every segment."""
    db = Database(postgres_url)
    try:
        with db.system() as s:
            ws = create_workspace(s, "Acme").workspace_id
        with db.tenant(ws) as s:
            [ann] = upsert_contacts(s, [{"email": "ann@corp.example"}], source="api")
            for name, doc in [("Openers", OPENED), ("Mailed", SENT)]:
                store.create_segment(s, store.SegmentInput(name, doc), refresh=False)
        with db.tenant(ws) as s:
            catalog.load(s)
        with db.tenant(ws) as s, statements(db) as seen:
            assert membership.reevaluate(s, {ann.contact_id: {"event:Email Opened"}}) == []
        assert len(seen) == 2, seen
        assert "pg_advisory_xact_lock" in seen[0] and "FROM segments" in seen[0]
        assert "FROM contacts" in seen[1] and "FROM events" in seen[1]
        with db.tenant(ws) as s, statements(db) as seen:  # a name no segment reads
            assert membership.reevaluate(s, {ann.contact_id: {"event:Page Viewed"}}) == []
        assert len(seen) == 1 and "pg_advisory" not in seen[0]
    finally:
        db.dispose()
