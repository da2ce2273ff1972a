"""Definition -> one SQLAlchemy Core ``SELECT contact_id`` (docs/segments.md#compiler).

The compiler never touches the database: it builds a statement that the caller runs
(count it, page it, join it to membership). Every value from the definition, event
and property names included, is a bound parameter. The statement means the same on
SQLite and PostgreSQL and the same as ``evaluator.evaluate`` for each contact: the
property test (tests/segments/test_property.py) holds the three to each other.

Shapes, chosen for the indexes ``events (workspace_id, name, occurred_at)`` and
``events (workspace_id, contact_id, occurred_at)`` at millions of rows:

* "performed at least once" / "never": ``[NOT] EXISTS (events of that name ... AND
  contact_id = contacts.id)``: a semi- or anti-join at the top level.
* counts and aggregates: ``[NOT] EXISTS (SELECT FROM (SELECT contact_id FROM events
  WHERE name ... GROUP BY contact_id HAVING ...) AS g WHERE g.contact_id = contacts.id)``:
  one grouped pass over the window, hashed against contacts; a test that zero events
  pass (``count < 3``, ``sum < 100``) is compiled as NOT EXISTS of its negation, so
  contacts without events are members without being enumerated.
* company fields: ``EXISTS`` on ``companies`` by ``company_id``; account conditions:
  ``company_id IN (SELECT company_id ... GROUP BY company_id HAVING count >= N)``.

Every predicate is two-valued (never NULL), so ``not`` negates exactly as Python does:
a comparison on a NULL field is guarded by ``IS NOT NULL``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Float,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FromClause, FunctionElement

from postwise.segments import jsonsql, timing
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
)
from postwise.segments.fields import FieldSpec, ValueType
from postwise.storage.tables import Company, Contact, Event, ListMembership
from postwise.storage.types import UTCDateTime

CONTACTS = cast(Table, Contact.__table__)
COMPANIES = cast(Table, Company.__table__)
EVENTS = cast(Table, Event.__table__)
# The columns segments read, as a table of their own: each condition aliases ``events``
# and SQLAlchemy builds a proxy per column of an alias, which was most of the Python
# time of compiling a definition (it runs for every incoming event in real time).
EVENT_READS = Table(
    "events",
    MetaData(),
    *[
        Column(c.name, c.type)
        for c in EVENTS.c
        if c.name in ("workspace_id", "contact_id", "type", "name", "properties", "occurred_at")
    ],
)
MEMBERSHIPS = cast(Table, ListMembership.__table__)

MACHINE_KEY = "machine"
CAMPAIGN_KEY = "campaign_key"
WORKFLOW_KEY = "workflow_key"
EMAIL_TYPE = "email"
TIME_TEST_OPS = {"before": "lt", "after": "gt"}


class text_contains(FunctionElement[Any]):  # noqa: N801 - reads like a SQL function
    """``needle`` occurs in ``haystack``, case-sensitively (LIKE would fold case on
    SQLite only and needs escaping)."""

    type = Boolean()
    inherit_cache = True


@compiles(text_contains, "postgresql")
def _pg_contains(element: text_contains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"(strpos({haystack}, {needle}) > 0)"


@compiles(text_contains, "sqlite")
def _sqlite_contains(element: text_contains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"(instr({haystack}, {needle}) > 0)"


def _text(value: str) -> ColumnElement[Any]:
    return literal(value, String())


def _num(value: Any) -> ColumnElement[Any]:
    return literal(float(value), Float())


def _moment(value: datetime) -> ColumnElement[Any]:
    return literal(value, UTCDateTime())


_CMP: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}
_OP_CMP = {"eq": "eq", "neq": "ne", "gt": "gt", "gte": "ge", "lt": "lt", "lte": "le"}


def _guarded(expr: ColumnElement[Any], *tests: ColumnElement[bool]) -> ColumnElement[bool]:
    """``tests`` on ``expr``, false rather than NULL where ``expr`` is NULL, so that a
    NOT around a field condition negates exactly as Python does."""
    return and_(expr.is_not(None), *tests)


def _unguarded(expr: ColumnElement[Any], *tests: ColumnElement[bool]) -> ColumnElement[bool]:
    """For filters inside an event subquery: NULL already drops the row there, and the
    planner estimates a bare ``expr = :v`` far better than a guarded one."""
    return and_(*tests)


Guard = Callable[..., ColumnElement[bool]]


def _number_test(
    expr: ColumnElement[Any], op: str, value: Any, guard: Guard = _guarded
) -> ColumnElement[bool]:
    if op == "between":
        return guard(expr, expr >= _num(value[0]), expr <= _num(value[1]))
    if op in ("in", "not_in"):
        values = [float(v) for v in value]
        test = expr.in_(values) if op == "in" else expr.not_in(values)
        return guard(expr, test)
    return guard(expr, _CMP[_OP_CMP[op]](expr, _num(value)))


def _text_test(
    expr: ColumnElement[Any], op: str, value: Any, guard: Guard = _guarded, folds: bool = False
) -> ColumnElement[bool]:
    """Text comparisons; with ``folds`` both sides ASCII-lower-cased (the value here,
    in Python, so it stays one bound parameter; the column in SQL)."""
    text = jsonsql.ascii_lower(expr) if folds else expr
    if folds:
        value = jsonsql.fold_value(value)
    if op == "eq":
        return guard(expr, text == _text(value))
    if op == "neq":
        return guard(expr, text != _text(value))
    if op == "in":
        return guard(expr, text.in_([str(v) for v in value]))
    if op == "not_in":
        return guard(expr, text.not_in([str(v) for v in value]))
    if op == "contains":
        return guard(expr, text_contains(text, _text(value)))
    if op == "starts_with":
        prefix = func.substr(text, literal(1, Integer()), literal(len(value), Integer()))
        return guard(expr, prefix == _text(value))
    raise ValueError(op)


def _bounds(
    expr: ColumnElement[Any], bounds: Sequence[tuple[str, Any]]
) -> list[ColumnElement[bool]]:
    out = []
    for cmp, bound in bounds:
        rhs = _moment(bound) if isinstance(bound, datetime) else _text(bound)
        out.append(_CMP[cmp](expr, rhs))
    return out


def email_tests(
    cond: EmailCondition, type_: ColumnElement[Any], properties: ColumnElement[Any]
) -> list[ColumnElement[bool]]:
    """What an email condition asks of each event of its name beyond the window."""
    tests = [type_ == _text(EMAIL_TYPE)]
    for key, value in ((CAMPAIGN_KEY, cond.campaign), (WORKFLOW_KEY, cond.workflow)):
        if value is not None:
            tests.append(cast(ColumnElement[bool], jsonsql.json_text_in(properties, key, [value])))
    if not cond.include_machine:
        tests.append(not_(jsonsql.json_is_true(properties, MACHINE_KEY)))
    return tests


def bound_tests(
    expr: ColumnElement[Any], bounds: Sequence[tuple[str, Any]]
) -> list[ColumnElement[bool]]:
    """SQL for ``timing`` bounds on ``expr`` (the evaluator's fact load reads with them)."""
    return _bounds(expr, bounds)


def field_test(
    spec: FieldSpec,
    op: str,
    value: Any,
    table: FromClause,
    now: datetime,
    case_sensitive: bool = False,
) -> ColumnElement[bool]:
    """``spec op value`` over ``table`` (the field's entity table, possibly aliased)."""
    folds = not case_sensitive and op in TEXT_OPS
    if spec.type is ValueType.LIST:
        return _list_test(spec, op, value, table)
    if spec.attribute is not None and op in ("is_set", "not_set"):
        present: ColumnElement[bool] = jsonsql.json_is_set(table.c.attributes, spec.attribute)
        return present if op == "is_set" else not_(present)
    expr = spec.expression(table)
    if op == "is_set":
        return expr.is_not(None)
    if op == "not_set":
        return expr.is_(None)
    kind = spec.type
    if kind is ValueType.ENUM:
        if op in ("gt", "gte", "lt", "lte", "between"):
            return _guarded(expr, expr.in_(enum_range(spec, op, value)))
        return _text_test(expr, op, value)
    if kind is ValueType.STRING:
        return _text_test(expr, op, value, folds=folds)
    if kind is ValueType.NUMBER:
        return _number_test(expr, op, value)
    if kind is ValueType.BOOLEAN:
        return _guarded(expr, expr == literal(bool(value), Boolean()))
    if kind is ValueType.DATE:
        if op == "anniversary_within":
            days = timing.anniversary_days(now, int(value["days"]))
            month_day = func.substr(expr, literal(6, Integer()), literal(5, Integer()))
            return _guarded(expr, month_day.in_(days))
        return _guarded(expr, *_bounds(expr, timing.day_bounds(op, value, now)))
    return _guarded(expr, *_bounds(expr, timing.moment_bounds(op, value, now)))


def enum_range(spec: FieldSpec, op: str, value: Any) -> list[str]:
    """The choices an ordered enum's ``gt``/``gte``/``lt``/``lte``/``between`` admits."""
    rank = spec.choices.index
    if op == "between":
        low, high = rank(value[0]), rank(value[1])
    else:
        at = rank(value)
        low, high = {
            "gt": (at + 1, len(spec.choices)),
            "gte": (at, len(spec.choices)),
            "lt": (0, at - 1),
            "lte": (0, at),
        }[op]
    return [c for i, c in enumerate(spec.choices) if low <= i <= high]


def _list_test(spec: FieldSpec, op: str, value: Any, table: FromClause) -> ColumnElement[bool]:
    if spec.attribute is None:
        raise ValueError(f"{spec.name}: list fields are read from attributes")
    column, key = table.c.attributes, spec.attribute
    if op == "is_set":
        return cast(ColumnElement[bool], jsonsql.json_is_set(column, key))
    if op == "not_set":
        return not_(jsonsql.json_is_set(column, key))
    if op == "contains":
        return cast(ColumnElement[bool], jsonsql.json_has_item(column, key, value))
    if op == "not_contains":
        return and_(
            jsonsql.json_is_array(column, key), not_(jsonsql.json_has_item(column, key, value))
        )
    return or_(*[jsonsql.json_has_item(column, key, str(v)) for v in value])


def property_test(flt: PropertyFilter, properties: ColumnElement[Any]) -> ColumnElement[bool]:
    """One ``where`` filter on an event's properties; types are never coerced."""
    op, value, key = flt.op, flt.value, flt.path
    if op in ("is_set", "not_set"):
        present: ColumnElement[bool] = jsonsql.json_is_set(properties, key)
        return present if op == "is_set" else not_(present)
    if op in ("eq", "neq") and isinstance(value, bool):
        expr = jsonsql.json_boolean(properties, key)
        rhs = literal(value, Boolean())
        return expr == rhs if op == "eq" else expr != rhs
    numeric = op in ("gt", "gte", "lt", "lte", "between") or (
        not isinstance(value, str) and not (isinstance(value, list) and isinstance(value[0], str))
    )
    if numeric:
        return _number_test(jsonsql.json_number(properties, key), op, value, _unguarded)
    if op in ("eq", "in"):
        values = [value] if op == "eq" else list(value)
        if flt.folds:
            values = [jsonsql.fold(v) for v in values]
        return cast(
            ColumnElement[bool],
            jsonsql.json_text_in(properties, key, values, fold=flt.folds),
        )
    return _text_test(jsonsql.json_text(properties, key), op, value, _unguarded, flt.folds)


def _count_test(count: ColumnElement[Any], test: Count) -> ColumnElement[bool]:
    if test.op == "between":
        return and_(count >= test.value[0], count <= test.value[1])
    return _CMP[_OP_CMP[test.op]](count, literal(int(test.value), Integer()))


def _aggregate_test(value: ColumnElement[Any], agg: Aggregate) -> ColumnElement[bool]:
    if agg.op == "between":
        return and_(value >= _num(agg.value[0]), value <= _num(agg.value[1]))
    return _CMP[_OP_CMP[agg.op]](value, _num(agg.value))


class _Compiler:
    def __init__(
        self,
        defn: Definition,
        workspace_id: int,
        now: datetime,
        contact_ids: Sequence[int] | None = None,
    ) -> None:
        self.defn = defn
        self.ws = workspace_id
        self.now = now
        # Re-evaluating a few contacts: every event subquery reads only their events
        # (by the (workspace_id, contact_id, occurred_at) index), since PostgreSQL does
        # not push a join condition into a GROUP BY subquery. Lifted inside account
        # conditions, which look at colleagues.
        self.only = None if contact_ids is None else list(contact_ids)
        self.sets: dict[int, _EventSet] = {}
        self.few = contact_ids is not None  # set too once a condition drives

    def node(self, node: Node, contacts: FromClause, negate: bool = False) -> ColumnElement[bool]:
        """``node`` (or its negation) with NOT pushed down to the conditions (De Morgan),
        so "NOT (opened OR clicked)" reaches PostgreSQL as two top-level NOT EXISTS,
        which it plans as anti-joins; a NOT around an OR would be re-checked per row."""
        if isinstance(node, AllGroup | AnyGroup):
            children = node.all if isinstance(node, AllGroup) else node.any
            parts = [self.node(child, contacts, negate) for child in children]
            if isinstance(node, AllGroup) != negate:
                return and_(true(), *parts) if parts else true()
            return or_(false(), *parts) if parts else false()
        if isinstance(node, NotGroup):
            return self.node(node.not_, contacts, not negate)
        if isinstance(node, SegmentCondition):
            return self.node(self.defn.segments[node.segment], contacts, negate)
        test = self.condition(node, contacts)
        return not_(test) if negate else test

    def condition(self, node: Node, contacts: FromClause) -> ColumnElement[bool]:
        if isinstance(node, FieldCondition):
            return self.field(node, contacts)
        if isinstance(node, EventCondition):
            return self.event(node, contacts)
        if isinstance(node, EmailCondition):
            return self.email(node, contacts)
        if isinstance(node, ListCondition):
            return self.list_membership(node, contacts)
        if isinstance(node, AccountCondition):
            return self.account(node, contacts)
        raise TypeError(f"not a segment node: {node!r}")

    def field(self, cond: FieldCondition, contacts: FromClause) -> ColumnElement[bool]:
        spec = self.defn.field(cond.field)
        if spec.entity == "contact":
            return field_test(spec, cond.op, cond.value, contacts, self.now, cond.case_sensitive)
        company = COMPANIES.alias()
        return exists(
            select(literal(1)).where(
                company.c.workspace_id == self.ws,
                company.c.id == contacts.c.company_id,
                field_test(spec, cond.op, cond.value, company, self.now, cond.case_sensitive),
            )
        )

    def list_membership(self, cond: ListCondition, contacts: FromClause) -> ColumnElement[bool]:
        m = MEMBERSHIPS.alias()
        tests = [
            m.c.workspace_id == self.ws,
            m.c.list_id == literal(cond.list, Integer()),
            m.c.contact_id == contacts.c.id,
        ]
        if cond.status != "any":
            tests.append(m.c.status == _text(cond.status))
        return exists(select(literal(1)).where(*tests))

    def account(self, cond: AccountCondition, contacts: FromClause) -> ColumnElement[bool]:
        peers = CONTACTS.alias()
        only, self.only = self.only, None
        try:
            where = self.node(cond.account.where, peers)
        finally:
            self.only = only
        companies = (
            select(peers.c.company_id)
            .where(
                peers.c.workspace_id == self.ws,
                peers.c.company_id.is_not(None),
                where,
            )
            .group_by(peers.c.company_id)
            .having(func.count() >= literal(cond.account.min_contacts, Integer()))
        )
        return and_(contacts.c.company_id.is_not(None), contacts.c.company_id.in_(companies))

    # behaviour

    def _events(
        self, name: str, filters: Sequence[PropertyFilter], window: Any
    ) -> tuple[FromClause, list[ColumnElement[bool]]]:
        e = EVENT_READS.alias()
        tests = [e.c.workspace_id == self.ws, e.c.name == _text(name), e.c.contact_id.is_not(None)]
        if self.only is not None:
            tests.append(e.c.contact_id.in_(self.only))
        tests += [property_test(flt, e.c.properties) for flt in filters]
        tests += _bounds(e.c.occurred_at, timing.window_bounds(window, self.now))
        return e, tests

    def event(self, cond: EventCondition, contacts: FromClause) -> ColumnElement[bool]:
        return self._member(self.event_set(cond), contacts)

    def email(self, cond: EmailCondition, contacts: FromClause) -> ColumnElement[bool]:
        return self._member(self.email_set(cond), contacts)

    def event_set(self, cond: EventCondition) -> _EventSet:
        """The contacts ``cond`` is about; built once per node (the driver and the rest
        of the statement ask for the same ones)."""
        key = id(cond)
        if key not in self.sets:
            self.sets[key] = self._event_set(cond)
        return self.sets[key]

    def email_set(self, cond: EmailCondition) -> _EventSet:
        key = id(cond)
        if key not in self.sets:
            self.sets[key] = self._email_set(cond)
        return self.sets[key]

    def _event_set(self, cond: EventCondition) -> _EventSet:
        e, tests = self._events(cond.event, cond.where, cond.window)
        if cond.aggregate is not None:
            agg = cond.aggregate
            value = jsonsql.json_number(e.c.properties, agg.property)
            tests = [*tests, value.is_not(None)]
            total: ColumnElement[Any] = getattr(func, agg.fn)(value)
            if agg.fn == "sum" and _aggregate_holds(agg, 0.0):
                return _grouped(e, tests, not_(_aggregate_test(total, agg)), positive=False)
            return _grouped(e, tests, _aggregate_test(total, agg), positive=True)
        if cond.first is not None or cond.last is not None:
            test = cast(TimeTest, cond.first or cond.last)
            moment = (
                func.min(e.c.occurred_at) if cond.first is not None else func.max(e.c.occurred_at)
            )
            op = TIME_TEST_OPS.get(test.op, test.op)
            having = _bounds(moment, timing.moment_bounds(op, test.value, self.now))
            return _grouped(e, tests, and_(*having), positive=True)
        if cond.not_followed_by is not None:
            return self._not_followed(e, tests, cond)
        return _counted(e, tests, cond.count)

    def _email_set(self, cond: EmailCondition) -> _EventSet:
        e, tests = self._events(cond.event_name, (), cond.window)
        tests += email_tests(cond, e.c.type, e.c.properties)
        return _counted(e, tests, cond.count)

    def _member(self, found: _EventSet, contacts: FromClause) -> ColumnElement[bool]:
        if found.rows is None:
            return false() if found.positive else true()
        if found.aggregated and self.few:
            # Few outer rows (a driving condition's contacts, or the contacts being
            # re-evaluated): aggregate each one's events by index probe, as PostgreSQL
            # will not push the join into a grouped subquery and would group everyone.
            column = found.rows.selected_columns[0]
            test = exists(found.rows.where(column == contacts.c.id))
        elif found.grouped:
            groups = found.rows.subquery()
            test = exists(select(literal(1)).where(groups.c.contact_id == contacts.c.id))
        else:
            test = exists(found.rows.where(found.rows.selected_columns[0] == contacts.c.id))
        return test if found.positive else not_(test)

    def _not_followed(
        self, e: FromClause, tests: list[ColumnElement[bool]], cond: EventCondition
    ) -> _EventSet:
        follow = cond.not_followed_by
        assert follow is not None
        last = (
            select(e.c.contact_id, func.max(e.c.occurred_at).label("last_at"))
            .where(*tests)
            .group_by(e.c.contact_id)
            .subquery()
        )
        x, later = self._events(follow.event, follow.where, None)
        followed = exists(
            select(literal(1)).where(
                *later, x.c.contact_id == last.c.contact_id, x.c.occurred_at >= last.c.last_at
            )
        )
        rows = select(last.c.contact_id).where(not_(followed))
        return _EventSet(rows, positive=True, grouped=True)

    # the driving condition

    def conjuncts(self, node: Node, negate: bool = False) -> list[tuple[Node, bool]]:
        """The top-level AND of ``node`` (NOT pushed down, segments inlined)."""
        if isinstance(node, AllGroup) and not negate:
            return [c for child in node.all for c in self.conjuncts(child)]
        if isinstance(node, AnyGroup) and negate:
            return [c for child in node.any for c in self.conjuncts(child, True)]
        if isinstance(node, NotGroup):
            return self.conjuncts(node.not_, not negate)
        if isinstance(node, SegmentCondition):
            return self.conjuncts(self.defn.segments[node.segment], negate)
        return [(node, negate)]

    def driver(self, parts: list[tuple[Node, bool]]) -> tuple[int, FromClause] | None:
        """When every conjunct is about events, the contacts some positive one finds
        (one grouped pass over its window) stand in for the contacts table, as a
        hand-written query would: no lookup of each member in ``contacts``. Every event
        with a contact belongs to a contact of its own workspace (ingest, the outbox and
        tracking set both from the contact), and erasure deletes the events with it."""
        if not parts or not all(isinstance(n, EventCondition | EmailCondition) for n, _ in parts):
            return None
        best: tuple[float, int, _EventSet] | None = None
        for i, (node, negate) in enumerate(parts):
            if negate:
                continue
            if isinstance(node, EventCondition):
                found = self.event_set(node)
            else:
                found = self.email_set(cast(EmailCondition, node))
            if found.rows is None or not found.positive:
                continue
            window = getattr(node, "window", None)
            span = _window_seconds(window)
            if best is None or span < best[0]:
                best = (span, i, found)
        if best is None:
            return None
        _, index, found = best
        rows = found.rows
        assert rows is not None
        column = rows.selected_columns[0]
        if not found.grouped:
            rows = rows.group_by(column)
        return index, rows.with_only_columns(column.label("id")).subquery()


@dataclass(frozen=True)
class _EventSet:
    """The contacts a behaviour condition is about: with ``positive`` the members are
    those ``rows`` selects (column ``contact_id``; one row per contact when
    ``grouped``), otherwise everyone else. ``rows`` None: nobody (positive) or
    everybody (not positive), whatever the data."""

    rows: Select[Any] | None
    positive: bool
    grouped: bool
    aggregated: bool = False  # rows is GROUP BY contact_id ... HAVING over events itself


def _grouped(
    e: FromClause, tests: list[ColumnElement[bool]], having: ColumnElement[bool], *, positive: bool
) -> _EventSet:
    rows = select(e.c.contact_id).where(*tests).group_by(e.c.contact_id).having(having)
    return _EventSet(rows, positive=positive, grouped=True, aggregated=True)


def _counted(e: FromClause, tests: list[ColumnElement[bool]], count: Count | None) -> _EventSet:
    if count is None or count.existence:
        rows = select(e.c.contact_id).where(*tests)
        if count is None or (count.holds(1) and not count.holds(0)):
            return _EventSet(rows, positive=True, grouped=False)
        if count.holds(0) and not count.holds(1):
            return _EventSet(rows, positive=False, grouped=False)
        return _EventSet(None, positive=not count.holds(0), grouped=False)
    n = func.count()
    if count.holds(0):
        return _grouped(e, tests, not_(_count_test(n, count)), positive=False)
    return _grouped(e, tests, _count_test(n, count), positive=True)


def _window_seconds(window: Any) -> float:
    if window is None or window.ever:
        return float("inf")
    if window.last is not None:
        return timing.span(window.last.days, window.last.hours).total_seconds()
    low = timing.parse_moment(window.between[0])[0]
    high = timing.parse_moment(window.between[1])[0]
    return (high - low).total_seconds() + 86400


def _aggregate_holds(agg: Aggregate, value: float) -> bool:
    if agg.op == "between":
        return bool(float(agg.value[0]) <= value <= float(agg.value[1]))
    return {
        "eq": value == float(agg.value),
        "neq": value != float(agg.value),
        "gt": value > float(agg.value),
        "gte": value >= float(agg.value),
        "lt": value < float(agg.value),
        "lte": value <= float(agg.value),
    }[agg.op]


def compile_members(
    defn: Definition,
    *,
    workspace_id: int,
    now: datetime,
    contact_ids: Sequence[int] | None = None,
) -> Select[int]:
    """The contacts of ``workspace_id`` matching ``defn`` at ``now``, as one column
    ``contact_id``; ``contact_ids`` narrows it to those contacts (incremental updates)."""
    compiler = _Compiler(defn, workspace_id, now, contact_ids)
    parts = compiler.conjuncts(defn.root)
    driving = compiler.driver(parts)
    if driving is not None:
        index, found = driving
        compiler.few = True
        rest = [compiler.node(n, found, neg) for i, (n, neg) in enumerate(parts) if i != index]
        stmt = select(found.c.id.label("contact_id")).where(*rest)
        ids = found.c.id
    else:
        predicate = compiler.node(defn.root, CONTACTS)
        stmt = select(CONTACTS.c.id.label("contact_id")).where(
            CONTACTS.c.workspace_id == workspace_id, predicate
        )
        ids = CONTACTS.c.id
    if contact_ids is not None:
        stmt = stmt.where(ids.in_(list(contact_ids)))
    return stmt


def without_jit(session: Session) -> None:
    """For the rest of the transaction, no JIT compilation on PostgreSQL: a segment's
    count over millions of events costs more than ``jit_above_cost``, and JIT then spent
    tens of milliseconds to seconds (on a loaded machine) compiling expressions for one
    run that saved less than that (plans are not reused; docs/segments.md)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))
