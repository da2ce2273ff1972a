"""Bad definitions are refused with a 422 whose ``field`` names the offending node."""

from __future__ import annotations

from typing import Any

import pytest

from postwise.segments.context import load_context
from postwise.segments.definition import (
    MAX_DEPTH,
    InvalidSegment,
    SchemaContext,
    parse_definition,
)
from postwise.storage.database import Database
from postwise.storage.tables import AttributeDefinition
from tests.segments import seeding
from tests.segments.seeding import ATTRIBUTES, parse

ORDER = {"event": "Order Completed"}


def refused(doc: Any, segments: dict[int, Any] | None = None, **ctx: Any) -> InvalidSegment:
    context = SchemaContext(attributes=ATTRIBUTES, segments=segments or {}, **ctx)
    with pytest.raises(InvalidSegment) as caught:
        parse_definition(doc, context)
    assert caught.value.status == 422
    return caught.value


@pytest.mark.parametrize(
    ("doc", "path", "code"),
    [
        # unknown fields and attributes
        (
            {"all": [{"field": "contact.shoe_size", "op": "eq", "value": 1}]},
            "all[0].field",
            "unknown_field",
        ),
        ({"field": "contact.attributes.undeclared", "op": "is_set"}, "field", "unknown_field"),
        ({"field": "company.attributes.plan", "op": "is_set"}, "field", "unknown_field"),
        # operators that do not fit the type
        (
            {"all": [ORDER, {"any": [{"field": "contact.job_title", "op": "gt", "value": "a"}]}]},
            "all[1].any[0].op",
            "invalid_operator",
        ),
        (
            {"field": "contact.attributes.vip", "op": "contains", "value": "x"},
            "op",
            "invalid_operator",
        ),
        ({"field": "contact.country", "op": "gte", "value": "US"}, "op", "invalid_operator"),
        (
            {"field": "contact.created_at", "op": "anniversary_within", "value": {"days": 3}},
            "op",
            "invalid_operator",
        ),
        # bad values
        ({"field": "contact.seniority", "op": "eq", "value": "boss"}, "value", "invalid_segment"),
        (
            {"field": "contact.seniority", "op": "in", "value": ["vp", "boss"]},
            "value[1]",
            "invalid_segment",
        ),
        (
            {"field": "company.employee_count", "op": "gt", "value": "1000"},
            "value",
            "invalid_segment",
        ),
        (
            {"field": "company.employee_count", "op": "between", "value": [10, 1]},
            "value",
            "invalid_segment",
        ),
        (
            {"field": "contact.attributes.vip", "op": "eq", "value": "yes"},
            "value",
            "invalid_segment",
        ),
        ({"field": "contact.job_title", "op": "in", "value": []}, "value", "invalid_segment"),
        ({"field": "contact.job_title", "op": "eq", "value": "a\x00b"}, "value", "invalid_segment"),
        ({"field": "contact.job_title", "op": "is_set", "value": "x"}, "value", "invalid_segment"),
        (
            {"field": "contact.attributes.birthday", "op": "within_last", "value": {"hours": 3}},
            "value",
            "invalid_segment",
        ),
        (
            {"field": "contact.created_at", "op": "within_last", "value": {"days": 0}},
            "value.days",
            "invalid_segment",
        ),
        (
            {"field": "contact.created_at", "op": "within_last", "value": {"weeks": 2}},
            "value.weeks",
            "invalid_segment",
        ),
        # malformed dates
        (
            {"field": "contact.created_at", "op": "gt", "value": "2026-02-30"},
            "value",
            "invalid_date",
        ),
        (
            {
                "field": "contact.attributes.birthday",
                "op": "between",
                "value": ["2020-01-01", "soon"],
            },
            "value[1]",
            "invalid_date",
        ),
        (
            {"all": [{"event": "X", "window": {"between": ["2026-01-01", "2026-13-01"]}}]},
            "all[0].window.between[1]",
            "invalid_date",
        ),
        (
            {"event": "X", "last": {"op": "before", "value": "yesterday"}},
            "last.value",
            "invalid_date",
        ),
        # counts, windows and the structure of event conditions
        (
            {
                "all": [
                    ORDER,
                    {
                        "any": [
                            {
                                "event": "A",
                                "count": {"op": "gte", "value": -1},
                                "window": {"last": {"days": 1}},
                            }
                        ]
                    },
                ]
            },
            "all[1].any[0].count.value",
            "invalid_segment",
        ),
        ({"event": "A", "count": {"op": "about", "value": 2}}, "count.op", "invalid_segment"),
        (
            {
                "event": "A",
                "count": {"op": "between", "value": [3, 1]},
                "window": {"last": {"days": 1}},
            },
            "count.value",
            "invalid_segment",
        ),
        (
            {"event": "A", "window": {"last": {"days": 1}, "ever": True}},
            "window",
            "invalid_segment",
        ),
        (
            {
                "event": "A",
                "aggregate": {"fn": "sum", "property": "total", "op": "gt", "value": 5},
                "count": {"op": "gte", "value": 2},
            },
            "aggregate",
            "invalid_segment",
        ),
        (
            {
                "event": "A",
                "first": {"op": "within_last", "value": {"days": 3}},
                "window": {"last": {"days": 3}},
            },
            "window",
            "invalid_segment",
        ),
        ({"event": "", "count": {"op": "gte", "value": 1}}, "event", "invalid_segment"),
        (
            {"event": "A", "where": [{"property": 'a"b', "op": "is_set"}]},
            "where[0].property",
            "invalid_segment",
        ),
        (
            {"event": "A", "where": [{"property": "total", "op": "gt", "value": "500"}]},
            "where[0].value",
            "invalid_segment",
        ),
        (
            {"event": "A", "where": [{"property": "total", "op": "in", "value": [1, "a"]}]},
            "where[0].value",
            "invalid_segment",
        ),
        (
            {"event": "A", "where": [{"property": "total", "op": "like", "value": "a"}]},
            "where[0].op",
            "invalid_segment",
        ),
        ({"email": "read"}, "email", "invalid_segment"),
        ({"email": "opened", "include_machine": "yes"}, "include_machine", "invalid_segment"),
        ({"list": 0}, "list", "invalid_segment"),
        ({"list": 1, "status": "gone"}, "status", "invalid_segment"),
        ({"list": "1"}, "list", "invalid_segment"),
        # structure
        ({"all": [ORDER, {"bogus": 1}]}, "all[1]", "invalid_segment"),
        ({"all": [ORDER, {"event": "A", "color": "red"}]}, "all[1].color", "invalid_segment"),
        ({"all": [ORDER], "any": [ORDER]}, "", "invalid_segment"),
        ({"all": ORDER}, "all", "invalid_segment"),
        ({"not": [ORDER]}, "not", "invalid_segment"),
        ([ORDER], "", "invalid_segment"),
        (
            {"account": {"min_contacts": 0, "where": ORDER}},
            "account.min_contacts",
            "invalid_segment",
        ),
        ({"account": {"min_contacts": 2}}, "account.where", "invalid_segment"),
        # nested property paths and case sensitivity
        (
            {"all": [{"event": "A", "where": [{"property": [], "op": "is_set"}]}]},
            "all[0].where[0].property",
            "invalid_segment",
        ),
        (
            {"event": "A", "where": [{"property": ["product", 'x"y'], "op": "is_set"}]},
            "where[0].property[1]",
            "invalid_segment",
        ),
        (
            {"event": "A", "where": [{"property": ["a"] * 9, "op": "is_set"}]},
            "where[0].property",
            "invalid_segment",
        ),
        (
            {"event": "A", "where": [{"property": ["a", 1], "op": "is_set"}]},
            "where[0].property[1]",
            "invalid_segment",
        ),
        (
            {
                "event": "A",
                "where": [{"property": "a", "op": "gt", "value": 1, "case_sensitive": True}],
            },
            "where[0].case_sensitive",
            "invalid_segment",
        ),
        (
            {"field": "contact.seniority", "op": "eq", "value": "vp", "case_sensitive": True},
            "case_sensitive",
            "invalid_segment",
        ),
        (
            {"field": "contact.job_title", "op": "eq", "value": "x", "case_sensitive": "no"},
            "case_sensitive",
            "invalid_segment",
        ),
        (
            {"account": {"min_contacts": 2, "where": {"field": "x.y", "op": "is_set"}}},
            "account.where.field",
            "unknown_field",
        ),
    ],
)
def test_refusals_name_the_path(doc: Any, path: str, code: str) -> None:
    error = refused(doc)
    assert (error.field or "") == path, error.message
    assert error.code == code
    assert error.message


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"event": "A", "count": {"op": "gte", "value": 2}}, "window"),
        ({"event": "A", "count": {"op": "eq", "value": 3}, "window": {"ever": True}}, "window"),
        (
            {"event": "A", "aggregate": {"fn": "sum", "property": "total", "op": "gt", "value": 5}},
            "window",
        ),
        ({"email": "opened", "count": {"op": "lt", "value": 5}}, "window"),
        (
            {"all": [{"not": {"email": "opened", "count": {"op": "gte", "value": 5}}}]},
            "all[0].not.window",
        ),
        ({"event": "A", "window": {"last": {"days": 4000}}}, "window.last.days"),
        ({"event": "A", "window": {"between": ["2000-01-01", "2020-01-01"]}}, "window.between"),
    ],
)
def test_unbounded_scans_are_refused(doc: Any, path: str) -> None:
    error = refused(doc)
    assert error.field == path


