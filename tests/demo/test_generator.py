"""The generated audience, checked in memory: shape, realism and determinism."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from postwise.contacts.attributes import AttributeSchema, AttributeType, Entity
from postwise.contacts.fields import SIZE_BANDS, clean_company, clean_contact, size_band_for
from postwise.contacts.freemail import is_free_mail
from postwise.core.errors import ValidationFailed
from postwise.demo import data
from postwise.demo.generator import ATTRIBUTES, HISTORY_DAYS, DemoData, ascii_slug, generate

NOW = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
DOC_RANGES = ("192.0.2.", "198.51.100.", "203.0.113.")


@pytest.fixture(scope="module")
def demo() -> DemoData:
    return generate(seed=7, now=NOW)


def _schema(entity: Entity) -> AttributeSchema:
    types = {a.name: AttributeType(a.type) for a in ATTRIBUTES if a.entity == entity.value}
    return AttributeSchema(entity, types)


def test_default_size_is_a_b2b_audience_over_all_size_bands(demo: DemoData) -> None:
    assert len(demo.contacts) >= 2000
    assert len(demo.companies) >= 150
    assert len({c.industry for c in demo.companies}) >= 5
    assert {size_band_for(c.employee_count) for c in demo.companies} == set(SIZE_BANDS)
    assert len({c.country for c in demo.companies}) >= 10
    assert len({c.domain for c in demo.companies}) == len(demo.companies)
    assert len({c.email for c in demo.contacts}) == len(demo.contacts)


def test_every_record_passes_the_same_validation_as_real_input(demo: DemoData) -> None:
    contact_schema, company_schema = _schema(Entity.CONTACT), _schema(Entity.COMPANY)
    for contact in demo.contacts:
        clean_contact(contact.row(), contact_schema)
    for company in demo.companies:
        clean_company(company.row(), company_schema)


def test_free_mail_people_have_no_company_and_the_rest_work_at_their_domain(
    demo: DemoData,
) -> None:
    free = [c for c in demo.contacts if c.company is None]
    assert 0.05 < len(free) / len(demo.contacts) < 0.12
    assert all(is_free_mail(c.email.split("@")[1]) for c in free)
    for contact in demo.contacts:
        if contact.company is not None:
            assert contact.email.split("@")[1] == contact.company.domain
            assert not is_free_mail(contact.company.domain)


def test_people_have_titles_seniorities_and_fitting_locales(demo: DemoData) -> None:
    business = [c for c in demo.contacts if c.company is not None]
    assert sum(c.job_title is not None for c in business) / len(business) > 0.9
    assert {c.seniority for c in business} >= {"entry", "senior", "manager", "director", "vp"}
    assert {c.seniority for c in business} >= {"c_level", "owner"}
    for contact in demo.contacts:
        country = data.COUNTRY_BY_CODE[contact.country]
        assert contact.timezone in dict(country.timezones)
        assert contact.language in {locale.language for locale in country.locales}


def test_statuses_are_mostly_subscribed_with_a_realistic_remainder(demo: DemoData) -> None:
    statuses = [c.status for c in demo.contacts]
    assert 0.8 < statuses.count("subscribed") / len(statuses) < 0.95
    for status in ("unsubscribed", "bounced", "complained", "pending"):
        assert status in statuses


def test_lists_have_consent_with_documentation_ips_and_ordered_times(demo: DemoData) -> None:
    by_list = defaultdict(list)
    for m in demo.memberships:
        by_list[m.list_name].append(m)
        assert m.recorded_at <= NOW
        if m.source == "form":
            assert m.ip is not None and m.ip.startswith(DOC_RANGES)
        else:
            assert m.ip is None
        if m.confirmed_at is not None:
            assert m.recorded_at <= m.confirmed_at <= NOW
        if m.unsubscribed_at is not None:
            assert (m.confirmed_at or m.recorded_at) <= m.unsubscribed_at <= NOW
    assert set(by_list) == {spec.name for spec in data.LISTS}
    newsletter = by_list[data.NEWSLETTER]
    assert any(m.confirmed_at is None for m in newsletter)  # some never clicked the link
    assert all(m.confirmed_at is None for m in by_list[data.CUSTOMERS])  # single opt-in


def test_history_spans_the_window_and_never_reaches_the_future(demo: DemoData) -> None:
    times = [e.occurred_at for e in demo.events]
    assert max(times) <= NOW
    assert min(times) >= NOW - timedelta(days=HISTORY_DAYS)
    for days in (1, 7, 30, 90):
        assert any(t >= NOW - timedelta(days=days) for t in times)
    names = {e.name for e in demo.events}
    assert names >= {
        "Page Viewed", "Signed Up", "Trial Started", "Product Added", "Checkout Started",
        "Order Completed", "Lead Magnet Downloaded", "Demo Booked", "Webinar Registered",
    }  # fmt: skip
    created = [c.created_at for c in demo.contacts]
    assert min(created) < NOW - timedelta(days=600)
    assert max(created) > NOW - timedelta(days=30)


def test_page_views_carry_page_context_and_some_utm_campaigns(demo: DemoData) -> None:
    pages = [e for e in demo.events if e.name == "Page Viewed"]
    assert all(
        e.type == "page" and e.context["page"]["path"] == e.properties["path"] for e in pages
    )
    paths = {e.properties["path"] for e in pages}
    assert {"/pricing", "/docs"} <= paths
    assert any(p.startswith("/blog/") for p in paths)
    assert any("campaign" in e.context for e in pages)


def test_several_accounts_have_three_people_on_pricing_this_week(demo: DemoData) -> None:
    week = NOW - timedelta(days=7)
    domain = {c.email: c.company_domain for c in demo.contacts}
    visitors = defaultdict(set)
    for e in demo.events:
        company = domain[e.email] if e.email else None
        if company and e.occurred_at >= week and e.properties.get("path") == "/pricing":
            visitors[company].add(e.email)
    hot = [d for d, people in visitors.items() if len(people) >= 3]
    assert 3 <= len(hot) < len(demo.companies) / 4  # several, but not everyone


def test_orders_have_totals_and_some_checkouts_are_abandoned(demo: DemoData) -> None:
    started = {e.properties["order_id"] for e in demo.events if e.name == "Checkout Started"}
    orders = [e for e in demo.events if e.name == "Order Completed"]
    completed = {e.properties["order_id"] for e in orders}
    assert completed < started
    assert len(started - completed) >= 5
    assert all(e.properties["total"] > 0 and e.properties["products"] for e in orders)


def test_browsing_before_sign_up_is_linked_through_the_browser_id(demo: DemoData) -> None:
    created = {c.email: c for c in demo.contacts}
    early = [
        e
        for e in demo.events
        if e.email and e.anonymous_id and e.occurred_at < created[e.email].created_at
    ]
    assert early
    assert all(e.anonymous_id == created[e.email or ""].anonymous_id for e in early)
    assert any(e.email is None and e.anonymous_id for e in demo.events)  # never signed up


def test_attributes_follow_the_lifecycle(demo: DemoData) -> None:
    declared = {a.name for a in ATTRIBUTES if a.entity == "contact"}
    for contact in demo.contacts:
        attributes = contact.attributes
        assert set(attributes) <= declared
        assert attributes["is_customer"] == (
            attributes["lifecycle_stage"] in ("customer", "evangelist")
        )
        if attributes["is_customer"]:
            assert "customer_since" in attributes
        if attributes.get("plan") == "trial":
            assert "trial_ends_at" in attributes
    assert sum("birthday" in c.attributes for c in demo.contacts) > 500
    customers = [c for c in demo.companies if c.customer_since is not None]
    assert customers and all(c.attributes["arr"] > 0 for c in customers)


def test_same_seed_gives_the_same_data_and_another_seed_other_data() -> None:
    first = generate(seed=11, contacts=300, companies=30, now=NOW)
    again = generate(seed=11, contacts=300, companies=30, now=NOW)
    later = generate(seed=11, contacts=300, companies=30, now=NOW + timedelta(days=3))
    other = generate(seed=12, contacts=300, companies=30, now=NOW)
    emails = [c.email for c in first.contacts]
    assert emails == [c.email for c in again.contacts] == [c.email for c in later.contacts]
    assert first.events == again.events
    assert first.memberships == again.memberships
    assert emails != [c.email for c in other.contacts]


def test_impossible_sizes_are_refused() -> None:
    with pytest.raises(ValidationFailed) as info:
        generate(contacts=10, companies=20, now=NOW)
    assert info.value.field == "contacts"
    with pytest.raises(ValidationFailed):
        generate(contacts=10, companies=0, now=NOW)


def test_slugs_are_ascii_and_respect_german_umlauts() -> None:
    assert ascii_slug("Jürgen", culture="de") == "juergen"
    assert ascii_slug("Lefèvre") == "lefevre"
    assert ascii_slug("Søren Dąbrowski", ".") == "soren.dabrowski"
    assert ascii_slug("van den Berg", "-") == "van-den-berg"
