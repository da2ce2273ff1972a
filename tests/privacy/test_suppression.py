"""The suppression list: addresses, domains with their subdomains, erasure hashes, batches."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from postwise.contacts.lists import ConsentInput
from postwise.core.errors import Conflict, ValidationFailed
from postwise.privacy import suppression
from postwise.privacy.hashing import AddressHasher
from postwise.privacy.suppression import (
    INVALID_ADDRESS,
    add_suppression,
    domain_chain,
    is_suppressed,
    list_suppressions,
    record_erasure_hash,
    remove_suppression,
    suppressed_among,
)
from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace


def test_address_entries_match_any_case_and_spelling(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    ws = workspaces[0].workspace_id
    with db.tenant(ws) as s:
        row = add_suppression(s, hasher=hasher, email=" Jane.Doe@Example.COM ", reason="bounced")
        assert (row.kind, row.value, row.reason) == ("address", "jane.doe@example.com", "bounced")
        again = add_suppression(s, hasher=hasher, email="jane.doe@example.com")
        assert again.id == row.id and again.reason == "bounced"
    with db.tenant(ws) as s:
        hit = is_suppressed(s, "JANE.DOE@example.com", hasher=hasher)
        assert hit is not None and (hit.kind, hit.reason) == ("address", "bounced")
        assert is_suppressed(s, "john.doe@example.com", hasher=hasher) is None


def test_domain_entries_cover_subdomains_but_not_lookalikes(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    ws = workspaces[0].workspace_id
    with db.tenant(ws) as s:
        add_suppression(s, hasher=hasher, domain="https://www.Corp.Example/", reason="manual")
    with db.tenant(ws) as s:
        for covered in ("a@corp.example", "b@eu.corp.example", "c@x.eu.corp.example"):
            hit = is_suppressed(s, covered, hasher=hasher)
            assert hit is not None and (hit.kind, hit.value) == ("domain", "corp.example")
        for free in ("d@notcorp.example", "e@corp.example.org"):
            assert is_suppressed(s, free, hasher=hasher) is None
        with pytest.raises(ValidationFailed):
            is_suppressed(s, "f@example", hasher=hasher)
    assert domain_chain("x.eu.corp.example") == (
        "x.eu.corp.example",
        "eu.corp.example",
        "corp.example",
    )


def test_hash_entries_match_only_under_their_key(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    ws = workspaces[0].workspace_id
    digest = hasher.hash("Gone@Example.com")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hasher.hash("gone@example.COM")
    with db.tenant(ws) as s:
        record_erasure_hash(s, digest)
    with db.tenant(ws) as s:
        hit = is_suppressed(s, "gone@example.com", hasher=hasher)
        assert hit is not None and (hit.kind, hit.reason) == ("address_hash", "erased")
        other_key = AddressHasher.from_secret(b"another installation")
        assert is_suppressed(s, "gone@example.com", hasher=other_key) is None
        # Re-adding the erased address does not store it in clear.
        row = add_suppression(s, hasher=hasher, email="gone@example.com", reason="manual")
        assert (row.kind, row.value) == ("address_hash", digest)
        with pytest.raises(Conflict) as info:
            remove_suppression(s, row.id)
        assert info.value.code == "erasure_suppression"


def test_batch_check_answers_in_one_query_per_chunk(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    ws = workspaces[0].workspace_id
    with db.tenant(ws) as s:
        add_suppression(s, hasher=hasher, email="bounced@a.example", reason="bounced")
        add_suppression(s, hasher=hasher, domain="blocked.example", reason="spamtrap")
        record_erasure_hash(s, hasher.hash("erased@a.example"))
    emails = [f"user{i}@a.example" for i in range(1200)]
    emails += ["Bounced@A.example", "x@mx.blocked.example", "erased@a.example", "not-an-address"]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.tenant(ws) as s:
            result = suppressed_among(s, emails, hasher=hasher)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert result == {
        "Bounced@A.example": "bounced",
        "x@mx.blocked.example": "spamtrap",
        "erased@a.example": "erased",
        "not-an-address": INVALID_ADDRESS,
    }
    selects = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) == -(-1203 // suppression.BATCH)


def test_most_specific_entry_wins_and_workspaces_are_apart(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    a, b = (w.workspace_id for w in workspaces)
    with db.tenant(a) as s:
        add_suppression(s, hasher=hasher, domain="corp.example", reason="manual")
        add_suppression(s, hasher=hasher, email="ann@corp.example", reason="complained")
    with db.tenant(a) as s:
        hit = is_suppressed(s, "ann@corp.example", hasher=hasher)
        assert hit is not None and hit.reason == "complained"
    with db.tenant(b) as s:
        assert is_suppressed(s, "ann@corp.example", hasher=hasher) is None
        assert suppressed_among(s, ["ann@corp.example"], hasher=hasher) == {}


def test_listing_filters_and_pages(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    ws = workspaces[0].workspace_id
    with db.tenant(ws) as s:
        for i in range(5):
            add_suppression(s, hasher=hasher, email=f"p_{i}@list.example", reason="bounced")
        add_suppression(s, hasher=hasher, domain="list.example")
    with db.tenant(ws) as s:
        first = list_suppressions(s, kind="address", limit=3)
        assert [r.value for r in first.items] == [f"p_{i}@list.example" for i in range(3)]
        rest = list_suppressions(s, kind="address", limit=3, cursor=first.next_cursor)
        assert len(rest.items) == 2 and rest.next_cursor is None
        assert [r.kind for r in list_suppressions(s, q="LIST.example").items].count("domain") == 1
        # '_' in a query is a literal, not a LIKE wildcard.
        assert len(list_suppressions(s, q="p_1").items) == 1
        with pytest.raises(ValidationFailed):
            list_suppressions(s, kind="nope")
        with pytest.raises(ValidationFailed):
            add_suppression(s, hasher=hasher, email="x@y.example", reason="erased")
        with pytest.raises(ValidationFailed):
            add_suppression(s, hasher=hasher, email="x@y.example", domain="y.example")


def test_readmit_needs_fresh_consent_and_leaves_an_audit_trail(
    db: Database, workspaces: tuple[NewWorkspace, NewWorkspace], hasher: AddressHasher
) -> None:
    from sqlalchemy import select

    from postwise.contacts import actions
    from postwise.storage.tables import Consent, ContactChange

    ws = workspaces[0].workspace_id
    with db.tenant(ws) as s:
        record_erasure_hash(s, hasher.hash("back@again.example"))
        contact, _ = actions.upsert_contact(s, {"email": "back@again.example"}, source="form")
        contact_id = contact.id
    with db.tenant(ws) as s:
        assert is_suppressed(s, "back@again.example", hasher=hasher) is not None
        with pytest.raises(ValidationFailed):
            suppression.readmit(
                s, contact_id, ConsentInput("import", text="yes"), hasher=hasher, requested_by="x"
            )
        with pytest.raises(ValidationFailed):
            suppression.readmit(
                s, contact_id, ConsentInput("form"), hasher=hasher, requested_by="x"
            )
        lifted = suppression.readmit(
            s,
            contact_id,
            ConsentInput("form", ip="192.0.2.1", text="Send me the newsletter"),
            hasher=hasher,
            requested_by="api_key:1",
        )
        assert [(h.kind, h.reason) for h in lifted] == [("address_hash", "erased")]
    with db.tenant(ws) as s:
        assert is_suppressed(s, "back@again.example", hasher=hasher) is None
        consent = s.scalars(select(Consent).where(Consent.contact_id == contact_id)).one()
        assert consent.consent_text == "Send me the newsletter" and consent.list_id is None
        change = s.scalars(select(ContactChange).where(ContactChange.kind == "readmitted")).one()
        assert change.changes["requested_by"] == "api_key:1"
        assert change.changes["consent_id"] == consent.id