def test_existence_needs_no_window() -> None:
    """ "Performed ever" and "never performed" are one index probe per contact, not a scan."""
    parse({"event": "A", "count": {"op": "gte", "value": 1}})
    parse({"event": "A", "count": {"op": "eq", "value": 0}})
    parse({"email": "clicked", "count": {"op": "lt", "value": 1}, "window": {"ever": True}})


def test_nesting_deeper_than_the_limit_is_refused_at_the_level_that_breaks_it() -> None:
    doc: Any = ORDER
    for _ in range(MAX_DEPTH):
        doc = {"all": [doc]}
    parse(doc)
    error = refused({"not": doc})
    assert error.field == "not" + ".all[0]" * (MAX_DEPTH - 1) + ".all"
    assert error.field is not None and "levels" in error.message
    assert refused({"any": [{"all": [ORDER]}]}, max_depth=1).field == "any[0].all"


def test_too_many_conditions_are_refused() -> None:
    assert "at most" in refused({"any": [ORDER] * 600}).message


def test_segment_references_must_exist_and_not_form_cycles() -> None:
    assert refused({"segment": 9}).code == "unknown_segment"
    loop = {1: {"any": [ORDER, {"segment": 2}]}, 2: {"all": [{"segment": 1}]}}
    error = refused({"all": [ORDER, {"segment": 1}]}, loop)
    assert error.code == "segment_cycle" and error.field == "all[1].segment"
    assert "1 -> 2 -> 1" in error.message
    # Saving segment 1 itself so that it refers to 2, which refers back to 1.
    error = refused({"segment": 2}, {2: {"segment": 1}}, segment_id=1)
    assert error.code == "segment_cycle" and "1 -> 2 -> 1" in error.message
    assert refused({"segment": 1}, segment_id=1).code == "segment_cycle"


