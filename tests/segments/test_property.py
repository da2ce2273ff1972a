"""THE property: for random definitions over random contacts, companies, lists and
events, the compiled SQL selects exactly the contacts the in-memory evaluator admits,
on SQLite and on PostgreSQL.

The data is drawn around the edges where the two could part: window boundaries to the
microsecond, future events, NULLs and missing attributes, JSON values of the wrong
type (``"600"`` for a number, ``true`` for a string), 29 February birthdays, floats,
machine-labelled opens and case differences in text: ASCII letters in any case,
non-ASCII letters ("Ärzte"/"ärzte", "İstanbul", "ß"/"SS") that are compared exactly
even when case is ignored (docs/segments.md#case), and nested event properties
reached through objects, scalars and missing keys.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from postwise.contacts.fields import CONTACT_STATUSES, SIZE_BANDS
from postwise.segments.compiler import compile_members
from postwise.storage.database import Database
from tests.segments import seeding
from tests.segments.seeding import NOW

MISSING: Any = object()
US = timedelta(microseconds=1)
TIMES = [
    NOW - timedelta(days=30),
    NOW - timedelta(days=30) - US,
    NOW - timedelta(days=30) + US,
    NOW - timedelta(hours=24),
    NOW - timedelta(hours=24) - US,
    NOW - timedelta(days=7),
    NOW - timedelta(hours=1),
    NOW,
    NOW + timedelta(hours=1),
    NOW - timedelta(days=400),
    NOW - timedelta(days=90),
    datetime.fromisoformat("2027-01-31T00:00:00+00:00"),
    datetime.fromisoformat("2027-01-31T23:59:59.999999+00:00"),
    datetime.fromisoformat("2027-02-01T00:00:00+00:00"),
]
EVENT_NAMES = ["Order Completed", "Added to Cart", "Page Viewed", "Email Opened", "Email Sent"]
TEXTS = ["Head of Sales", "head", "CTO", "", "Hé", "HEAD"]
# Where ASCII folding, Unicode lower() and casefold() part ways.
UNICODE_TEXTS = ["Ärzte", "ÄRZTE", "ärzte", "İstanbul", "istanbul", "Straße", "STRASSE", "ß"]
CATEGORIES = ["Books", "BOOKS", "Science Fiction", "science fiction", "Ärzte", "ärzte", "ß"]


def _maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from([MISSING, *values])


def _doc(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not MISSING}


properties = st.builds(
    _doc,
    total=_maybe([100, 500, 500.5, "600", True, None, -2.5]),
    category=_maybe([*CATEGORIES, 3, ["Books"]]),
    product=_maybe(
        [
            {"category": "Books"},
            {"category": "bOOKS"},
            {"category": "ÄRZTE"},
            {"category": 3},
            {"category": None},
            {"category": {"name": "Books"}},
            {"sub": {"category": "Books"}},
            "Books",
            ["Books"],
        ]
    ),
    machine=_maybe([True, False, "true"]),
    campaign_key=_maybe(["spring", "fall"]),
)


def events_at(times: list[datetime], min_size: int = 0) -> st.SearchStrategy[list[Any]]:
    return st.lists(
        st.tuples(
            st.sampled_from(EVENT_NAMES),
            st.sampled_from(times),
            properties,
            st.sampled_from(["track", "email"]),
        ),
        min_size=min_size,
        max_size=10,
    )


contact_attributes = st.builds(
    _doc,
    plan=_maybe(["pro", "free", 5, None]),
    score=_maybe([1, 2.5, "3", True, -1]),
    vip=_maybe([True, False, "yes"]),
    birthday=_maybe(
        [
            "1990-02-28",
            "1992-02-29",
            "2000-03-01",
            "2001-02-25",
            "2027-02-25",
            "bad",
            "2026-12-31T10:00:00+00:00",
            "2027-03-04",
        ]
    ),
    tags=_maybe([["a", "b"], [], "a", [1, "a"], ["b"]]),
)


def people(
    events: st.SearchStrategy[list[Any]], companies: tuple[int | None, ...] = (None, 0, 1)
) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.fixed_dictionaries(
            {
                "seniority": st.sampled_from([None, "entry", "manager", "director", "vp", "owner"]),
                "job_title": st.sampled_from([None, *TEXTS, *UNICODE_TEXTS]),
                "country": st.sampled_from([None, "US", "DE"]),
                "status": st.sampled_from(CONTACT_STATUSES),
                "created_at": st.sampled_from(TIMES),
                "attributes": contact_attributes,
                "company": st.sampled_from(companies),
                "lists": st.tuples(*[st.sampled_from([None, "subscribed", "unsubscribed"])] * 2),
                "events": events,
            }
        ),
        min_size=3,
        max_size=7,
    )


contacts = people(events_at(TIMES))
# Few distinct instants, so events often tie ("since the last" compares with >=).
crowded = people(events_at([NOW - timedelta(days=2), NOW - timedelta(hours=1), TIMES[0]]))
companies = st.lists(
    st.fixed_dictionaries(
        {
            "industry": st.sampled_from([None, "software", "Software", "retail", "Ärzte"]),
            "employee_count": st.sampled_from([None, 50, 1000, 1001]),
            "size_band": st.sampled_from([None, *SIZE_BANDS[3:6]]),
            "attributes": st.builds(_doc, tier=_maybe(["gold", 1])),
        }
    ),
    min_size=2,
    max_size=2,
)

# --- definitions -----------------------------------------------------------------------


def _field(name: str, ops: list[tuple[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(ops).map(
        lambda op: {"field": name, "op": op[0]} | ({} if op[1] is None else {"value": op[1]})
    )


def _case(doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The condition as drawn, or (for text comparisons) made case-sensitive."""
    value = doc.get("value")
    text = isinstance(value, str) or (isinstance(value, list) and isinstance(value[0], str))
    if doc["op"] not in ("eq", "neq", "in", "not_in", "contains", "starts_with") or not text:
        return st.just(doc)
    return st.sampled_from([doc, doc | {"case_sensitive": True}])


