from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from postwise.contacts import actions, lists
from postwise.contacts.attributes import define_attribute
from postwise.contacts.emails import normalize_email
from postwise.contacts.freemail import free_mail_domains, is_free_mail
from postwise.core.errors import Conflict, ValidationFailed
from postwise.storage.database import Database
from postwise.storage.tables import Company, Consent, ContactChange
from postwise.workspaces.actions import create_workspace


@pytest.fixture
def ws(db: Database) -> int:
    with db.system() as s:
        return create_workspace(s, "Acme").workspace_id


def test_free_mail_list_is_large_and_knows_the_big_providers() -> None:
    assert len(free_mail_domains()) > 5000
    for domain in ("gmail.com", "outlook.com", "yahoo.com", "gmx.de", "web.de", "icloud.com"):
        assert is_free_mail(domain)
    assert not is_free_mail("siemens.com")


def test_email_domain_is_lowercased_and_idna_encoded_local_part_kept() -> None:
    assert normalize_email(" Jane.Doe@Example.COM ").address == "Jane.Doe@example.com"
    assert normalize_email("jörg@Bücher.de").address == "jörg@xn--bcher-kva.de"
    with pytest.raises(ValidationFailed) as info:
        normalize_email("jane@@example.com")
    assert info.value.field == "email"


@given(st.emails())
def test_fast_path_agrees_with_full_validator(address: str) -> None:
    from email_validator import validate_email

    full = validate_email(address, check_deliverability=False, allow_smtputf8=True)
    assert normalize_email(address).address == f"{full.local_part}@{full.ascii_domain.lower()}"


def test_upsert_links_business_domains_to_companies_but_not_free_mail(
    db: Database, ws: int
) -> None:
    with db.tenant(ws) as s:
        results = actions.upsert_contacts(
            s,
            [
                {"email": "ann@initech.com", "first_name": "Ann"},
                {"email": "bob@INITECH.com"},
                {"email": "carl@gmail.com"},
            ],
            source="api",
        )
        assert [r.status for r in results] == ["created", "created", "created"]
        ann, bob, carl = (actions.get_contact(s, r.contact_id or 0) for r in results)
        assert ann.company_id is not None and ann.company_id == bob.company_id
        assert carl.company_id is None
        assert s.scalar(select(func.count()).select_from(Company)) == 1


def test_repeating_an_upsert_changes_nothing(db: Database, ws: int) -> None:
    row = {"email": "ann@initech.com", "first_name": "Ann", "country": "de"}
    with db.tenant(ws) as s:
        actions.upsert_contacts(s, [row], source="import")
    with db.tenant(ws) as s:
        before = actions.get_contact_by_email(s, "ann@initech.com").updated_at
        [again] = actions.upsert_contacts(s, [row], source="import")
        assert again.status == "unchanged"
        assert actions.get_contact_by_email(s, "ann@initech.com").updated_at == before
        assert s.scalar(select(func.count()).select_from(ContactChange)) == 1


def test_duplicate_rows_in_one_batch_merge(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        results = actions.upsert_contacts(
            s,
            [{"email": "a@x.io", "first_name": "A"}, {"email": "a@X.IO", "last_name": "Z"}],
            source="api",
        )
        assert results[0].contact_id == results[1].contact_id
        contact = actions.get_contact(s, results[1].contact_id or 0)
        assert (contact.first_name, contact.last_name) == ("A", "Z")


def test_bad_rows_are_rejected_whole_and_good_rows_applied(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        define_attribute(s, "contact", "seats", "number")
        results = actions.upsert_contacts(
            s,
            [
                {"email": "ok@x.io", "attributes": {"seats": "5"}},
                {"email": "bad@x.io", "attributes": {"seats": "many"}},
                {"email": "nope", "first_name": "N"},
                {"email": "u@x.io", "unknown": 1},
            ],
            source="api",
        )
        assert [r.status for r in results] == ["created", "rejected", "rejected", "rejected"]
        assert results[1].errors[0].field == "attributes.seats"
        assert results[2].errors[0].field == "email"
        assert results[3].errors[0].code == "unknown_field"
        assert actions.find_contact_by_email(s, "bad@x.io") is None
        assert actions.get_contact_by_email(s, "ok@x.io").attributes == {"seats": 5}


def test_unsubscribed_contact_cannot_be_resubscribed_by_update(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        contact, _ = actions.upsert_contact(s, {"email": "a@x.io"}, source="api")
        actions.set_status(s, contact.id, "unsubscribed", source="system")
        [result] = actions.upsert_contacts(
            s, [{"email": "a@x.io", "status": "subscribed"}], source="import"
        )
        assert result.status == "rejected"
        assert result.errors[0].code == "status_locked"


def test_create_conflicts_and_email_change_relinks_company(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        contact = actions.create_contact(s, {"email": "a@initech.com"}, source="api")
        with pytest.raises(Conflict):
            actions.create_contact(s, {"email": "a@INITECH.com"}, source="api")
        updated = actions.update_contact(s, contact.id, {"email": "a@gmail.com"}, source="api")
        assert updated.company_id is None


def test_double_opt_in_keeps_consent_and_confirmation(db: Database, ws: int) -> None:
    with db.tenant(ws) as s:
        contact = actions.create_contact(s, {"email": "a@x.io"}, source="api")
        newsletter = lists.create_list(s, {"name": "Newsletter", "double_opt_in": True})
        consent = lists.ConsentInput("form", ip="203.0.113.9", text="Send me the newsletter")
        membership = lists.subscribe(s, newsletter.id, contact.id, consent)
        assert membership.status == "pending"
        lists.confirm(s, newsletter.id, contact.id)
        record = s.scalars(select(Consent)).one()
        assert record.ip == "203.0.113.9" and record.confirmed_at is not None
        assert lists.list_counts(s, newsletter.id)["subscribed"] == 1
        lists.unsubscribe(s, newsletter.id, contact.id, source="api")
        again = lists.subscribe(s, newsletter.id, contact.id, lists.ConsentInput("import"))
        assert again.status == "unsubscribed"


def test_search_treats_wildcards_literally_and_refuses_forged_cursors(
    db: Database, ws: int
) -> None:
    from postwise.core.pagination import decode_cursor, encode_cursor

    with db.tenant(ws) as s:
        actions.upsert_contacts(s, [{"email": "a_b@x.io"}, {"email": "axb@x.io"}], source="api")
        assert [c.email for c in actions.search_contacts(s, q="a_b").items] == ["a_b@x.io"]
        assert actions.search_contacts(s, q="%").items == []
    assert decode_cursor(encode_cursor(42)) == 42
    for forged in (encode_cursor(2**64), encode_cursor(-1), "not-a-cursor"):
        with pytest.raises(ValidationFailed):
            decode_cursor(forged)
