"""Each kind of condition on a small workspace whose answers are known, on SQLite and
PostgreSQL; every answer is also checked against the evaluator (``seeding.both``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from postwise.core.clock import utcnow
from postwise.delivery import outbox, unsubscribe
from postwise.segments.compiler import compile_members
from postwise.segments.definition import SchemaContext, parse_definition
from postwise.segments.evaluator import evaluate
from postwise.segments.facts import ContactFacts
from postwise.segments.fields import FIELDS, FieldSpec, ValueType
from postwise.storage.database import Database
from postwise.storage.tables import Contact
from postwise.tracking import email_activity
from postwise.tracking.tokens import TokenKind, TokenSigner
from tests.segments import seeding
from tests.segments.seeding import ATTRIBUTES, NOW, both, parse

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)


@dataclass
class World:
    db: Database
    ws: int
    ids: dict[str, int]
    list_id: int

    def names(self, ids: set[int]) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[i] for i in ids}

    def match(self, doc: Any, now: Any = NOW, segments: dict[int, Any] | None = None) -> set[str]:
        doc = _lists(doc, self.list_id)
        return self.names(both(self.db, parse(doc, segments), self.ws, now))


def _lists(doc: Any, list_id: int) -> Any:
    if isinstance(doc, dict):
        return {k: (list_id if k == "list" else _lists(v, list_id)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_lists(v, list_id) for v in doc]
    return doc


@pytest.fixture
def world(db: Database) -> World:
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        other = seeding.workspace(conn)  # same data elsewhere must never leak in
        acme = seeding.company(
            conn,
            ws,
            "acme.example",
            industry="software",
            employee_count=1500,
            size_band="1001-5000",
        )
        shop = seeding.company(
            conn,
            ws,
            "shop.example",
            industry="retail",
            employee_count=50,
            attributes={"tier": "gold"},
        )
        ann = seeding.contact(
            conn,
            ws,
            "ann@acme.example",
            seniority="director",
            job_title="Head of Sales",
            company_id=acme,
            created_at=NOW - 3 * DAY,
            phone="+4930123456",
            attributes={"plan": "pro", "score": 2.5, "birthday": "1990-03-01", "tags": ["a"]},
        )
        bob = seeding.contact(
            conn,
            ws,
            "bob@mail.example",
            seniority="entry",
            created_at=NOW - 30 * DAY,
            attributes={"birthday": "1992-02-29", "score": "3", "vip": False},
        )
        cat = seeding.contact(
            conn,
            ws,
            "cat@shop.example",
            seniority="vp",
            company_id=shop,
            created_at=NOW - 30 * DAY - US,
            attributes={"plan": "free", "tags": "a", "vip": True},
        )
        dan = seeding.contact(conn, ws, "dan@acme.example", company_id=acme)
        seeding.contact(conn, other, "ann@acme.example", seniority="director")
        ev = seeding.event
        ev(conn, ws, ann, "Order Completed", NOW - 10 * DAY, {"total": 600, "category": "Books"})
        ev(conn, ws, ann, "Order Completed", NOW - 400 * DAY, {"total": 100})
        ev(conn, ws, ann, "Added to Cart", NOW - 2 * HOUR)
        ev(conn, ws, ann, "Page Viewed", NOW - 3 * DAY, {"path": "/pricing"})
        ev(
            conn,
            ws,
            ann,
            "Email Opened",
            NOW - DAY,
            {"machine": False, "campaign_key": "spring"},
            "email",
        )
        ev(conn, ws, bob, "Added to Cart", NOW - 5 * HOUR)
        ev(conn, ws, bob, "Order Completed", NOW - HOUR)
        ev(
            conn,
            ws,
            bob,
            "Email Opened",
            NOW - DAY,
            {"machine": True, "campaign_key": "spring"},
            "email",
        )
        ev(conn, ws, cat, "Order Completed", NOW - 30 * DAY, {"total": "600"})
        ev(conn, ws, cat, "Page Viewed", NOW - DAY, {"path": "/pricing"})
        ev(conn, ws, cat, "Email Opened", NOW - DAY, {"machine": False}, "track")  # not mail
        ev(conn, ws, dan, "Page Viewed", NOW - 2 * DAY, {"path": "/pricing"})
        ev(conn, ws, None, "Order Completed", NOW, {"total": 9000})  # anonymous
        list_id = seeding.mailing_list(conn, ws, "News")
        seeding.subscribe(conn, ws, list_id, ann, "subscribed")
        seeding.subscribe(conn, ws, list_id, bob, "unsubscribed")
    return World(db, ws, {"ann": ann, "bob": bob, "cat": cat, "dan": dan}, list_id)


def test_contact_fields(world: World) -> None:
    assert world.match({"field": "contact.seniority", "op": "gte", "value": "director"}) == {
        "ann",
        "cat",
    }
    assert world.match({"field": "contact.seniority", "op": "neq", "value": "vp"}) == {"ann", "bob"}
    assert world.match({"not": {"field": "contact.seniority", "op": "is_set"}}) == {"dan"}
    assert world.match({"field": "contact.job_title", "op": "contains", "value": "Sales"}) == {
        "ann"
    }
    # Text compares in any (ASCII) case unless the condition asks otherwise.
    head = {"field": "contact.job_title", "op": "starts_with", "value": "head"}
    assert world.match(head) == {"ann"}
    assert world.match(head | {"case_sensitive": True}) == set()
    assert world.match({"field": "contact.job_title", "op": "eq", "value": "HEAD OF SALES"}) == {
        "ann"
    }
    assert world.match(
        {"field": "contact.email_domain", "op": "in", "value": ["acme.example"]}
    ) == {
        "ann",
        "dan",
    }


def test_relative_dates_include_the_boundary(world: World) -> None:
    """within_last 30 days is now - 30 days <= t <= now: bob, created exactly 30 days ago,
    is in; cat, one microsecond earlier, is out."""
    recent = {"field": "contact.created_at", "op": "within_last", "value": {"days": 30}}
    assert world.match(recent) == {"ann", "bob", "dan"}
    assert world.match(recent, now=NOW + US) == {"ann", "dan"}
    older = {"field": "contact.created_at", "op": "more_than_ago", "value": {"days": 30}}
    assert world.match(older) == {"cat"}
    day = (NOW - 30 * DAY).date().isoformat()
    assert world.match({"field": "contact.created_at", "op": "lte", "value": day}) == {"bob", "cat"}
    assert world.match({"field": "contact.created_at", "op": "gt", "value": day}) == {"ann", "dan"}


def test_custom_attributes_by_type(world: World) -> None:
    assert world.match({"field": "contact.attributes.plan", "op": "eq", "value": "pro"}) == {"ann"}
    # "3" is text, not a number: a number comparison never matches it
    assert world.match({"field": "contact.attributes.score", "op": "gt", "value": 2}) == {"ann"}
    assert world.match({"field": "contact.attributes.score", "op": "is_set"}) == {"ann", "bob"}
    assert world.match({"field": "contact.attributes.vip", "op": "eq", "value": False}) == {"bob"}
    assert world.match({"field": "contact.attributes.tags", "op": "contains", "value": "a"}) == {
        "ann"
    }
    assert (
        world.match({"field": "contact.attributes.tags", "op": "not_contains", "value": "a"})
        == set()
    )
    assert world.match({"field": "contact.attributes.plan", "op": "not_set"}) == {"bob", "dan"}


def test_anniversaries_count_29_february_on_28_february_in_common_years(world: World) -> None:
    """NOW is 2027-02-25, a common year: 3 days ahead reaches 28 February, which stands for
    29 February too; 7 days ahead reaches 1 March."""
    soon = {
        "field": "contact.attributes.birthday",
        "op": "anniversary_within",
        "value": {"days": 3},
    }
    assert world.match(soon) == {"bob"}
    soon["value"] = {"days": 7}
    assert world.match(soon) == {"ann", "bob"}
    leap = NOW.replace(year=2028)
    soon["value"] = {"days": 3}
    assert world.match(soon, now=leap) == set()


def test_company_fields(world: World) -> None:
    assert world.match({"field": "company.industry", "op": "eq", "value": "software"}) == {
        "ann",
        "dan",
    }
    assert world.match({"field": "company.employee_count", "op": "gt", "value": 1000}) == {
        "ann",
        "dan",
    }
    assert world.match({"not": {"field": "company.industry", "op": "eq", "value": "software"}}) == {
        "bob",
        "cat",
    }
    assert world.match({"field": "company.size_band", "op": "gte", "value": "1001-5000"}) == {
        "ann",
        "dan",
    }
    assert world.match({"field": "company.attributes.tier", "op": "eq", "value": "gold"}) == {"cat"}


def test_performed_with_property_filters_and_windows(world: World) -> None:
    big = {"event": "Order Completed", "where": [{"property": "total", "op": "gt", "value": 500}]}
    assert world.match(big) == {"ann"}  # cat's "600" is text, the anonymous order has no contact
    month = {"event": "Order Completed", "window": {"last": {"days": 30}}}
    assert world.match(month) == {"ann", "bob", "cat"}  # cat's order is exactly 30 days old
    assert world.match(month, now=NOW + US) == {"ann", "bob"}
    day = (NOW - 30 * DAY).date().isoformat()
    on_day = {"event": "Order Completed", "window": {"between": [day, day]}}
    assert world.match(on_day) == {"cat"}
    books = {
        "event": "Order Completed",
        "where": [{"property": "category", "op": "eq", "value": "Books"}],
    }
    assert world.match(books) == {"ann"}


def test_counts(world: World) -> None:
    twice = {"event": "Order Completed", "count": {"op": "gte", "value": 2}}
    assert world.match(twice | {"window": {"last": {"days": 365}}}) == set()
    assert world.match(twice | {"window": {"last": {"days": 500}}}) == {"ann"}
    never = {
        "event": "Order Completed",
        "count": {"op": "eq", "value": 0},
        "window": {"last": {"days": 30}},
    }
    assert world.match(never) == {"dan"}
    few = {
        "event": "Order Completed",
        "count": {"op": "lt", "value": 2},
        "window": {"last": {"days": 500}},
    }
    assert world.match(few) == {"bob", "cat", "dan"}


def test_sum_and_average_of_a_property(world: World) -> None:
    year = {"window": {"last": {"days": 365}}}
    spent = {
        "event": "Order Completed",
        "aggregate": {"fn": "sum", "property": "total", "op": "gt", "value": 500},
    }
    assert world.match(spent | year) == {"ann"}
    little = {
        "event": "Order Completed",
        "aggregate": {"fn": "sum", "property": "total", "op": "lt", "value": 50},
    }
    assert world.match(little | year) == {"bob", "cat", "dan"}  # no numeric total sums to 0
    avg = {
        "event": "Order Completed",
        "aggregate": {"fn": "avg", "property": "total", "op": "gte", "value": 350},
    }
    assert world.match(avg | {"window": {"last": {"days": 500}}}) == {"ann"}  # (600 + 100) / 2
    assert world.match(avg | year) == {"ann"}


def test_did_not_perform_since_the_last(world: World) -> None:
    abandoned = {
        "event": "Added to Cart",
        "window": {"last": {"hours": 24}},
        "not_followed_by": {"event": "Order Completed"},
    }
    assert world.match(abandoned) == {"ann"}


def test_first_and_last_time_performed(world: World) -> None:
    lapsed = {"event": "Order Completed", "last": {"op": "more_than_ago", "value": {"hours": 24}}}
    assert world.match(lapsed) == {"ann", "cat"}
    early = {"event": "Order Completed", "first": {"op": "before", "value": "2026-06-01"}}
    assert world.match(early) == {"ann"}


def test_email_engagement_is_human_only_by_default(world: World) -> None:
    assert world.match({"email": "opened"}) == {"ann"}  # bob's open was a machine's
    assert world.match({"email": "opened", "include_machine": True}) == {"ann", "bob"}
    assert world.match({"email": "opened", "campaign": "spring", "include_machine": True}) == {
        "ann",
        "bob",
    }
    assert world.match({"email": "opened", "campaign": "fall"}) == set()
    inactive = {
        "email": "opened",
        "count": {"op": "eq", "value": 0},
        "window": {"last": {"days": 90}},
    }
    assert world.match(inactive) == {"bob", "cat", "dan"}  # cat's "Email Opened" is a track call


def test_list_membership(world: World) -> None:
    assert world.match({"list": 1}) == {"ann"}
    assert world.match({"list": 1, "status": "any"}) == {"ann", "bob"}
    assert world.match({"list": 1, "status": "unsubscribed"}) == {"bob"}
    assert world.match({"not": {"list": 1}}) == {"bob", "cat", "dan"}


def test_segment_membership_is_inlined(world: World) -> None:
    segments = {
        1: {"field": "contact.seniority", "op": "gte", "value": "director"},
        2: {"segment": 1},
    }
    assert world.match(
        {"all": [{"segment": 2}, {"field": "company.industry", "op": "is_set"}]}, segments=segments
    ) == {"ann", "cat"}


def test_account_level(world: World) -> None:
    pricing = {
        "event": "Page Viewed",
        "where": [{"property": "path", "op": "eq", "value": "/pricing"}],
        "window": {"last": {"days": 7}},
    }
    assert world.match({"account": {"min_contacts": 2, "where": pricing}}) == {"ann", "dan"}
    assert world.match({"account": {"min_contacts": 1, "where": pricing}}) == {"ann", "cat", "dan"}
    assert world.match({"not": {"account": {"min_contacts": 2, "where": pricing}}}) == {
        "bob",
        "cat",
    }


def test_groups(world: World) -> None:
    assert world.match({"all": []}) == {"ann", "bob", "cat", "dan"}
    assert world.match({"any": []}) == set()
    doc = {
        "any": [
            {
                "all": [
                    {"field": "contact.seniority", "op": "eq", "value": "vp"},
                    {"event": "Page Viewed"},
                ]
            },
            {"not": {"any": [{"field": "contact.seniority", "op": "is_set"}, {"list": 1}]}},
        ]
    }
    assert world.match(doc) == {"cat", "dan"}


def test_contact_ids_narrow_the_statement(world: World) -> None:
    defn = parse({"field": "contact.seniority", "op": "is_set"})
    stmt = compile_members(
        defn, workspace_id=world.ws, now=NOW, contact_ids=[world.ids["ann"], world.ids["dan"]]
    )
    with world.db.engine.connect() as conn:
        assert set(conn.scalars(stmt)) == {world.ids["ann"]}


def test_a_registered_field_is_segmentable_without_touching_the_compiler(world: World) -> None:
    fields = FIELDS.copy()
    fields.register(
        FieldSpec(
            name="contact.title_length",
            entity="contact",
            type=ValueType.NUMBER,
            sql=lambda table: func.length(table.c.job_title),
            read=lambda row: None if row["job_title"] is None else len(row["job_title"]),
        )
    )
    ctx = SchemaContext(attributes=ATTRIBUTES, fields=fields)
    defn = parse_definition({"field": "contact.title_length", "op": "gt", "value": 5}, ctx)
    assert world.names(both(world.db, defn, world.ws)) == {"ann"}  # the others have no title
    with pytest.raises(ValueError, match="already registered"):
        fields.register(
            FieldSpec(name="contact.email", entity="contact", type=ValueType.STRING, column="email")
        )
    assert FIELDS.get("contact.title_length") is None  # the shared registry is untouched


NASTY = "x'); DELETE FROM contacts; --"


def test_injection_attempts_stay_bound_parameters(world: World) -> None:
    doc = {
        "any": [
            {"field": "contact.job_title", "op": "eq", "value": NASTY},
            {"field": "contact.job_title", "op": "contains", "value": NASTY},
            {
                "event": NASTY,
                "where": [{"property": "total' OR '1'='1", "op": "eq", "value": NASTY}],
            },
            {"event": "Order Completed", "where": [{"property": "a.b[0]$", "op": "is_set"}]},
            {"email": "opened", "campaign": NASTY},
        ]
    }
    assert world.match(doc) == set()
    with world.db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Contact)) == 5


def test_text_matches_in_any_ascii_case_and_nested_properties(db: Database) -> None:
    """Case is ignored for A-Z only, identically on both databases: "ÄRZTE" is not
    "ärzte" (SQLite's lower() and PostgreSQL's translate() leave Ä alone), "İstanbul"
    starts with "İst" but not with "ist". Nested properties are reached by path."""
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        ids = {
            name: seeding.contact(conn, ws, f"{name}@x.example", job_title=title)
            for name, title in [("ann", "Head of Sales"), ("bea", "ÄRZTE"), ("cem", "İstanbul")]
        }
        seeding.event(conn, ws, ids["ann"], "Order", NOW - DAY, {"product": {"category": "BOOKS"}})
        seeding.event(conn, ws, ids["bea"], "Order", NOW - DAY, {"product": "books"})
        seeding.event(conn, ws, ids["cem"], "Order", NOW - DAY, {"product.category": "books"})
    names = {v: k for k, v in ids.items()}

    def match(doc: Any) -> set[str]:
        return {names[i] for i in both(db, parse(doc), ws, NOW)}

    title = "contact.job_title"
    assert match({"field": title, "op": "starts_with", "value": "HEAD"}) == {"ann"}
    assert match({"field": title, "op": "eq", "value": "Ärzte"}) == {"bea"}
    assert match({"field": title, "op": "eq", "value": "ärzte"}) == set()
    assert match({"field": title, "op": "starts_with", "value": "İST"}) == {"cem"}
    assert match({"field": title, "op": "starts_with", "value": "ist"}) == set()
    nested = {"property": ["product", "category"], "op": "eq", "value": "books"}
    assert match({"event": "Order", "where": [nested]}) == {"ann"}
    assert match({"event": "Order", "where": [nested | {"case_sensitive": True}]}) == set()
    dotted = {"property": "product.category", "op": "contains", "value": "OOK"}
    assert match({"event": "Order", "where": [dotted]}) == {"cem"}
    whole = {"property": ["product"], "op": "not_set"}
    assert match({"event": "Order", "where": [whole]}) == {"cem"}


@pytest.mark.parametrize(
    "dialect", [postgresql.dialect(), sqlite.dialect()], ids=["postgresql", "sqlite"]
)
def test_no_value_from_the_definition_is_inlined_in_the_sql(dialect: Any) -> None:
    defn = parse(
        {
            "all": [
                {"field": "contact.job_title", "op": "starts_with", "value": "Zyx"},
                {
                    "event": "Qwv Event",
                    "where": [{"property": "pqz", "op": "gt", "value": 4242}],
                    "count": {"op": "gte", "value": 3131},
                    "window": {"last": {"days": 77}},
                },
                {"field": "contact.attributes.plan", "op": "in", "value": ["Jkq"]},
                {"email": "opened", "campaign": "Vbn"},
            ]
        }
    )
    compiled = compile_members(defn, workspace_id=9191, now=NOW).compile(dialect=dialect)
    sql = str(compiled)
    for secret in (
        "Zyx",
        "Qwv",
        "pqz",
        "4242",
        "3131",
        "Jkq",
        "Vbn",
        "plan",
        "9191",
        "campaign_key",
    ):
        assert secret not in sql
    values = [str(v) for v in compiled.params.values()]
    # Text compared in any case is bound already folded ("Zyx" -> "zyx").
    assert "zyx" not in sql and "jkq" not in sql
    for secret in ("zyx", "Qwv Event", "pqz", "4242.0", "3131", "plan", "9191"):
        assert secret in values


def test_evaluator_alone_on_facts_built_by_hand() -> None:
    """Real-time decisions need no database: the facts can come from anywhere."""
    defn = parse(
        {
            "all": [
                {"field": "contact.seniority", "op": "gte", "value": "director"},
                {"field": "company.industry", "op": "eq", "value": "software"},
            ]
        }
    )
    facts = ContactFacts(
        contact={"seniority": "vp", "company_id": 1}, company={"industry": "software"}
    )
    assert evaluate(defn, facts, NOW)
    assert not evaluate(defn, ContactFacts(contact={"seniority": "vp"}), NOW)


def test_email_conditions_read_the_events_the_outbox_writes(db: Database) -> None:
    """Sent mail is found by campaign and workflow through the outbox's own events."""
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        ann = seeding.contact(conn, ws, "ann@x.example")
        bob = seeding.contact(conn, ws, "bob@x.example")
    with db.tenant(ws) as session:
        outbox.enqueue(
            session,
            [
                outbox.NewMessage(
                    "ann@x.example",
                    kind="marketing",
                    contact_id=ann,
                    campaign_key="spring",
                    raw=b"Subject: a\r\n\r\nx",
                    mail_from="news@x.example",
                ),
                outbox.NewMessage(
                    "bob@x.example",
                    kind="marketing",
                    contact_id=bob,
                    workflow_key="welcome",
                    raw=b"Subject: b\r\n\r\nx",
                    mail_from="news@x.example",
                ),
            ],
        )
    claimed = outbox.claim(db, "w1", 10, 60)
    with db.tenant(ws) as session:
        for row in claimed:
            assert outbox.mark_sent(
                session, row, message_id=None, transport="memory", reply="250 OK", final_hop=True
            )
    sent = seeding.parse({"email": "sent", "campaign": "spring", "window": {"last": {"days": 1}}})
    assert both(db, sent, ws, utcnow()) == {ann}
    delivered = seeding.parse({"email": "delivered", "workflow": "welcome"})
    assert both(db, delivered, ws, utcnow()) == {bob}
    # Opens through the tracking pixel: a person's for bob, a machine's for ann.
    signer = TokenSigner(b"segments-test-secret")
    by_contact = {row.contact_id: row.id for row in claimed}
    person = email_activity.Hit("GET", "Mozilla/5.0 (Windows NT 10.0) Firefox/128.0", None)
    assert email_activity.record_open(
        db, signer, signer.sign(TokenKind.OPEN, by_contact[bob]), person
    )
    machine = email_activity.Hit("GET", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", None)
    email_activity.record_open(db, signer, signer.sign(TokenKind.OPEN, by_contact[ann]), machine)
    opened = seeding.parse({"email": "opened", "workflow": "welcome"})
    assert both(db, opened, ws, utcnow()) == {bob}
    assert both(db, seeding.parse({"email": "opened"}), ws, utcnow()) == {bob}


def test_offsets_are_converted_to_utc_and_naive_times_are_utc(world: World) -> None:
    """bob was created at NOW - 30 days exactly (11:59:59.999999 UTC is just before it)."""
    created = NOW - 30 * DAY
    local = created.astimezone(timezone(timedelta(hours=2)))  # 14:00 at +02:00
    assert local.hour == 14
    at_or_after = {"field": "contact.created_at", "op": "gte", "value": local.isoformat()}
    assert world.match(at_or_after) == {"ann", "bob", "dan"}
    naive = created.replace(tzinfo=None).isoformat()
    assert world.match(at_or_after | {"value": naive}) == {"ann", "bob", "dan"}
    before = {"field": "contact.created_at", "op": "lt", "value": local.isoformat()}
    assert world.match(before) == {"cat"}


def test_unsubscribes_carry_the_campaign_of_the_message(db: Database) -> None:
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        ann = seeding.contact(conn, ws, "ann@x.example")
    with db.tenant(ws) as session:
        [outbox_id] = outbox.enqueue(
            session,
            [
                outbox.NewMessage(
                    "ann@x.example",
                    kind="marketing",
                    contact_id=ann,
                    campaign_key="spring",
                    raw=b"Subject: a\r\n\r\nx",
                    mail_from="news@x.example",
                )
            ],
        )
    with db.tenant(ws) as session:
        unsubscribe.one_click(session, unsubscribe.Ref(ws, ann, None, outbox_id))
    left = seeding.parse({"email": "unsubscribed", "campaign": "spring"})
    assert both(db, left, ws, utcnow()) == {ann}
    assert both(db, seeding.parse({"email": "unsubscribed", "campaign": "fall"}), ws) == set()