SET = [("is_set", None), ("not_set", None)]
text_fields = st.one_of(
    _field(
        "contact.job_title",
        [
            ("eq", "head"),
            ("neq", "HEAD"),
            ("contains", "é"),
            ("starts_with", "Head"),
            ("eq", "ärzte"),
            ("eq", "ÄRZTE"),
            ("starts_with", "İST"),
            ("starts_with", "ist"),
            ("contains", "SS"),
            ("contains", "ß"),
            ("in", ["STRASSE", "cto"]),
            ("not_in", ["HEAD", "cto"]),
        ],
    ),
    _field("company.industry", [("eq", "SOFTWARE"), ("in", ["software", "ärzte"])]),
).flatmap(_case)
field_conditions = st.one_of(
    _field(
        "contact.seniority",
        [
            ("eq", "vp"),
            ("neq", "vp"),
            ("in", ["director", "vp"]),
            ("not_in", ["entry"]),
            ("gte", "director"),
            ("lt", "manager"),
            ("between", ["manager", "vp"]),
            *SET,
        ],
    ),
    _field(
        "contact.job_title",
        [
            ("eq", "head"),
            ("neq", "head"),
            ("contains", "ead"),
            ("contains", "é"),
            ("starts_with", "Head"),
            ("starts_with", "H"),
            ("in", ["CTO", "head"]),
            ("eq", "ärzte"),
            ("eq", "ÄRZTE"),
            ("starts_with", "İST"),
            ("starts_with", "ist"),
            ("contains", "SS"),
            ("contains", "ß"),
            ("not_in", ["HEAD", "cto"]),
            *SET,
        ],
    ).flatmap(_case),
    _field("contact.country", [("eq", "US"), ("in", ["US", "DE"]), ("neq", "US"), *SET]),
    _field("contact.status", [("eq", "subscribed"), ("not_in", ["bounced", "complained"])]),
    _field(
        "contact.created_at",
        [
            ("within_last", {"days": 30}),
            ("within_last", {"hours": 24}),
            ("more_than_ago", {"days": 30}),
            ("within_next", {"hours": 2}),
            ("gt", "2027-01-31"),
            ("gte", "2027-01-31"),
            ("lt", "2027-02-01"),
            ("lte", "2027-01-31"),
            ("lte", "2027-01-31T23:59:59.999999+00:00"),
            ("gt", NOW.isoformat()),
            ("between", ["2027-01-31", "2027-02-01"]),
            *SET,
        ],
    ),
    _field(
        "contact.attributes.plan",
        [
            ("eq", "pro"),
            ("neq", "pro"),
            ("in", ["pro", "free"]),
            ("contains", "r"),
            ("starts_with", "p"),
            *SET,
        ],
    ),
    _field(
        "contact.attributes.score",
        [
            ("gt", 1),
            ("gte", 2.5),
            ("lt", 2.5),
            ("eq", 1),
            ("neq", 1),
            ("between", [1, 2.5]),
            ("in", [1, 2.5]),
            ("lte", -1),
            *SET,
        ],
    ),
    _field("contact.attributes.vip", [("eq", True), ("eq", False), *SET]),
    _field(
        "contact.attributes.birthday",
        [
            ("anniversary_within", {"days": 3}),
            ("anniversary_within", {"days": 7}),
            ("within_last", {"days": 60}),
            ("within_last", {"days": 3650}),
            ("more_than_ago", {"days": 365}),
            ("eq", "2027-02-25"),
            ("neq", "2027-02-25"),
            ("gt", "2000-03-01"),
            ("lte", "2000-03-01"),
            ("within_next", {"days": 10}),
            ("between", ["1990-01-01", "2001-02-25T23:00:00Z"]),
            *SET,
        ],
    ),
    _field(
        "contact.attributes.tags",
        [("contains", "a"), ("not_contains", "a"), ("in", ["a", "b"]), *SET],
    ),
    _field(
        "company.industry",
        [("eq", "SOFTWARE"), ("in", ["software", "ärzte"]), ("neq", "Retail"), *SET],
    ).flatmap(_case),
    _field(
        "company.employee_count",
        [("gt", 1000), ("gte", 1000), ("between", [50, 1000]), ("lt", 1000.5), *SET],
    ),
    _field("company.size_band", [("gte", "1001-5000"), ("eq", "201-500"), *SET]),
    _field("company.attributes.tier", [("eq", "gold"), *SET]),
)

