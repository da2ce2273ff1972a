"""A bounce that arrives after the person was erased must not bring their address back:
the message is noted, its content is dropped, and no record names them. Both databases."""

from __future__ import annotations

from postwise.bounces import intake
from postwise.privacy.erasure import erase_contact
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, InboundMessage
from tests.bounces.scenario import audience, context, dsn, message_id
from tests.privacy.conftest import find_anywhere

ERASED = "ann@corp.example"
KEPT = "bob@corp.example"


def test_a_late_bounce_about_an_erased_person_keeps_nothing_of_them(db: Database) -> None:
    people = audience(db, [ERASED, KEPT])
    ctx = context(db)
    with db.tenant(people.workspace_id) as s:
        erase_contact(s, people.contacts[ERASED], hasher=ctx.hasher, requested_by="ticket 7")
    assert find_anywhere(db, people.workspace_id, (ERASED,)) == []

    late = dsn(ERASED, original_message_id=message_id(people.outbox[ERASED]))
    result = intake.ingest(ctx, late, source="http", workspace_id=people.workspace_id)

    assert result.record_ids == []
    assert find_anywhere(db, people.workspace_id, (ERASED,)) == []
    with db.tenant(people.workspace_id) as s:
        kept = s.get(InboundMessage, result.inbound_id)
        assert kept is not None and kept.raw == b""
        assert kept.unparsed_reason == "about an erased person: content not kept"


def test_a_bounce_about_someone_else_is_recorded_as_usual(db: Database) -> None:
    people = audience(db, [ERASED, KEPT])
    ctx = context(db)
    with db.tenant(people.workspace_id) as s:
        erase_contact(s, people.contacts[ERASED], hasher=ctx.hasher, requested_by="ticket 7")

    bounce = dsn(KEPT, original_message_id=message_id(people.outbox[KEPT]))
    result = intake.ingest(ctx, bounce, source="http", workspace_id=people.workspace_id)

    assert len(result.record_ids) == 1
    with db.tenant(people.workspace_id) as s:
        record = s.get(BounceRecord, result.record_ids[0])
        assert record is not None and record.email == KEPT
        kept = s.get(InboundMessage, result.inbound_id)
        assert kept is not None and kept.raw != b""
