"""One readable line per definition."""

from __future__ import annotations

from typing import Any

import pytest

from postwise.segments.render import describe
from tests.segments.seeding import parse


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        (
            {
                "all": [
                    {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]},
                    {
                        "event": "Order Completed",
                        "where": [{"property": "total", "op": "gt", "value": 500}],
                        "count": {"op": "gte", "value": 2},
                        "window": {"last": {"days": 365}},
                    },
                    {
                        "not": {
                            "email": "opened",
                            "count": {"op": "gte", "value": 5},
                            "window": {"last": {"days": 30}},
                        }
                    },
                ]
            },
            "seniority in (director, vp) AND performed Order Completed (total > 500) >= 2 times "
            "in the last 365 days AND NOT opened email >= 5 times in the last 30 days",
        ),
        (
            {
                "any": [
                    {"list": 3},
                    {
                        "all": [
                            {"segment": 7},
                            {"field": "company.employee_count", "op": "gt", "value": 1000},
                        ]
                    },
                ]
            },
            "subscribed to list 3 OR (in segment 7 AND company.employee_count > 1000)",
        ),
        (
            {
                "email": "opened",
                "count": {"op": "eq", "value": 0},
                "window": {"last": {"days": 90}},
            },
            "no opened email in the last 90 days",
        ),
        (
            {"email": "clicked", "campaign": "spring sale", "include_machine": True},
            'clicked email of campaign "spring sale" (machines included)',
        ),
        (
            {
                "event": "Added to Cart",
                "window": {"last": {"hours": 24}},
                "not_followed_by": {"event": "Order Completed"},
            },
            "performed Added to Cart in the last 24 hours and no Order Completed since",
        ),
        (
            {
                "event": "Order Completed",
                "aggregate": {"fn": "sum", "property": "total", "op": "gt", "value": 500},
                "window": {"between": ["2026-01-01", "2026-12-31"]},
            },
            "sum of total over Order Completed > 500 between 2026-01-01 and 2026-12-31",
        ),
        (
            {"event": "Logged In", "last": {"op": "more_than_ago", "value": {"days": 1}}},
            "last performed Logged In more than 1 day ago",
        ),
        (
            {
                "not": {
                    "all": [
                        {"field": "contact.attributes.plan", "op": "not_set"},
                        {"field": "contact.created_at", "op": "within_last", "value": {"days": 7}},
                    ]
                }
            },
            "NOT (plan is not set AND created_at within the last 7 days)",
        ),
        (
            {
                "account": {
                    "min_contacts": 3,
                    "where": {
                        "event": "Page Viewed",
                        "where": [{"property": "path", "op": "eq", "value": "/pricing"}],
                        "window": {"last": {"days": 7}},
                    },
                }
            },
            "company has >= 3 contacts where "
            "(performed Page Viewed (path = /pricing (any case)) in the last 7 days)",
        ),
        (
            {"event": "Did it AND more", "count": {"op": "eq", "value": 0}},
            'did not perform "Did it AND more"',
        ),
        ({"all": []}, "everyone"),
        (
            {
                "field": "contact.attributes.birthday",
                "op": "anniversary_within",
                "value": {"days": 7},
            },
            "birthday anniversary within the next 7 days",
        ),
    ],
)
def test_describe(doc: Any, line: str) -> None:
    segments = {7: {"field": "contact.seniority", "op": "is_set"}}
    assert describe(parse(doc, segments)) == line


def test_values_that_could_be_misread_are_quoted() -> None:
    doc = {"field": "contact.job_title", "op": "eq", "value": 'x" OR y', "case_sensitive": True}
    assert describe(parse(doc)) == 'job_title = "x\\" OR y"'


@pytest.mark.parametrize(
    ("doc", "line"),
    [
        (
            {"field": "contact.job_title", "op": "starts_with", "value": "head"},
            "job_title starts with head (any case)",
        ),
        (
            {
                "field": "contact.job_title",
                "op": "starts_with",
                "value": "Head",
                "case_sensitive": True,
            },
            "job_title starts with Head",
        ),
        ({"field": "contact.seniority", "op": "eq", "value": "vp"}, "seniority = vp"),
        (
            {
                "event": "Order Completed",
                "where": [
                    {"property": ["product", "category"], "op": "in", "value": ["Books", "Ärzte"]},
                    {"property": ["a.b", "c"], "op": "is_set"},
                    {"property": "utm.source", "op": "eq", "value": 3},
                ],
            },
            "performed Order Completed (product.category in (Books, Ärzte) (any case), "
            '["a.b", "c"] is set, utm.source = 3)',
        ),
    ],
)
def test_describe_says_when_case_is_ignored_and_spells_paths(doc: Any, line: str) -> None:
    assert describe(parse(doc)) == line
