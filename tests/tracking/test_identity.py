"""identify, group and alias through /v1: contacts, companies, the anonymous-id merge,
and workspace isolation of all of it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from postwise.contacts.actions import upsert_contacts
from postwise.contacts.attributes import define_attribute
from postwise.storage.database import Database
from postwise.storage.tables import Company, Contact, ContactChange, Identity
from postwise.workspaces.actions import NewWorkspace
from tests.api.support import snapshot
from tests.tracking.conftest import Tracker, events


def ok(response: Any) -> None:
    assert response.status_code == 200, response.text


def contact(db: Database, workspace_id: int, email: str) -> Contact:
    with db.tenant(workspace_id) as s:
        found = s.scalar(select(Contact).where(Contact.email == email))
        assert found is not None, email
        return found


def merges(db: Database, workspace_id: int) -> list[dict[str, Any]]:
    with db.tenant(workspace_id) as s:
        rows = s.scalars(
            select(ContactChange)
            .where(ContactChange.kind == "identity_merged")
            .order_by(ContactChange.id)
        )
        return [r.changes for r in rows]


def test_identify_maps_traits_to_fields_and_declared_attributes(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    with db.tenant(acme.workspace_id) as s:
        define_attribute(s, "contact", "plan", "string")
    traits = {
        "email": "Ann.Lee@Corp.test", "firstName": "Ann", "lastName": "Lee", "title": "CTO",
        "phone": "+49 30 1234567", "timezone": "Europe/Berlin", "address": {"country": "de"},
        "plan": "enterprise", "favouriteColour": "teal",
    }  # fmt: skip
    ok(tracker.post("/v1/identify", {"userId": "user-42", "traits": traits}))
    ann = contact(db, acme.workspace_id, "Ann.Lee@corp.test")  # the local part keeps its case
    assert (ann.external_id, ann.first_name, ann.last_name, ann.job_title) == (
        "user-42", "Ann", "Lee", "CTO",
    )  # fmt: skip
    assert (ann.phone, ann.timezone, ann.country) == ("+49301234567", "Europe/Berlin", "DE")
    assert ann.attributes == {"plan": "enterprise"}  # undeclared traits are not attributes...
    [event] = events(db, acme.workspace_id)
    assert event.properties["favouriteColour"] == "teal"  # ...but stay with the event
    assert (event.type, event.name, event.contact_id) == ("identify", "Identify", ann.id)


def test_identify_by_a_known_user_id_updates_the_contact(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    ok(tracker.post("/v1/identify", {"userId": "u1", "traits": {"email": "a@corp.test"}}))
    ok(tracker.post("/v1/identify", {"userId": "u1", "traits": {"name": "Ann Marie Lee"}}))
    ok(tracker.post("/v1/identify", {"userId": "u1", "traits": {"email": "ann@corp.test"}}))
    ann = contact(db, acme.workspace_id, "ann@corp.test")
    assert (ann.external_id, ann.first_name, ann.last_name) == ("u1", "Ann", "Marie Lee")
    ok(tracker.post("/v1/track", {"userId": "u1", "event": "Order Completed"}))
    assert events(db, acme.workspace_id)[-1].contact_id == ann.id


def test_an_email_user_id_is_the_email(tracker: Tracker, db: Database, acme: NewWorkspace) -> None:
    ok(tracker.post("/v1/identify", {"userId": "Bob@Corp.test"}))
    bob = contact(db, acme.workspace_id, "Bob@corp.test")
    assert bob.external_id == "Bob@Corp.test"
    ok(tracker.post("/v1/track", {"userId": "Bob@Corp.test", "event": "E"}))
    assert events(db, acme.workspace_id)[-1].contact_id == bob.id


def test_anonymous_history_is_merged_once_and_audited(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    ok(tracker.batch(
        {"type": "page", "anonymousId": "anon-1", "name": "Pricing"},
        {"type": "track", "anonymousId": "anon-1", "event": "Lead Magnet Downloaded"},
        {"type": "page", "anonymousId": "someone-else"},
    ))  # fmt: skip
    assert all(e.contact_id is None for e in events(db, acme.workspace_id))
    identify = {
        "anonymousId": "anon-1", "userId": "u7", "traits": {"email": "cy@corp.test"},
        "messageId": "id-1",
    }  # fmt: skip
    ok(tracker.post("/v1/identify", identify))
    cy = contact(db, acme.workspace_id, "cy@corp.test")
    owners = [(e.anonymous_id, e.contact_id) for e in events(db, acme.workspace_id)]
    assert owners == [
        ("anon-1", cy.id), ("anon-1", cy.id), ("someone-else", None), ("anon-1", cy.id),
    ]  # fmt: skip
    [audit] = merges(db, acme.workspace_id)
    assert audit["anonymous_ids"] == ["anon-1"] and audit["events"] == 2
    with db.tenant(acme.workspace_id) as s:
        [row] = s.scalars(select(Identity))
        assert (row.anonymous_id, row.user_id, row.contact_id) == ("anon-1", "u7", cy.id)
        assert row.merged_at is not None and row.source == "identify"
    before = snapshot(db, acme.workspace_id)
    # Repeating the identify (a retry, or a new messageId) changes nothing.
    ok(tracker.post("/v1/identify", identify))
    assert snapshot(db, acme.workspace_id) == before
    ok(tracker.post("/v1/identify", {**identify, "messageId": "id-2"}))
    assert len(merges(db, acme.workspace_id)) == 1
    # Later activity of the known anonymous id belongs to the contact at once.
    ok(tracker.post("/v1/page", {"anonymousId": "anon-1", "name": "Docs"}))
    assert events(db, acme.workspace_id)[-1].contact_id == cy.id


def test_identify_by_email_alone_merges_the_visitor(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    ok(tracker.post("/v1/page", {"anonymousId": "anon-3"}))
    ok(
        tracker.post(
            "/v1/identify", {"anonymousId": "anon-3", "traits": {"email": "gil@corp.test"}}
        )
    )
    gil = contact(db, acme.workspace_id, "gil@corp.test")
    assert gil.external_id is None
    assert {e.contact_id for e in events(db, acme.workspace_id)} == {gil.id}


def test_a_user_id_without_email_waits_for_one(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    ok(tracker.batch(
        {"type": "page", "anonymousId": "anon-2"},
        {"type": "identify", "anonymousId": "anon-2", "userId": "u9", "traits": {"plan": "x"}},
        {"type": "track", "userId": "u9", "event": "Checkout Started"},
    ))  # fmt: skip
    with db.tenant(acme.workspace_id) as s:
        assert s.scalar(select(Contact.id)) is None
    ok(tracker.post("/v1/identify", {"userId": "u9", "traits": {"email": "dee@corp.test"}}))
    dee = contact(db, acme.workspace_id, "dee@corp.test")
    assert {e.contact_id for e in events(db, acme.workspace_id)} == {dee.id}
    [audit] = merges(db, acme.workspace_id)
    assert audit["anonymous_ids"] == ["anon-2"] and audit["events"] == 3


def test_alias_merges_the_previous_id(tracker: Tracker, db: Database, acme: NewWorkspace) -> None:
    ok(tracker.post("/v1/identify", {"userId": "u3", "traits": {"email": "eve@corp.test"}}))
    ok(tracker.post("/v1/page", {"anonymousId": "old-device"}))
    ok(tracker.post("/v1/alias", {"previousId": "old-device", "userId": "u3"}))
    eve = contact(db, acme.workspace_id, "eve@corp.test")
    assert {e.contact_id for e in events(db, acme.workspace_id)} == {eve.id}
    assert merges(db, acme.workspace_id)[-1]["anonymous_ids"] == ["old-device"]
    ok(tracker.post("/v1/alias", {"previousId": "old-device", "userId": "u3"}))
    assert len(merges(db, acme.workspace_id)) == 1


def test_group_upserts_the_company_and_links_the_contact(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    ok(tracker.post("/v1/identify", {"userId": "u5", "traits": {"email": "fay@gmail.com"}}))
    group = {
        "userId": "u5", "groupId": "org_17",
        "traits": {"name": "Initech", "website": "https://www.initech.test/about", "employees": 120,
                   "industry": "Software"},
    }  # fmt: skip
    ok(tracker.post("/v1/group", group))
    with db.tenant(acme.workspace_id) as s:
        company = s.scalar(select(Company).where(Company.domain == "initech.test"))
        assert company is not None
        assert (company.name, company.employee_count, company.size_band) == (
            "Initech",
            120,
            "51-200",
        )
    fay = contact(db, acme.workspace_id, "fay@gmail.com")
    assert fay.company_id == company.id
    assert events(db, acme.workspace_id)[-1].name == "Group"


def test_a_write_key_never_reaches_another_workspace(
    tracker: Tracker, db: Database, acme: NewWorkspace, zebra: NewWorkspace
) -> None:
    with db.tenant(zebra.workspace_id) as s:
        upsert_contacts(s, [{"email": "zed@corp.test", "external_id": "shared"}], source="api")
    zebra_tracker = Tracker(tracker.client, zebra.write_key)
    ok(zebra_tracker.post("/v1/page", {"anonymousId": "shared-anon", "messageId": "shared-msg"}))
    before = snapshot(db, zebra.workspace_id)
    ok(tracker.batch(
        {"type": "page", "anonymousId": "shared-anon", "messageId": "shared-msg"},
        {"type": "identify", "anonymousId": "shared-anon", "userId": "shared",
         "traits": {"email": "zed@corp.test", "firstName": "Not Zebra's"}},
        {"type": "group", "userId": "shared", "groupId": "corp.test", "traits": {"name": "A"}},
        {"type": "alias", "previousId": "shared-anon", "userId": "shared"},
        {"type": "track", "userId": "shared", "event": "E"},
    ))  # fmt: skip
    assert snapshot(db, zebra.workspace_id) == before
    zed = contact(db, acme.workspace_id, "zed@corp.test")
    assert zed.first_name == "Not Zebra's"
    # Zebra's stored messageId did not make Acme's event a duplicate.
    assert len(events(db, acme.workspace_id)) == 5
    assert {e.contact_id for e in events(db, acme.workspace_id)} == {zed.id}