filters = st.sampled_from(
    [
        {"property": "total", "op": "gt", "value": 500},
        {"property": "total", "op": "gte", "value": 500},
        {"property": "total", "op": "between", "value": [100, 500]},
        {"property": "total", "op": "eq", "value": 500},
        {"property": "total", "op": "neq", "value": 100},
        {"property": "total", "op": "in", "value": [100, 500.5]},
        {"property": "total", "op": "is_set"},
        {"property": "category", "op": "eq", "value": "Books"},
        {"property": "category", "op": "in", "value": ["Books", "Science Fiction"]},
        {"property": "category", "op": "not_in", "value": ["Books"]},
        {"property": "category", "op": "contains", "value": "Fiction"},
        {"property": "category", "op": "starts_with", "value": "Sci"},
        {"property": "category", "op": "not_set"},
        {"property": "category", "op": "eq", "value": 3},
        {"property": "machine", "op": "eq", "value": True},
        {"property": "machine", "op": "neq", "value": True},
        {"property": "category", "op": "eq", "value": "books"},
        {"property": "category", "op": "eq", "value": "ÄRZTE"},
        {"property": "category", "op": "in", "value": ["SCIENCE FICTION", "ß"]},
        {"property": "category", "op": "starts_with", "value": "sCI"},
        {"property": "category", "op": "neq", "value": "BOOKS"},
        {"property": ["product", "category"], "op": "eq", "value": "books"},
        {"property": ["product", "category"], "op": "in", "value": ["Books", "ärzte"]},
        {"property": ["product", "category"], "op": "not_in", "value": ["BOOKS"]},
        {"property": ["product", "category"], "op": "contains", "value": "OOK"},
        {"property": ["product", "category"], "op": "is_set"},
        {"property": ["product", "category"], "op": "not_set"},
        {"property": ["product", "category"], "op": "eq", "value": 3},
        {"property": ["product", "category", "name"], "op": "eq", "value": "Books"},
        {"property": ["product", "sub", "category"], "op": "starts_with", "value": "B"},
        {"property": ["product"], "op": "eq", "value": "BOOKS"},
    ]
).flatmap(_case)
bounded_windows = st.sampled_from(
    [
        {"last": {"days": 30}},
        {"last": {"hours": 24}},
        {"last": {"days": 7}},
        {"between": ["2027-01-31", "2027-01-31"]},
        {"between": ["2027-01-31T00:00:00Z", "2027-02-01T00:00:00Z"]},
    ]
)
windows = st.one_of(st.just(None), st.just({"ever": True}), bounded_windows)
counts = st.sampled_from(
    [
        {"op": "gte", "value": 1},
        {"op": "gte", "value": 2},
        {"op": "eq", "value": 0},
        {"op": "lt", "value": 2},
        {"op": "eq", "value": 2},
        {"op": "neq", "value": 1},
        {"op": "between", "value": [1, 2]},
        {"op": "lte", "value": 0},
        {"op": "gt", "value": 0},
        {"op": "gte", "value": 0},
    ]
)
aggregates = st.fixed_dictionaries(
    {
        "fn": st.sampled_from(["sum", "avg", "min", "max"]),
        "property": st.just("total"),
        "op": st.sampled_from(["gt", "gte", "lt", "lte", "eq", "neq"]),
        "value": st.sampled_from([0, 100, 500, 600.5, 1000.5]),
    }
) | st.fixed_dictionaries(
    {
        "fn": st.just("sum"),
        "property": st.just("total"),
        "op": st.just("between"),
        "value": st.just([0, 600]),
    }
)
time_tests = st.sampled_from(
    [
        {"op": "within_last", "value": {"days": 30}},
        {"op": "more_than_ago", "value": {"hours": 24}},
        {"op": "before", "value": "2027-01-31"},
        {"op": "after", "value": "2027-01-31"},
        {"op": "between", "value": ["2027-01-31", "2027-02-01"]},
    ]
)


