"""Does one contact match a definition? Decided in memory from ``ContactFacts``.

The same rules as the compiled SQL, written a second time in Python on purpose: the
property test (tests/segments/test_property.py) generates definitions and data and
checks that both agree on both databases. Shared meaning (time bounds, JSON type
rules, enum ranges) comes from ``timing``, ``jsonsql`` and ``compiler.enum_range``,
so only the control flow is repeated here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from postwise.segments import jsonsql, timing
from postwise.segments.compiler import (
    CAMPAIGN_KEY,
    EMAIL_TYPE,
    MACHINE_KEY,
    TIME_TEST_OPS,
    WORKFLOW_KEY,
    enum_range,
)
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
    Window,
)
from postwise.segments.facts import ContactFacts, EventFact
from postwise.segments.fields import FieldSpec, ValueType

_CMP = {"eq": "eq", "neq": "ne", "gt": "gt", "gte": "ge", "lt": "lt", "lte": "le"}


def evaluate(defn: Definition, facts: ContactFacts, now: datetime) -> bool:
    return _Evaluator(defn, now).node(defn.root, facts)


def _compare(op: str, left: Any, right: Any) -> bool:
    return timing.holds(_CMP[op], left, right)  # type: ignore[arg-type]


def _text_test(value: str | None, op: str, arg: Any, folds: bool = False) -> bool:
    if value is None:
        return False
    if folds:
        value = jsonsql.fold(value)
        arg = jsonsql.fold_value(arg)
    if op == "eq":
        return value == arg
    if op == "neq":
        return value != arg
    if op == "in":
        return value in arg
    if op == "not_in":
        return value not in arg
    if op == "contains":
        return str(arg) in value
    if op == "starts_with":
        return value.startswith(str(arg))
    raise ValueError(op)


def _number_test(value: float | None, op: str, arg: Any) -> bool:
    if value is None:
        return False
    if op == "between":
        return float(arg[0]) <= value <= float(arg[1])
    if op == "in":
        return value in [float(a) for a in arg]
    if op == "not_in":
        return value not in [float(a) for a in arg]
    return _compare(op, value, float(arg))


def _bounds_hold(value: Any, bounds: Iterable[tuple[Any, Any]]) -> bool:
    return all(timing.holds(cmp, value, bound) for cmp, bound in bounds)


def field_holds(
    spec: FieldSpec, op: str, arg: Any, row: Any, now: datetime, case_sensitive: bool = False
) -> bool:
    if row is None:
        return False
    attrs = row.get("attributes") if spec.attribute is not None else None
    if spec.type is ValueType.LIST:
        key = spec.attribute or ""
        if op == "is_set":
            return jsonsql.py_is_set(attrs, key)
        if op == "not_set":
            return not jsonsql.py_is_set(attrs, key)
        if op == "contains":
            return jsonsql.py_has_item(attrs, key, arg)
        if op == "not_contains":
            return jsonsql.py_is_array(attrs, key) and not jsonsql.py_has_item(attrs, key, arg)
        return any(jsonsql.py_has_item(attrs, key, str(a)) for a in arg)
    if spec.attribute is not None and op in ("is_set", "not_set"):
        present = jsonsql.py_is_set(attrs, spec.attribute)
        return present if op == "is_set" else not present
    value = spec.value(row)
    if op == "is_set":
        return value is not None
    if op == "not_set":
        return value is None
    if value is None:
        return False
    kind = spec.type
    if kind is ValueType.ENUM:
        if op in ("gt", "gte", "lt", "lte", "between"):
            return value in enum_range(spec, op, arg)
        return _text_test(value, op, arg)
    if kind is ValueType.STRING:
        return _text_test(value, op, arg, not case_sensitive and op in TEXT_OPS)
    if kind is ValueType.NUMBER:
        return _number_test(float(value), op, arg)
    if kind is ValueType.BOOLEAN:
        return bool(value == bool(arg))
    if kind is ValueType.DATE:
        if op == "anniversary_within":
            return str(value)[5:10] in timing.anniversary_days(now, int(arg["days"]))
        return _bounds_hold(value, timing.day_bounds(op, arg, now))
    return _bounds_hold(value, timing.moment_bounds(op, arg, now))


def property_holds(flt: PropertyFilter, properties: Any) -> bool:
    op, arg, key = flt.op, flt.value, flt.path
    if op in ("is_set", "not_set"):
        present = jsonsql.py_is_set(properties, key)
        return present if op == "is_set" else not present
    if op in ("eq", "neq") and isinstance(arg, bool):
        flag = jsonsql.py_boolean(properties, key)
        if flag is None:
            return False
        return flag == arg if op == "eq" else flag != arg
    numeric = op in ("gt", "gte", "lt", "lte", "between") or (
        not isinstance(arg, str) and not (isinstance(arg, list) and isinstance(arg[0], str))
    )
    if numeric:
        return _number_test(jsonsql.py_number(properties, key), op, arg)
    return _text_test(jsonsql.py_text(properties, key), op, arg, flt.folds)


def _aggregate_holds(agg: Aggregate, value: float) -> bool:
    if agg.op == "between":
        return float(agg.value[0]) <= value <= float(agg.value[1])
    return _compare(agg.op, value, float(agg.value))


class _Evaluator:
    def __init__(self, defn: Definition, now: datetime) -> None:
        self.defn = defn
        self.now = now

    def node(self, node: Node, facts: ContactFacts) -> bool:
        if isinstance(node, AllGroup):
            return all(self.node(child, facts) for child in node.all)
        if isinstance(node, AnyGroup):
            return any(self.node(child, facts) for child in node.any)
        if isinstance(node, NotGroup):
            return not self.node(node.not_, facts)
        if isinstance(node, FieldCondition):
            spec = self.defn.field(node.field)
            row = facts.contact if spec.entity == "contact" else facts.company
            return field_holds(spec, node.op, node.value, row, self.now, node.case_sensitive)
        if isinstance(node, EventCondition):
            return self.event(node, facts)
        if isinstance(node, EmailCondition):
            return self.email(node, facts)
        if isinstance(node, ListCondition):
            status = facts.lists.get(node.list)
            return status is not None and (node.status == "any" or status == node.status)
        if isinstance(node, SegmentCondition):
            return self.node(self.defn.segments[node.segment], facts)
        if isinstance(node, AccountCondition):
            if facts.contact.get("company_id") is None:
                return False
            matching = sum(
                1 for peer in facts.company_contacts if self.node(node.account.where, peer)
            )
            return matching >= node.account.min_contacts
        raise TypeError(f"not a segment node: {node!r}")

    def _matching(
        self,
        events: Sequence[EventFact],
        name: str,
        filters: Sequence[PropertyFilter],
        window: Window | None,
    ) -> list[EventFact]:
        bounds = timing.window_bounds(window, self.now)
        return [
            e
            for e in events
            if e.name == name
            and all(property_holds(f, e.properties) for f in filters)
            and _bounds_hold(e.occurred_at, bounds)
        ]

    def event(self, cond: EventCondition, facts: ContactFacts) -> bool:
        found = self._matching(facts.events, cond.event, cond.where, cond.window)
        if cond.aggregate is not None:
            agg = cond.aggregate
            values = [
                v for e in found if (v := jsonsql.py_number(e.properties, agg.property)) is not None
            ]
            if agg.fn == "sum":
                return _aggregate_holds(agg, sum(values, 0.0))
            if not values:
                return False
            result = {"avg": sum(values) / len(values), "min": min(values), "max": max(values)}[
                agg.fn
            ]
            return _aggregate_holds(agg, result)
        test = cond.first or cond.last
        if test is not None:
            if not found:
                return False
            times = [e.occurred_at for e in found]
            moment = min(times) if cond.first is not None else max(times)
            op = TIME_TEST_OPS.get(test.op, test.op)
            return _bounds_hold(moment, timing.moment_bounds(op, test.value, self.now))
        if cond.not_followed_by is not None:
            if not found:
                return False
            last = max(e.occurred_at for e in found)
            follow = cond.not_followed_by
            later = self._matching(facts.events, follow.event, follow.where, None)
            return not any(e.occurred_at >= last for e in later)
        return self._count(len(found), cond.count)

    def email(self, cond: EmailCondition, facts: ContactFacts) -> bool:
        found = [
            e
            for e in self._matching(facts.events, cond.event_name, (), cond.window)
            if e.type == EMAIL_TYPE
            and (
                cond.campaign is None
                or jsonsql.py_text(e.properties, CAMPAIGN_KEY) == cond.campaign
            )
            and (
                cond.workflow is None
                or jsonsql.py_text(e.properties, WORKFLOW_KEY) == cond.workflow
            )
            and (cond.include_machine or not jsonsql.py_is_true(e.properties, MACHINE_KEY))
        ]
        return self._count(len(found), cond.count)

    @staticmethod
    def _count(n: int, count: Count | None) -> bool:
        return n >= 1 if count is None else count.holds(n)
