"""Loading the demo into a database: through the actions, in one transaction, with history."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from postwise.contacts.fields import SIZE_BANDS
from postwise.contacts.freemail import is_free_mail
from postwise.contacts.lists import list_counts
from postwise.core.clock import utcnow
from postwise.demo import loader
from postwise.demo.loader import (
    DEMO_NAME,
    DemoResult,
    DemoWorkspace,
    find_demo_workspace,
    load_demo,
)
from postwise.storage.database import Database
from postwise.storage.tables import (
    AttributeDefinition,
    Company,
    Consent,
    Contact,
    ContactChange,
    Event,
    ListMembership,
    MailingList,
    Workspace,
)
from postwise.workspaces.actions import authenticate, create_workspace

DOC_RANGES = ("192.0.2.", "198.51.100.", "203.0.113.")


@pytest.fixture
def small(db: Database) -> DemoResult:
    return load_demo(db, seed=3, contacts=300, companies=30)


def test_small_demo_has_companies_people_and_firmographics(db: Database, small: DemoResult) -> None:
    assert small.counts["contacts"] == 300 and small.counts["companies"] == 30
    with db.tenant(small.workspace_id) as s:
        companies = {c.id: c for c in s.scalars(select(Company))}
        contacts = list(s.scalars(select(Contact)))
        assert len(companies) == 30 and len(contacts) == 300
        assert len({c.industry for c in companies.values()}) >= 5
        assert {c.size_band for c in companies.values()} == set(SIZE_BANDS)
        assert all(c.revenue_band or c.industry == "Government" for c in companies.values())
        for contact in contacts:
            if contact.company_id is None:
                assert is_free_mail(contact.email_domain)
            else:
                assert companies[contact.company_id].domain == contact.email_domain
        assert any(c.company_id is None for c in contacts)
        titled = [c for c in contacts if c.job_title and c.seniority]
        assert len(titled) / len(contacts) > 0.8
        assert all(c.timezone and c.language and c.country for c in contacts)
        declared = {(a.entity, a.name) for a in s.scalars(select(AttributeDefinition))}
        assert ("contact", "birthday") in declared and ("company", "arr") in declared


def test_lists_have_members_backed_by_consent(db: Database, small: DemoResult) -> None:
    with db.tenant(small.workspace_id) as s:
        lists = {m.name: m for m in s.scalars(select(MailingList))}
        assert set(lists) == {
            "Newsletter",
            "Product Updates",
            "Webinar Attendees",
            "Customers",
            "Beta Program",
        }
        assert lists["Newsletter"].double_opt_in
        for name in ("Newsletter", "Product Updates", "Customers"):
            assert list_counts(s, lists[name].id)["subscribed"] > 0
        rows = s.execute(
            select(ListMembership, Consent).join(Consent, Consent.id == ListMembership.consent_id)
        ).all()
        assert len(rows) == small.counts["list_memberships"]
        newsletter = lists["Newsletter"].id
        for membership, consent in rows:
            assert consent.contact_id == membership.contact_id
            assert consent.consent_text
            if consent.source == "form":
                assert consent.ip is not None and consent.ip.startswith(DOC_RANGES)
            if membership.list_id == newsletter and membership.status == "pending":
                assert consent.confirmed_at is None
            elif membership.list_id == newsletter:
                assert consent.confirmed_at is not None
                assert consent.confirmed_at >= consent.recorded_at
        sources = {consent.source for _, consent in rows}
        assert sources == {"form", "import", "api"}


def test_history_is_backdated_and_spread_over_recent_months(
    db: Database, small: DemoResult
) -> None:
    now = utcnow()
    with db.tenant(small.workspace_id) as s:
        for days in (7, 30, 90):
            recent = s.scalar(
                select(func.count()).where(Event.occurred_at >= now - timedelta(days=days))
            )
            assert recent, f"no events in the last {days} days"
        oldest = s.scalar(select(func.min(Contact.created_at)))
        assert oldest is not None and oldest < now - timedelta(days=365)
        created = {
            row.id: row.created_at for row in s.execute(select(Contact.id, Contact.created_at))
        }
        for contact_id, at in s.execute(
            select(ContactChange.contact_id, ContactChange.at).where(
                ContactChange.kind == "created"
            )
        ):
            assert at == created[contact_id]
        assert s.scalar(select(func.max(Event.occurred_at))) <= now
        linked = s.scalar(
            select(func.count()).where(
                Event.contact_id.is_not(None), Event.anonymous_id.is_not(None)
            )
        )
        anonymous = s.scalar(select(func.count()).where(Event.contact_id.is_(None)))
        assert linked and anonymous


def test_accounts_with_three_people_on_pricing_this_week_and_abandoned_carts(
    db: Database, small: DemoResult
) -> None:
    week = utcnow() - timedelta(days=7)
    with db.tenant(small.workspace_id) as s:
        views = s.execute(
            select(Contact.company_id, Contact.id, Event.properties)
            .join(Contact, Contact.id == Event.contact_id)
            .where(Event.name == "Page Viewed", Event.occurred_at >= week)
        )
        people = defaultdict(set)
        for company_id, contact_id, properties in views:
            if company_id is not None and properties["path"] == "/pricing":
                people[company_id].add(contact_id)
        assert sum(len(ids) >= 3 for ids in people.values()) >= 3

        def orders(name: str) -> set[str]:
            rows = s.scalars(select(Event.properties).where(Event.name == name))
            return {p["order_id"] for p in rows}

        assert orders("Checkout Started") - orders("Order Completed")
        totals = [
            p["total"]
            for p in s.scalars(select(Event.properties).where(Event.name == "Order Completed"))
        ]
        assert totals and all(t > 0 for t in totals)


def test_the_demo_is_found_again_and_its_keys_work(db: Database, small: DemoResult) -> None:
    assert find_demo_workspace(db) == DemoWorkspace(small.workspace_id, DEMO_NAME)
    with db.system() as s:
        assert authenticate(s, small.api_key).workspace_id == small.workspace_id
        assert authenticate(s, small.write_key, kind="write").workspace_id == small.workspace_id


def test_a_workspace_merely_named_like_the_demo_is_not_the_demo(db: Database) -> None:
    assert find_demo_workspace(db) is None
    with db.system() as s:
        create_workspace(s, DEMO_NAME)
    assert find_demo_workspace(db) is None


def test_a_failed_load_leaves_nothing_behind(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(loader, "_backdate", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        load_demo(db, contacts=60, companies=8)
    with db.system() as s:
        assert s.scalar(select(func.count()).select_from(Workspace)) == 0
        assert s.scalar(select(func.count()).select_from(Contact)) == 0
    assert find_demo_workspace(db) is None


@pytest.mark.slow
def test_full_size_loads_in_seconds_on_sqlite(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("one full-size load is enough; SQLite is the embedded default")
    started = time.perf_counter()
    result = load_demo(db)
    elapsed = time.perf_counter() - started
    assert elapsed < 60, f"loading the default demo took {elapsed:.1f}s"
    assert result.counts["contacts"] >= 2000 and result.counts["companies"] >= 150
    with db.tenant(result.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == result.counts["contacts"]
        assert s.scalar(select(func.count()).select_from(Event)) == result.counts["events"]
        for mailing_list in s.scalars(select(MailingList)):
            assert list_counts(s, mailing_list.id)["subscribed"] > 0, mailing_list.name