def test_an_invalid_referenced_segment_is_reported_where_it_is_referenced() -> None:
    bad = {3: {"all": [{"field": "contact.nope", "op": "is_set"}]}}
    error = refused({"any": [ORDER, {"segment": 3}]}, bad)
    assert error.field == "any[1].segment"
    assert "segment 3 is invalid at all[0].field" in error.message


def test_a_diamond_of_references_is_not_a_cycle() -> None:
    segments = {1: {"segment": 3}, 2: {"segment": 3}, 3: ORDER}
    defn = parse({"all": [{"segment": 1}, {"segment": 2}]}, segments)
    assert set(defn.segments) == {1, 2, 3}


def test_parsed_documents_round_trip() -> None:
    doc = {
        "all": [
            {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]},
            {
                "event": "Order Completed",
                "where": [{"property": "total", "op": "gt", "value": 500}],
                "count": {"op": "gte", "value": 2},
                "window": {"last": {"days": 365}},
            },
            {"not": {"email": "opened", "campaign": "spring", "window": {"last": {"days": 30}}}},
            {"list": 12, "status": "any"},
            {"account": {"min_contacts": 3, "where": {"event": "Page Viewed"}}},
        ]
    }
    defn = parse(doc)
    assert defn.doc() == doc
    assert parse(defn.doc()).doc() == doc


def test_injection_attempts_are_just_values() -> None:
    """Names and values are never SQL; here they parse as the plain strings they are (the
    compiler tests run them against both databases)."""
    nasty = "x'); DROP TABLE contacts; --"
    defn = parse(
        {
            "all": [
                {"field": "contact.job_title", "op": "eq", "value": nasty},
                {
                    "event": nasty,
                    "where": [{"property": "a' OR 1=1 --", "op": "eq", "value": nasty}],
                },
            ]
        }
    )
    assert nasty in str(defn.doc())


def test_load_context_reads_this_workspaces_attribute_types(db: Database) -> None:
    with db.engine.begin() as conn:
        ws = seeding.workspace(conn)
        other = seeding.workspace(conn)
    with db.tenant(ws) as session:
        session.add(AttributeDefinition(entity="contact", name="plan", type="string"))
        session.add(AttributeDefinition(entity="company", name="arr", type="number"))
    with db.tenant(other) as session:
        session.add(AttributeDefinition(entity="contact", name="secret", type="string"))
    with db.tenant(ws) as session:
        ctx = load_context(session, {4: {"list": 1}}, segment_id=9)
    assert ctx.attributes == {("contact", "plan"): "string", ("company", "arr"): "number"}
    assert ctx.segment_id == 9 and set(ctx.segments) == {4}
    parse_definition(
        {"all": [{"field": "company.attributes.arr", "op": "gt", "value": 1}, {"segment": 4}]}, ctx
    )
    with pytest.raises(InvalidSegment) as caught:
        parse_definition({"field": "contact.attributes.secret", "op": "is_set"}, ctx)
    assert caught.value.code == "unknown_field"
    with pytest.raises(InvalidSegment) as caught:
        parse_definition({"field": "company.attributes.arr", "op": "contains", "value": "x"}, ctx)
    assert caught.value.code == "invalid_operator"
