"""One human-readable line for any definition, for lists, logs and the CLI.

``seniority in (director, vp) AND performed Order Completed (total > 500) >= 2 times in
the last 365 days AND NOT (opened email >= 5 times in the last 30 days)``. Values with
spaces or punctuation are quoted as JSON strings so the line cannot be misread.
"""

from __future__ import annotations

import json
import re
from typing import Any

from postwise.segments.definition import (
    TEXT_OPS,
    AccountCondition,
    Aggregate,
    AllGroup,
    AnyGroup,
    Count,
    Definition,
    EmailCondition,
    EventCondition,
    FieldCondition,
    ListCondition,
    Node,
    NotGroup,
    PropertyFilter,
    SegmentCondition,
    TimeTest,
    Window,
)
from postwise.segments.fields import ValueType

_PLAIN = re.compile(r"[\w@.:+/\-]+")
_NAME = re.compile(r"[\w@.:+/\- ]+")
_SYMBOLS = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_WORDS = {
    "in": "in",
    "not_in": "not in",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
}


def describe(defn: Definition) -> str:
    return _node(defn.root, top=True, defn=defn)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) else json.dumps(value, ensure_ascii=False)
    return str(value)


def _name(name: str) -> str:
    """Event names read plainly ("performed Order Completed") unless they could blur
    into the surrounding words."""
    words = f" {name} "
    if _NAME.fullmatch(name) and not any(w in words for w in (" AND ", " OR ", " NOT ")):
        return name.strip() if name == name.strip() else json.dumps(name, ensure_ascii=False)
    return json.dumps(name, ensure_ascii=False)


def _span(value: Any) -> str:
    days, hours = value.get("days"), value.get("hours")
    if days is not None:
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours} hour{'s' if hours != 1 else ''}"


def _test(op: str, value: Any) -> str:
    if op in _SYMBOLS:
        return f"{_SYMBOLS[op]} {_value(value)}"
    if op in ("in", "not_in"):
        return f"{_WORDS[op]} ({', '.join(_value(v) for v in value)})"
    if op in _WORDS:
        return f"{_WORDS[op]} {_value(value)}"
    if op == "between":
        return f"between {_value(value[0])} and {_value(value[1])}"
    if op == "is_set":
        return "is set"
    if op == "not_set":
        return "is not set"
    if op == "within_last":
        return f"within the last {_span(value)}"
    if op == "more_than_ago":
        return f"more than {_span(value)} ago"
    if op == "within_next":
        return f"within the next {_span(value)}"
    if op == "anniversary_within":
        return f"anniversary within the next {_span(value)}"
    if op == "before":
        return f"before {_value(value)}"
    if op == "after":
        return f"after {_value(value)}"
    return f"{op} {_value(value)}"


def _field_name(name: str) -> str:
    name = name.removeprefix("contact.")
    return name.replace("attributes.", "")


def _group(node: Node, defn: Definition) -> str:
    text = _node(node, top=False, defn=defn)
    if (
        isinstance(node, AllGroup | AnyGroup)
        and len(node.all if isinstance(node, AllGroup) else node.any) > 1
    ):
        return f"({text})"
    return text


def _node(node: Node, *, top: bool, defn: Definition) -> str:
    if isinstance(node, AllGroup):
        return " AND ".join(_group(n, defn) for n in node.all) if node.all else "everyone"
    if isinstance(node, AnyGroup):
        return " OR ".join(_group(n, defn) for n in node.any) if node.any else "no one"
    if isinstance(node, NotGroup):
        inner = _node(node.not_, top=False, defn=defn)
        simple = not isinstance(node.not_, AllGroup | AnyGroup | NotGroup)
        return f"NOT {inner}" if simple and " AND " not in inner else f"NOT ({inner})"
    if isinstance(node, FieldCondition):
        text = f"{_field_name(node.field)} {_test(node.op, node.value)}"
        folds = (
            not node.case_sensitive
            and node.op in TEXT_OPS
            and defn.field(node.field).type is ValueType.STRING
        )
        return text + (" (any case)" if folds else "")
    if isinstance(node, EventCondition):
        return _event(node)
    if isinstance(node, EmailCondition):
        return _email(node)
    if isinstance(node, ListCondition):
        return {
            "subscribed": f"subscribed to list {node.list}",
            "unsubscribed": f"unsubscribed from list {node.list}",
            "pending": f"pending on list {node.list}",
            "any": f"on list {node.list}",
        }[node.status]
    if isinstance(node, SegmentCondition):
        return f"in segment {node.segment}"
    if isinstance(node, AccountCondition):
        where = _node(node.account.where, top=False, defn=defn)
        return f"company has >= {node.account.min_contacts} contacts where ({where})"
    raise TypeError(f"not a segment node: {node!r}")


def _window(window: Window | None) -> str:
    if window is None or window.ever:
        return ""
    if window.last is not None:
        return f" in the last {_span(window.last.model_dump(exclude_none=True))}"
    assert window.between is not None
    return f" between {window.between[0]} and {window.between[1]}"


def _filters(filters: list[PropertyFilter]) -> str:
    if not filters:
        return ""
    return " (" + ", ".join(_filter(f) for f in filters) + ")"


def _filter(flt: PropertyFilter) -> str:
    name = ".".join(map(_value, flt.path)) if isinstance(flt.property, list) else None
    if name is None or not all(_PLAIN.fullmatch(k) and "." not in k for k in flt.path):
        name = (
            _value(flt.property)
            if isinstance(flt.property, str)
            else json.dumps(flt.property, ensure_ascii=False)
        )
    text = f"{name} {_test(flt.op, flt.value)}"
    return text + (" (any case)" if flt.folds else "")


def _times(count: Count | None, did: str, subject: str) -> str:
    if count is None or (count.existence and count.holds(1) and not count.holds(0)):
        return f"{did} {subject}"
    if count.existence and count.holds(0) and not count.holds(1):
        return f"did not perform {subject}" if did == "performed" else f"no {did} {subject}"
    if count.op == "between":
        return f"{did} {subject} between {count.value[0]} and {count.value[1]} times"
    return f"{did} {subject} {_SYMBOLS[count.op]} {count.value} times"


def _aggregate(agg: Aggregate, subject: str) -> str:
    return f"{agg.fn} of {_value(agg.property)} over {subject} {_test(agg.op, agg.value)}"


def _time_test(which: str, test: TimeTest, subject: str) -> str:
    return f"{which} performed {subject} {_test(test.op, test.value)}"


def _event(cond: EventCondition) -> str:
    subject = f"{_name(cond.event)}{_filters(cond.where)}"
    if cond.aggregate is not None:
        return _aggregate(cond.aggregate, subject) + _window(cond.window)
    if cond.first is not None:
        return _time_test("first", cond.first, subject)
    if cond.last is not None:
        return _time_test("last", cond.last, subject)
    if cond.not_followed_by is not None:
        follow = cond.not_followed_by
        then = f"{_name(follow.event)}{_filters(follow.where)}"
        return f"performed {subject}{_window(cond.window)} and no {then} since"
    return _times(cond.count, "performed", subject) + _window(cond.window)


def _email(cond: EmailCondition) -> str:
    subject = "email"
    if cond.campaign is not None:
        subject += f" of campaign {_value(cond.campaign)}"
    if cond.workflow is not None:
        subject += f" of workflow {_value(cond.workflow)}"
    text = _times(cond.count, cond.email, subject) + _window(cond.window)
    return text + (" (machines included)" if cond.include_machine else "")