@st.composite
def event_conditions(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": draw(st.sampled_from(EVENT_NAMES))}
    where = draw(st.lists(filters, max_size=2))
    if where:
        doc["where"] = where
    mode = draw(st.sampled_from(["plain", "count", "aggregate", "first", "last", "followed"]))
    if mode == "plain":
        window = draw(windows)
    elif mode in ("count", "aggregate"):
        doc["count" if mode == "count" else "aggregate"] = draw(
            counts if mode == "count" else aggregates
        )
        window = draw(bounded_windows)
    elif mode in ("first", "last"):
        doc[mode] = draw(time_tests)
        window = None
    else:
        follow: dict[str, Any] = {"event": draw(st.sampled_from(EVENT_NAMES))}
        follow_where = draw(st.lists(filters, max_size=1))
        if follow_where:
            follow["where"] = follow_where
        doc["not_followed_by"] = follow
        window = draw(windows)
    if window is not None:
        doc["window"] = window
    return doc


@st.composite
def email_conditions(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"email": draw(st.sampled_from(["opened", "sent", "clicked"]))}
    campaign = draw(st.sampled_from([None, "spring"]))
    if campaign:
        doc["campaign"] = campaign
    if draw(st.booleans()):
        doc["include_machine"] = True
    if draw(st.booleans()):
        doc["count"] = draw(counts)
        doc["window"] = draw(bounded_windows)
    else:
        window = draw(windows)
        if window is not None:
            doc["window"] = window
    return doc


list_conditions = st.builds(
    lambda slot, status: {"list": slot} | ({} if status is None else {"status": status}),
    st.sampled_from([1, 2]),
    st.sampled_from([None, "subscribed", "unsubscribed", "pending", "any"]),
)
SEGMENTS = {
    101: {"field": "contact.seniority", "op": "gte", "value": "director"},
    102: {
        "any": [{"segment": 101}, {"event": "Order Completed", "window": {"last": {"days": 30}}}]
    },
}
simple = st.one_of(field_conditions, event_conditions(), email_conditions(), list_conditions)
account_conditions = st.builds(
    lambda n, where: {"account": {"min_contacts": n, "where": where}},
    st.integers(1, 3),
    simple,
)
leaves = st.one_of(
    simple, st.sampled_from([{"segment": 101}, {"segment": 102}]), account_conditions
)
definitions = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(children, max_size=3).map(lambda xs: {"any": xs}),
        children.map(lambda x: {"not": x}),
    ),
    max_leaves=6,
)


