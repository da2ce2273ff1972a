"""The evaluator's facts: loaded from the database, only what the definition names."""

from __future__ import annotations

from datetime import timedelta

import pytest

from postwise.core.errors import NotFound
from postwise.segments.evaluator import evaluate
from postwise.segments.facts import load_facts
from postwise.segments.references import references
from postwise.storage.database import Database
from tests.segments import seeding
from tests.segments.seeding import NOW, parse

DAY = timedelta(days=1)


def test_load_facts_reads_only_what_the_definition_references(db: Database) -> None:
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        acme = seeding.company(conn, ws, "acme.example", industry="software")
        ann = seeding.contact(conn, ws, "ann@acme.example", company_id=acme)
        peer = seeding.contact(conn, ws, "bo@acme.example", company_id=acme)
        news = seeding.mailing_list(conn, ws, "News")
        other = seeding.mailing_list(conn, ws, "Other")
        seeding.subscribe(conn, ws, news, ann, "subscribed")
        seeding.subscribe(conn, ws, other, ann, "subscribed")
        seeding.event(conn, ws, ann, "Order Completed", NOW - DAY, {"total": 5})
        seeding.event(conn, ws, ann, "Page Viewed", NOW - DAY)
        seeding.event(conn, ws, peer, "Order Completed", NOW - DAY)
    defn = parse({"all": [{"event": "Order Completed"}, {"list": news}]})
    with db.engine.connect() as conn:
        facts = load_facts(conn, ws, ann, NOW, references(defn))
        assert [e.name for e in facts.events] == ["Order Completed"]
        assert facts.lists == {news: "subscribed"}
        assert facts.company is None and facts.company_contacts == ()
        assert evaluate(defn, facts, NOW)

        abm = parse({"account": {"min_contacts": 2, "where": {"event": "Order Completed"}}})
        facts = load_facts(conn, ws, ann, NOW, references(abm))
        assert facts.company is not None and facts.company["industry"] == "software"
        assert sorted(int(f.contact["id"]) for f in facts.company_contacts) == [ann, peer]
        assert facts.lists == {}
        assert evaluate(abm, facts, NOW)

        with pytest.raises(NotFound):
            load_facts(conn, ws, peer + 100, NOW, references(defn))
        with pytest.raises(NotFound):  # another workspace's contact is not found either
            load_facts(conn, ws + 1, ann, NOW, references(defn))


def test_the_same_facts_answer_differently_as_time_passes(db: Database) -> None:
    """Sliding windows move with ``now`` alone: what ``references.time_dependent`` flags."""
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        ann = seeding.contact(conn, ws, "ann@x.example")
        seeding.event(conn, ws, ann, "Trial Started", NOW - 6 * DAY)
    defn = parse({"event": "Trial Started", "window": {"last": {"days": 7}}})
    assert references(defn).time_dependent
    with db.engine.connect() as conn:
        facts = load_facts(conn, ws, ann, NOW, references(defn))
    assert evaluate(defn, facts, NOW)
    assert not evaluate(defn, facts, NOW + 2 * DAY)
    assert seeding.both(db, defn, ws, NOW) == {ann}
    assert seeding.both(db, defn, ws, NOW + 2 * DAY) == set()


def test_references() -> None:
    segments = {5: {"any": [{"list": 9}, {"email": "clicked"}]}}
    defn = parse(
        {
            "all": [
                {"field": "company.industry", "op": "eq", "value": "software"},
                {"segment": 5},
                {"account": {"min_contacts": 2, "where": {"event": "Page Viewed"}}},
                {"event": "Added to Cart", "not_followed_by": {"event": "Order Completed"}},
                {"field": "contact.attributes.birthday", "op": "eq", "value": "2000-01-01"},
            ]
        },
        segments,
    )
    refs = references(defn)
    assert refs.event_names == {"Page Viewed", "Added to Cart", "Order Completed"}
    assert refs.email_event_names == {"Email Clicked"} and refs.email_kinds == {"clicked"}
    assert refs.fields == {"company.industry", "contact.attributes.birthday"}
    assert refs.list_ids == {9} and refs.segment_ids == {5}
    assert refs.account_level and refs.uses_company and not refs.time_dependent
    relative = parse(
        {"field": "contact.attributes.birthday", "op": "anniversary_within", "value": {"days": 3}}
    )
    assert references(relative).time_dependent


