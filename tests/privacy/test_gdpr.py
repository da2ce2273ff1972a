"""Export holds everything about one person; erasure leaves nothing of them but a hash."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from postwise.contacts import actions
from postwise.core.errors import NotFound
from postwise.privacy.erasure import erase_address, erase_contact
from postwise.privacy.export import export_contact
from postwise.privacy.footprint import (
    BELONG_TO_MENTIONED,
    NOT_PERSONAL,
    contact_link,
    linked_tables,
    text_columns,
)
from postwise.privacy.hashing import AddressHasher
from postwise.privacy.suppression import is_suppressed
from postwise.storage.database import Database
from postwise.storage.tables import (
    Base,
    Contact,
    ContactChange,
    Erasure,
    Event,
    Segment,
    Suppression,
)
from postwise.workspaces.actions import NewWorkspace
from tests.privacy.conftest import (
    ADA,
    ADA_OLD,
    FIRST,
    LAST,
    NEEDLES,
    PHONE,
    find_anywhere,
    seed,
    text_of,
)

# The tables the seed fills for Ada; a new contact-linked table must be added to the seed.
SEEDED_LINKED = {
    "analytics_first_seen",
    "bounce_records",
    "campaign_attributions",
    "campaign_recipients",
    "contact_engagement",
    "consents",
    "contact_changes",
    "enrollments",
    "events",
    "identities",
    "list_memberships",
    "outbox",
    "segment_memberships",
}


def test_every_table_is_either_searched_or_declared_free_of_personal_data() -> None:
    names = {t.name for t in Base.metadata.sorted_tables}
    assert set(NOT_PERSONAL) <= names
    assert set(BELONG_TO_MENTIONED) <= names
    linked = {t.name for t in linked_tables()}
    assert linked == SEEDED_LINKED, "seed the new contact-linked table in tests/privacy"
    for table in Base.metadata.sorted_tables:
        if table.name in NOT_PERSONAL:
            assert contact_link(table) is None, f"{table.name} links to contacts"
            continue
        # Mentions are searched per workspace, so a table without one cannot be swept.
        assert "workspace_id" in table.columns or not text_columns(table), table.name


def test_export_holds_every_row_of_the_person_and_nothing_of_others(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    a, b = (w.workspace_id for w in workspaces)
    seeded = seed(db, a, b)
    with db.tenant(a) as s:
        document = export_contact(s, seeded.ada, hasher=hasher)
    json.dumps(document)  # JSON-ready as is
    assert document["contact"]["email"] == ADA
    assert (document["contact"]["first_name"], document["contact"]["phone"]) == (FIRST, PHONE)
    assert document["company"]["domain"] == "analytical.example"
    assert set(document["addresses"]) == {ADA.lower(), ADA_OLD}
    records = document["records"]
    assert set(records) == SEEDED_LINKED | set(BELONG_TO_MENTIONED)
    for name in SEEDED_LINKED | set(BELONG_TO_MENTIONED):
        assert records[name], f"export has no {name} rows"
    assert len(records["consents"]) == 3  # the whole history, not the latest
    assert {c["kind"] for c in records["contact_changes"]} >= {"created", "updated", "unsubscribed"}
    assert [c["changes"]["email"] for c in records["contact_changes"] if c["kind"] == "updated"]
    assert {e["name"] for e in records["events"]} == {
        "Viewed pricing", "Home", "Form submitted", "segment.entered"
    }  # fmt: skip
    assert [m["segment_id"] for m in records["segment_memberships"]] == [
        e["properties"]["segment_id"] for e in records["events"] if e["type"] == "segment"
    ]
    assert {m["list"] for m in document["lists"]} == {"News", "Events"}
    assert all(m["consent"]["ip"] == "198.51.100.7" for m in document["lists"])
    assert [r["payload"]["to"] for r in records["jobs"]] == [ADA]
    assert "Welcome" in records["captured_messages"][0]["raw"]
    assert {(x["kind"], x["value"]) for x in document["suppressions"]} == {("address", ADA.lower())}
    text = json.dumps(document).lower()
    for stranger in ("bob@analytical.example", "invited colleague", "anon-bob"):
        assert stranger not in text
    assert all("workspace_id" not in row for rows in records.values() for row in rows)


def test_erasure_leaves_nothing_but_the_hash(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    a, b = (w.workspace_id for w in workspaces)
    seeded = seed(db, a, b)
    assert find_anywhere(db, a, NEEDLES)  # the scan does see the seeded data
    with db.tenant(a) as s:
        before = {r.id: r.value for r in s.scalars(select(Suppression)) if r.kind != "address"}
        receipt = erase_contact(s, seeded.ada, hasher=hasher, requested_by="api_key:7")

    assert find_anywhere(db, a, NEEDLES) == []
    # The receipt and the audit row say what was done and nothing about whom.
    receipt_text = json.dumps(receipt.as_dict()).lower()
    audit_text = ""
    with db.tenant(a) as s:
        audit = s.scalars(select(Erasure)).one()
        audit_text = text_of([audit.requested_by, audit.deleted, audit.redacted]).lower()
        after = {r.id: r for r in s.scalars(select(Suppression))}
    for needle in (*NEEDLES, "analytical"):
        assert needle.lower() not in receipt_text
        assert needle.lower() not in audit_text
    assert receipt.contact_ids == [seeded.ada] == audit.former_contact_ids
    assert receipt.deleted["contacts"] == 1 and receipt.deleted["consents"] == 3
    assert receipt.deleted["events"] == 4 and receipt.deleted["jobs"] == 1  # + segment.entered
    assert receipt.deleted["segment_memberships"] == 1
    with db.tenant(a) as s:  # Ada's stay is gone and no longer counted
        assert [seg.member_count for seg in s.scalars(select(Segment))] == [0]
    assert receipt.deleted["captured_messages"] == 1 and receipt.deleted["suppressions"] == 1
    assert receipt.redacted == {"events": 1}
    # Only hex hashes stand in for the two addresses; the domain entry is untouched.
    new = {i: r for i, r in after.items() if i not in before}
    assert sorted(new) == receipt.suppression_ids and len(new) == 2
    for row in new.values():
        assert (row.kind, row.reason, row.note) == ("address_hash", "erased", "")
        assert re.fullmatch(r"[0-9a-f]{64}", row.value)
    assert {r.value for i, r in after.items() if i in before} == set(before.values())
    with db.tenant(a) as s:
        for address in (ADA, ADA.upper(), ADA_OLD):
            hit = is_suppressed(s, address, hasher=hasher)
            assert hit is not None and hit.kind == "address_hash"
        # Bob keeps his data; only the mention of Ada in his event is gone.
        bob = actions.get_contact(s, seeded.bob)
        assert bob.first_name == "Bob"
        invite = s.scalars(select(Event).where(Event.contact_id == seeded.bob)).one()
        assert invite.properties == {"invitee": "[erased]", "note": "invited [erased]"}
    # Another workspace's contact with the same address is not touched.
    with db.tenant(b) as s:
        assert actions.get_contact(s, seeded.other_workspace_ada).first_name == FIRST
        assert is_suppressed(s, ADA, hasher=hasher) is None


def test_an_erased_person_may_sign_up_again_but_stays_suppressed(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    a, b = (w.workspace_id for w in workspaces)
    seeded = seed(db, a, b)
    with db.tenant(a) as s:
        erase_contact(s, seeded.ada, hasher=hasher, requested_by="cli")
    with db.tenant(a) as s:
        again, status = actions.upsert_contact(s, {"email": ADA}, source="form")
        assert status == "created" and again.id != seeded.ada
        assert is_suppressed(s, ADA, hasher=hasher) is not None
        history = s.scalars(select(ContactChange).where(ContactChange.contact_id == again.id))
        assert [c.kind for c in history] == ["created"]


def test_erasure_by_address_works_without_a_contact_and_is_repeatable(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    a, b = (w.workspace_id for w in workspaces)
    seed(db, a, b)
    with db.tenant(a) as s:
        first = erase_address(s, ADA.upper(), hasher=hasher, requested_by="dpo")
        assert first.deleted["contacts"] == 1
    with db.tenant(a) as s:
        second = erase_address(s, ADA, hasher=hasher, requested_by="dpo")
        assert second.contact_ids == [] and second.deleted == {} and second.redacted == {}
        # Without the contact only the address asked about is known; its hash is reused.
        assert len(second.suppression_ids) == 1
        assert set(second.suppression_ids) < set(first.suppression_ids)
        stranger = erase_address(s, "never.seen@nowhere.example", hasher=hasher, requested_by="x")
        assert stranger.contact_ids == [] and len(stranger.suppression_ids) == 1
        assert is_suppressed(s, "never.seen@nowhere.example", hasher=hasher) is not None
    assert find_anywhere(db, a, ("never.seen",)) == []


def test_contacts_differing_only_in_case_are_one_mailbox(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    a = workspaces[0].workspace_id
    with db.tenant(a) as s:
        upper, _ = actions.upsert_contact(s, {"email": "Kim@case.example"}, source="api")
        lower, _ = actions.upsert_contact(s, {"email": "kim@case.example"}, source="api")
        kept, _ = actions.upsert_contact(s, {"email": "xkim@case.example"}, source="api")
        ids = sorted([upper.id, lower.id])
    with db.tenant(a) as s:
        receipt = erase_contact(s, ids[0], hasher=hasher, requested_by="x")
        assert receipt.contact_ids == ids
        assert s.scalars(select(Contact.email)).all() == ["xkim@case.example"]
        assert actions.get_contact(s, kept.id).email == "xkim@case.example"


def test_other_workspaces_cannot_export_or_erase(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    a, b = (w.workspace_id for w in workspaces)
    seeded = seed(db, a, b)
    with db.tenant(b) as s:
        with pytest.raises(NotFound):
            export_contact(s, seeded.ada, hasher=hasher)
        with pytest.raises(NotFound):
            erase_contact(s, seeded.ada, hasher=hasher, requested_by="x")
    with db.tenant(a) as s:
        assert actions.get_contact(s, seeded.ada).first_name == FIRST
        assert s.scalar(select(Contact.last_name).where(Contact.id == seeded.ada)) == LAST