def _with_lists(doc: Any, ids: dict[int, int]) -> Any:
    if isinstance(doc, dict):
        return {k: (ids[v] if k == "list" else _with_lists(v, ids)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_with_lists(v, ids) for v in doc]
    return doc


def _store(
    db: Database, people: list[dict[str, Any]], firms: list[dict[str, Any]]
) -> tuple[int, dict[int, int]]:
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        company_ids = [
            seeding.company(conn, ws, f"c{i}.example", **firm) for i, firm in enumerate(firms)
        ]
        list_ids = {slot: seeding.mailing_list(conn, ws, f"list {slot}") for slot in (1, 2)}
        for i, person in enumerate(people):
            values = {k: v for k, v in person.items() if k not in ("company", "lists", "events")}
            if person["company"] is not None:
                values["company_id"] = company_ids[person["company"]]
            contact_id = seeding.contact(conn, ws, f"p{i}@c.example", **values)
            for slot, status in zip((1, 2), person["lists"], strict=True):
                if status is not None:
                    seeding.subscribe(conn, ws, list_ids[slot], contact_id, status)
            for name, at, props, type_ in person["events"]:
                seeding.event(conn, ws, contact_id, name, at, props, type_)
        seeding.event(conn, ws, None, "Order Completed", NOW, {"total": 1000})  # anonymous
    return ws, list_ids


_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _agree(
    db: Database, doc: Any, people: list[dict[str, Any]], firms: list[dict[str, Any]]
) -> None:
    ws, list_ids = _store(db, people, firms)
    defn = seeding.parse(_with_lists(doc, list_ids), SEGMENTS)
    found = seeding.members(db, defn, ws)
    assert found == seeding.evaluated(db, defn, ws)
    # Narrowed to some contacts (incremental re-evaluation), the answer is the same.
    with db.engine.connect() as conn:
        ids = sorted(
            conn.scalars(compile_members(seeding.parse({"all": []}), workspace_id=ws, now=NOW))
        )
        some = ids[::2]
        narrowed = set(
            conn.scalars(compile_members(defn, workspace_id=ws, now=NOW, contact_ids=some))
        )
    assert narrowed == found & set(some)
    event(f"members: {'none' if not found else 'all' if len(found) == len(people) else 'some'}")


@settings(_SETTINGS, max_examples=100)
@given(doc=leaves, people=contacts, firms=companies)
def test_each_condition_compiles_to_what_the_evaluator_decides(
    db: Database, doc: dict[str, Any], people: list[dict[str, Any]], firms: list[dict[str, Any]]
) -> None:
    _agree(db, doc, people, firms)


text_conditions = st.one_of(
    text_fields,
    st.builds(
        lambda name, where: {"event": name, "where": where},
        st.sampled_from(EVENT_NAMES[:3]),
        st.lists(filters, min_size=1, max_size=2),
    ),
)


@settings(_SETTINGS, max_examples=50)
@given(doc=text_conditions, people=contacts, firms=companies)
def test_text_in_any_case_and_nested_properties_compile_to_what_the_evaluator_decides(
    db: Database, doc: dict[str, Any], people: list[dict[str, Any]], firms: list[dict[str, Any]]
) -> None:
    _agree(db, doc, people, firms)


@settings(_SETTINGS, max_examples=60)
@given(doc=event_conditions(), people=crowded, firms=companies)
def test_behaviour_on_tied_timestamps_compiles_to_what_the_evaluator_decides(
    db: Database, doc: dict[str, Any], people: list[dict[str, Any]], firms: list[dict[str, Any]]
) -> None:
    _agree(db, doc, people, firms)


account_on_behaviour = st.builds(
    lambda n, where: {"account": {"min_contacts": n, "where": where}},
    st.integers(1, 3),
    st.one_of(
        st.sampled_from(EVENT_NAMES).map(lambda name: {"event": name}),
        event_conditions(),
        email_conditions(),
    ),
)
colleagues = people(events_at(TIMES, min_size=3), companies=(0, 1))


@settings(_SETTINGS, max_examples=40)
@given(doc=account_on_behaviour, people=colleagues, firms=companies)
def test_account_conditions_count_colleagues_however_narrowed(
    db: Database, doc: dict[str, Any], people: list[dict[str, Any]], firms: list[dict[str, Any]]
) -> None:
    _agree(db, doc, people, firms)


@settings(_SETTINGS, max_examples=80)
@given(doc=definitions, people=contacts, firms=companies)
def test_nested_definitions_compile_to_what_the_evaluator_decides(
    db: Database, doc: dict[str, Any], people: list[dict[str, Any]], firms: list[dict[str, Any]]
) -> None:
    _agree(db, doc, people, firms)