def test_load_facts_reads_no_older_events_than_the_longest_window(db: Database) -> None:
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        ann = seeding.contact(conn, ws, "ann@x.example")
        for days in (1, 20, 400):
            seeding.event(conn, ws, ann, "Page Viewed", NOW - days * DAY)
            seeding.event(conn, ws, ann, "Order Completed", NOW - days * DAY)
    defn = parse(
        {
            "all": [
                {"event": "Page Viewed", "window": {"last": {"days": 7}}},
                {
                    "event": "Page Viewed",
                    "count": {"op": "gte", "value": 2},
                    "window": {"last": {"days": 30}},
                },
                {"event": "Order Completed", "window": {"last": {"days": 7}}},
                {
                    "not": {
                        "event": "Order Completed",
                        "first": {"op": "before", "value": "2020-01-01"},
                    }
                },
            ]
        }
    )
    refs = references(defn)
    assert refs.lookback == {"Page Viewed": 30 * DAY}  # Order Completed: first looks at all time
    with db.engine.connect() as conn:
        facts = load_facts(conn, ws, ann, NOW, refs)
    seen = sorted((e.name, (NOW - e.occurred_at).days) for e in facts.events)
    assert seen == [
        ("Order Completed", 1),
        ("Order Completed", 20),
        ("Order Completed", 400),
        ("Page Viewed", 1),
        ("Page Viewed", 20),
    ]
    assert evaluate(defn, facts, NOW)
    abandon = parse(
        {
            "event": "Added to Cart",
            "window": {"last": {"hours": 24}},
            "not_followed_by": {"event": "Order Completed"},
        }
    )
    assert references(abandon).lookback == {"Added to Cart": DAY, "Order Completed": DAY}


def test_load_facts_reads_filtered_events_and_stops_when_enough_decide(db: Database) -> None:
    vip, home = {"path": "/rewards/vip"}, {"path": "/"}
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        ann = seeding.contact(conn, ws, "ann@x.example")
        for days in range(1, 41):  # a busy reader: 40 page views, 4 of them VIP
            seeding.event(
                conn, ws, ann, "Page Viewed", NOW - days * DAY, vip if days % 10 == 0 else home
            )
            machine = {"machine": days % 2 == 0}
            seeding.event(conn, ws, ann, "Email Opened", NOW - days * DAY, machine, "email")
        for days in (3, 5, 400):
            seeding.event(conn, ws, ann, "Order Completed", NOW - days * DAY, {"total": 200})
    defn = parse(
        {
            "all": [
                {
                    "event": "Page Viewed",
                    "where": [{"property": "path", "op": "eq", "value": "/rewards/vip"}],
                },
                {
                    "email": "opened",
                    "count": {"op": "gte", "value": 3},
                    "window": {"last": {"days": 30}},
                },
                {
                    "event": "Order Completed",
                    "aggregate": {"fn": "sum", "property": "total", "op": "gt", "value": 300},
                    "window": {"last": {"days": 365}},
                },
            ]
        }
    )
    with db.engine.connect() as conn:
        facts = load_facts(conn, ws, ann, NOW, references(defn))
    names = sorted(e.name for e in facts.events)
    # one VIP view decides "ever"; three human opens decide ">= 3"; the sum needs every
    # order of the year, and none older
    assert names == ["Email Opened"] * 3 + ["Order Completed"] * 2 + ["Page Viewed"]
    assert all(not e.properties["machine"] for e in facts.events if e.name == "Email Opened")
    assert [e.properties for e in facts.events if e.name == "Page Viewed"] == [vip]
    assert evaluate(defn, facts, NOW)
    fewer = parse(
        {"email": "opened", "count": {"op": "lte", "value": 14}, "window": {"last": {"days": 30}}}
    )
    with db.engine.connect() as conn:  # 15 human opens in 30 days: "<= 14" reads 15, fails
        facts = load_facts(conn, ws, ann, NOW, references(fewer))
    assert len(facts.events) == 15 and not evaluate(fewer, facts, NOW)
