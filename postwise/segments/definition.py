"""A segment definition: the JSON document, its Pydantic models and the one parser.

The document is a tree: groups ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``
around conditions, each recognised by its key (``field``, ``event``, ``email``, ``list``,
``segment``, ``account``). The reference is docs/segments.md; the models below are its
shape and the parser adds what the shape cannot say: which fields exist in this
workspace, which operators fit their types, that dates parse, that referenced segments
exist without a cycle, that nesting stays under a limit and that nothing would scan
without bound. Every refusal is an ``InvalidSegment`` (422, code ``invalid_segment``)
whose ``field`` is the path of the offending node, e.g. ``all[2].any[0].count``.

The result, ``Definition``, is what the compiler, the evaluator, ``references`` and
``describe`` take: the tree, the parsed definitions of every segment it refers to
(conditions on another segment are inlined, never read from stored membership), and
the field registry and attribute types it was checked against.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from postwise.core.errors import FieldError, PostwiseError
from postwise.segments import timing
from postwise.segments.fields import FIELDS, FieldRegistry, FieldSpec, ValueType

MAX_DEPTH = 10  # nested groups (and account conditions) below the root
MAX_NODES = 500  # conditions and groups in one definition, referenced segments included
MAX_SEGMENT_CHAIN = 5  # segment -> segment -> ... references
MAX_IN_VALUES = 1000
MAX_TEXT = 2000
MAX_DAYS = 3660  # ten years: the longest window or relative date
MAX_HOURS = MAX_DAYS * 24
MAX_ANNIVERSARY_DAYS = 366
MAX_COUNT = 1_000_000
# Event property names go into a JSON path; these characters could not be quoted there.
PROPERTY_NAME = re.compile(r'[^"\\\x00-\x1f]{1,200}')
MAX_PROPERTY_PATH = 8  # keys in a nested property path ["product", "category"]
# Operators that compare text and so fold case unless ``case_sensitive`` is true.
TEXT_OPS = frozenset({"eq", "neq", "in", "not_in", "contains", "starts_with"})

EMAIL_EVENTS: Mapping[str, str] = {
    "sent": "Email Sent",
    "delivered": "Email Delivered",
    "opened": "Email Opened",
    "clicked": "Email Clicked",
    "bounced": "Email Bounced",
    "unsubscribed": "Unsubscribed",
    "complained": "Email Complained",
}
EmailKind = Literal[
    "sent", "delivered", "opened", "clicked", "bounced", "unsubscribed", "complained"
]
CountOp = Literal["eq", "neq", "gt", "gte", "lt", "lte", "between"]
PropertyOp = Literal[
    "eq", "neq", "in", "not_in", "contains", "starts_with",
    "gt", "gte", "lt", "lte", "between", "is_set", "not_set",
]  # fmt: skip


class InvalidSegment(PostwiseError):
    status = 422
    title = "Invalid segment definition"
    default_code = "invalid_segment"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Span(_Model):
    """``{"days": N}`` or ``{"hours": N}``."""

    days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    hours: int | None = Field(default=None, ge=1, le=MAX_HOURS)

    @model_validator(mode="after")
    def _one(self) -> Span:
        if (self.days is None) == (self.hours is None):
            raise ValueError('give exactly one of "days" or "hours"')
        return self


class Window(_Model):
    """When the counted events happened: ``last``, ``between`` (both ends included) or
    ``ever``."""

    last: Span | None = None
    between: list[str] | None = Field(default=None, min_length=2, max_length=2)
    ever: Literal[True] | None = None

    @model_validator(mode="after")
    def _one(self) -> Window:
        if sum(x is not None for x in (self.last, self.between, self.ever)) != 1:
            raise ValueError('give exactly one of "last", "between" or "ever"')
        return self

    @property
    def bounded(self) -> bool:
        return self.ever is None


class Count(_Model):
    """How many matching events: ``{"op": "gte", "value": 2}`` or ``between [a, b]``."""

    op: CountOp
    value: Any  # int, or [low, high] for between; checked by the parser

    def holds(self, n: int) -> bool:
        if isinstance(self.value, list):
            return self.value[0] <= n <= self.value[1]
        return _compare(self.op, float(n), float(self.value))

    @property
    def existence(self) -> bool:
        """True when only "at least once" vs "never" matters: the test gives the same
        answer for every count from 1 up (it changes only at its own values)."""
        values = self.value if isinstance(self.value, list) else [self.value]
        points = {1, 2, MAX_COUNT * 10}
        for v in values:
            points.update(p for p in (v - 1, v, v + 1) if p >= 1)
        return len({self.holds(p) for p in points}) == 1


class PropertyFilter(_Model):
    """``property`` is one key, or a path of keys into nested objects
    (``["product", "category"]``); a dotted string is one key, as trackers send
    flattened names such as ``"utm.source"``."""

    property: Any  # str | list[str], checked by the parser (to name the failing key)
    op: PropertyOp
    value: Any = None
    case_sensitive: bool = False

    @builtins.property
    def path(self) -> tuple[str, ...]:
        return (self.property,) if isinstance(self.property, str) else tuple(self.property)

    @builtins.property
    def folds(self) -> bool:
        """Compare text with ASCII case folded (docs/segments.md#case)."""
        return not self.case_sensitive and self.op in TEXT_OPS and holds_text(self.value)


class Aggregate(_Model):
    """``sum``/``avg``/``min``/``max`` of a numeric property of the counted events."""

    fn: Literal["sum", "avg", "min", "max"]
    property: str
    op: Literal["eq", "neq", "gt", "gte", "lt", "lte", "between"]
    value: Any


class TimeTest(_Model):
    """When the first (or last) matching event happened."""

    op: Literal["within_last", "more_than_ago", "before", "after", "between"]
    value: Any


class FollowUp(_Model):
    event: str
    where: list[PropertyFilter] = Field(default_factory=list)


class FieldCondition(_Model):
    field: str
    op: str
    value: Any = None
    case_sensitive: bool = False


class EventCondition(_Model):
    event: str
    where: list[PropertyFilter] = Field(default_factory=list)
    count: Count | None = None
    window: Window | None = None
    aggregate: Aggregate | None = None
    first: TimeTest | None = None
    last: TimeTest | None = None
    not_followed_by: FollowUp | None = None


class EmailCondition(_Model):
    email: EmailKind
    campaign: str | None = Field(default=None, min_length=1, max_length=200)
    workflow: str | None = Field(default=None, min_length=1, max_length=200)
    count: Count | None = None
    window: Window | None = None
    include_machine: bool = False

    @property
    def event_name(self) -> str:
        return EMAIL_EVENTS[self.email]


class ListCondition(_Model):
    list: int = Field(ge=1)
    status: Literal["subscribed", "unsubscribed", "pending", "any"] = "subscribed"


class SegmentCondition(_Model):
    segment: int = Field(ge=1)


class Account(_Model):
    min_contacts: int = Field(ge=1, le=MAX_COUNT)
    where: Node


class AccountCondition(_Model):
    account: Account


class AllGroup(_Model):
    all: list[Node]


class AnyGroup(_Model):
    any: list[Node]


class NotGroup(_Model):
    not_: Node = Field(alias="not")


Condition = (
    FieldCondition
    | EventCondition
    | EmailCondition
    | ListCondition
    | SegmentCondition
    | AccountCondition
)
Node = AllGroup | AnyGroup | NotGroup | Condition
for _model in (Account, AllGroup, AnyGroup, NotGroup):
    _model.model_rebuild()

_KINDS: Mapping[str, type[_Model]] = {
    "all": AllGroup,
    "any": AnyGroup,
    "not": NotGroup,
    "field": FieldCondition,
    "event": EventCondition,
    "email": EmailCondition,
    "list": ListCondition,
    "segment": SegmentCondition,
    "account": AccountCondition,
}


@dataclass(frozen=True)
class SchemaContext:
    """What a definition is checked against in one workspace.

    ``attributes`` maps ``(entity, name)`` to the declared type (``AttributeDefinition``);
    ``segments`` the other segments' raw documents by id; ``segment_id`` the id of the
    segment being saved, so a reference back to it is a cycle.
    """

    attributes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    segments: Mapping[int, Any] = field(default_factory=dict)
    fields: FieldRegistry = FIELDS
    max_depth: int = MAX_DEPTH
    segment_id: int | None = None


@dataclass(frozen=True)
class Definition:
    root: Node
    segments: Mapping[int, Node]
    fields: FieldRegistry = FIELDS
    attributes: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def field(self, name: str) -> FieldSpec:
        spec = self.fields.resolve(name, self.attributes)
        if spec is None:  # the parser made sure it resolves
            raise KeyError(name)
        return spec

    def doc(self) -> dict[str, Any]:
        """The definition as a JSON document (defaults left out)."""
        return to_doc(self.root)


def to_doc(node: Node) -> dict[str, Any]:
    if isinstance(node, AllGroup):
        return {"all": [to_doc(n) for n in node.all]}
    if isinstance(node, AnyGroup):
        return {"any": [to_doc(n) for n in node.any]}
    if isinstance(node, NotGroup):
        return {"not": to_doc(node.not_)}
    if isinstance(node, AccountCondition):
        return {
            "account": {
                "min_contacts": node.account.min_contacts,
                "where": to_doc(node.account.where),
            }
        }
    out: dict[str, Any] = node.model_dump(mode="json", exclude_defaults=True)
    return out


def parse_definition(doc: Any, ctx: SchemaContext | None = None) -> Definition:
    """Check ``doc`` against ``ctx``; raises ``InvalidSegment`` naming the offending path."""
    ctx = ctx or SchemaContext()
    parser = _Parser(ctx)
    chain = (ctx.segment_id,) if ctx.segment_id is not None else ()
    root = parser.node(doc, "", 0, chain)
    return Definition(root, dict(parser.done), ctx.fields, dict(ctx.attributes))


# --- the parser ------------------------------------------------------------------------


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def _loc_path(path: str, loc: tuple[int | str, ...]) -> str:
    for part in loc:
        path = _join(path, part)
    return path


def _fail(path: str, message: str, code: str = "invalid_segment") -> InvalidSegment:
    return InvalidSegment(message, code=code, field=path or None)


def _compare(op: str, left: float, right: float) -> bool:
    return {
        "eq": left == right,
        "neq": left != right,
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
    }[op]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def holds_text(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and isinstance(value[0], str)
    )


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT and "\x00" not in value


class _Parser:
    NAME_LIMIT: ClassVar[int] = 255

    def __init__(self, ctx: SchemaContext) -> None:
        self.ctx = ctx
        self.nodes = 0
        self.done: dict[int, Node] = {}

    # structure

    def node(self, doc: Any, path: str, depth: int, chain: tuple[int, ...]) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _fail(path, f"a definition may hold at most {MAX_NODES} conditions and groups")
        if not isinstance(doc, Mapping):
            raise _fail(path, "expected an object: a group (all/any/not) or a condition")
        kinds = [k for k in _KINDS if k in doc]
        if len(kinds) != 1:
            known = ", ".join(_KINDS)
            found = f"found {', '.join(kinds)}" if kinds else f"found {', '.join(map(str, doc))}"
            raise _fail(path, f"a node needs exactly one of {known}; {found}")
        kind = kinds[0]
        if kind in ("all", "any", "not"):
            return self.group(kind, doc, path, depth, chain)
        if kind == "account":
            return self.account(doc, path, depth, chain)
        model = _KINDS[kind]
        try:
            parsed = model.model_validate(dict(doc))
        except ValidationError as exc:
            raise self._from_pydantic(exc, path) from None
        if isinstance(parsed, FieldCondition):
            self.field_condition(parsed, path)
        elif isinstance(parsed, EventCondition):
            self.event_condition(parsed, path)
        elif isinstance(parsed, EmailCondition):
            self.email_condition(parsed, path)
        elif isinstance(parsed, SegmentCondition):
            self.segment_condition(parsed, path, chain)
        return parsed  # type: ignore[return-value]

    def group(
        self, kind: str, doc: Mapping[str, Any], path: str, depth: int, chain: tuple[int, ...]
    ) -> Node:
        extra = [k for k in doc if k != kind]
        if extra:
            raise _fail(_join(path, extra[0]), f"unexpected key {extra[0]!r} beside {kind!r}")
        here = _join(path, kind)
        if depth + 1 > self.ctx.max_depth:
            raise _fail(here, f"groups nest at most {self.ctx.max_depth} levels deep")
        body = doc[kind]
        if kind == "not":
            return NotGroup.model_construct(not_=self.node(body, here, depth + 1, chain))
        if not isinstance(body, list):
            raise _fail(here, f"{kind!r} takes a list of conditions")
        items = [self.node(item, _join(here, i), depth + 1, chain) for i, item in enumerate(body)]
        if kind == "all":
            return AllGroup.model_construct(all=items)
        return AnyGroup.model_construct(any=items)

    def account(
        self, doc: Mapping[str, Any], path: str, depth: int, chain: tuple[int, ...]
    ) -> Node:
        extra = [k for k in doc if k != "account"]
        if extra:
            raise _fail(_join(path, extra[0]), f"unexpected key {extra[0]!r} beside 'account'")
        here = _join(path, "account")
        body = doc["account"]
        if not isinstance(body, Mapping):
            raise _fail(here, 'expected {"min_contacts": N, "where": {...}}')
        unknown = [k for k in body if k not in ("min_contacts", "where")]
        if unknown:
            raise _fail(_join(here, unknown[0]), f"unknown key {unknown[0]!r}")
        if "where" not in body:
            raise _fail(_join(here, "where"), "an account condition needs 'where'")
        count = body.get("min_contacts", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
            raise _fail(
                _join(here, "min_contacts"), f"min_contacts is a whole number 1..{MAX_COUNT}"
            )
        if depth + 1 > self.ctx.max_depth:
            raise _fail(here, f"groups nest at most {self.ctx.max_depth} levels deep")
        where = self.node(body["where"], _join(here, "where"), depth + 1, chain)
        account = Account.model_construct(min_contacts=count, where=where)
        return AccountCondition.model_construct(account=account)

    def _from_pydantic(self, exc: ValidationError, path: str) -> InvalidSegment:
        errors = []
        for err in exc.errors():
            loc = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
            )
            where = _loc_path(path, loc)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown key {loc[-1]!r}" if loc else "unknown key"
            errors.append(FieldError(where or None, "invalid_segment", f"{where}: {message}"))
        first = errors[0]
        return InvalidSegment(first.message, field=first.field, errors=errors)

    # conditions

    def field_condition(self, cond: FieldCondition, path: str) -> None:
        spec = self.ctx.fields.resolve(cond.field, self.ctx.attributes)
        if spec is None:
            raise _fail(
                _join(path, "field"),
                f"unknown field {cond.field!r}: use a field such as contact.seniority or "
                "company.industry, or a declared attribute as contact.attributes.NAME",
                "unknown_field",
            )
        if cond.op not in spec.operators:
            raise _fail(
                _join(path, "op"),
                f"operator {cond.op!r} does not fit {spec.type.value} field {spec.name}; "
                f"use one of {', '.join(sorted(spec.operators))}",
                "invalid_operator",
            )
        if cond.case_sensitive and not (spec.type is ValueType.STRING and cond.op in TEXT_OPS):
            raise _fail(
                _join(path, "case_sensitive"),
                "case_sensitive applies to eq, neq, in, not_in, contains and starts_with "
                "on text fields only",
            )
        self.field_value(spec, cond.op, cond.value, _join(path, "value"))

    def field_value(self, spec: FieldSpec, op: str, value: Any, path: str) -> None:
        kind = spec.type
        if op in ("is_set", "not_set"):
            if value is not None:
                raise _fail(path, f"{op} takes no value")
            return
        if op in ("within_last", "more_than_ago", "within_next", "anniversary_within"):
            span = self.span(value, path)
            if kind is ValueType.DATE and span.days is None:
                raise _fail(path, f"{spec.name} is a date: count in days")
            if op == "anniversary_within" and (span.days or 0) > MAX_ANNIVERSARY_DAYS:
                raise _fail(
                    path, f"anniversary_within looks at most {MAX_ANNIVERSARY_DAYS} days ahead"
                )
            return
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
                raise _fail(path, f"{op} takes a list of 1..{MAX_IN_VALUES} values")
            item_kind = ValueType.STRING if kind is ValueType.LIST else kind
            for i, item in enumerate(value):
                self.scalar(spec, item_kind, item, _join(path, i))
            return
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise _fail(path, "between takes [low, high]")
            low = self.scalar(spec, kind, value[0], _join(path, 0))
            high = self.scalar(spec, kind, value[1], _join(path, 1))
            if low > high:
                raise _fail(path, "between takes [low, high] with low <= high")
            return
        if op in ("contains", "not_contains", "starts_with"):
            if not _is_text(value) or not value:
                raise _fail(path, f"{op} takes non-empty text")
            return
        self.scalar(spec, kind, value, path)

    def scalar(self, spec: FieldSpec, kind: ValueType, value: Any, path: str) -> Any:
        """Checks one value for ``kind``; returns a key that orders values of the kind."""
        if kind is ValueType.ENUM:
            if value not in spec.choices:
                shown = ", ".join(spec.choices[:12]) + (", ..." if len(spec.choices) > 12 else "")
                raise _fail(path, f"{spec.name} is one of {shown}; got {value!r}")
            return spec.choices.index(value)
        if kind is ValueType.NUMBER:
            if not _is_number(value):
                raise _fail(path, f"{spec.name} is a number; got {value!r}")
            return float(value)
        if kind is ValueType.BOOLEAN:
            if not isinstance(value, bool):
                raise _fail(path, f"{spec.name} is true or false; got {value!r}")
            return value
        if kind in (ValueType.DATE, ValueType.DATETIME):
            return self.moment(value, path)
        if not _is_text(value):
            raise _fail(path, f"{spec.name} compares with text of at most {MAX_TEXT} characters")
        return value

    def moment(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise _fail(path, f"expected a date (YYYY-MM-DD) or ISO 8601 date-time; got {value!r}")
        try:
            return timing.parse_moment(value)[0]
        except ValueError:
            raise _fail(
                path,
                f"malformed date {value!r}: use YYYY-MM-DD or an ISO 8601 date-time",
                "invalid_date",
            ) from None

    def span(self, value: Any, path: str) -> Span:
        if not isinstance(value, Mapping):
            raise _fail(path, 'expected {"days": N} or {"hours": N}')
        try:
            return Span.model_validate(dict(value))
        except ValidationError as exc:
            raise self._from_pydantic(exc, path) from None

    def name(self, value: str, path: str) -> None:
        if not value.strip() or len(value) > self.NAME_LIMIT or "\x00" in value:
            raise _fail(path, f"an event name is 1..{self.NAME_LIMIT} characters of text")

    def filters(self, filters: list[PropertyFilter], path: str) -> None:
        for i, flt in enumerate(filters):
            self.property_filter(flt, _join(path, i))

    def property_name(self, name: str, path: str) -> None:
        if not PROPERTY_NAME.fullmatch(name):
            raise _fail(
                path, 'a property name is 1..200 characters without ", \\ or control characters'
            )

    def property_path(self, name: Any, path: str) -> None:
        if isinstance(name, str):
            self.property_name(name, path)
            return
        if not isinstance(name, list) or not 1 <= len(name) <= MAX_PROPERTY_PATH:
            raise _fail(
                path,
                f"a property is a name or a path: a list of 1..{MAX_PROPERTY_PATH} names "
                'into nested objects, e.g. ["product", "category"]',
            )
        for i, part in enumerate(name):
            if not isinstance(part, str):
                raise _fail(_join(path, i), f"a property path holds names; got {part!r}")
            self.property_name(part, _join(path, i))

    def property_filter(self, flt: PropertyFilter, path: str) -> None:
        self.property_path(flt.property, _join(path, "property"))
        where, op, value = _join(path, "value"), flt.op, flt.value
        if flt.case_sensitive and not (op in TEXT_OPS and holds_text(value)):
            raise _fail(
                _join(path, "case_sensitive"), "case_sensitive applies to text comparisons only"
            )
        if op in ("is_set", "not_set"):
            if value is not None:
                raise _fail(where, f"{op} takes no value")
        elif op in ("eq", "neq"):
            if not (_is_text(value) or _is_number(value) or isinstance(value, bool)):
                raise _fail(where, f"{op} compares with text, a number or true/false")
        elif op in ("in", "not_in"):
            ok = isinstance(value, list) and 1 <= len(value) <= MAX_IN_VALUES
            if ok and not (all(_is_text(v) for v in value) or all(_is_number(v) for v in value)):
                ok = False
            if not ok:
                raise _fail(where, f"{op} takes a list of 1..{MAX_IN_VALUES} texts or numbers")
        elif op in ("contains", "starts_with"):
            if not _is_text(value) or not value:
                raise _fail(where, f"{op} takes non-empty text")
        elif op == "between":
            self.number_range(value, where)
        elif not _is_number(value):
            raise _fail(where, f"{op} compares with a number")

    def number_range(self, value: Any, path: str) -> None:
        if not (isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))):
            raise _fail(path, "between takes [low, high], two numbers")
        if value[0] > value[1]:
            raise _fail(path, "between takes [low, high] with low <= high")

    def count(self, count: Count, path: str) -> None:
        def whole(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNT

        if count.op == "between":
            value = count.value
            ok = isinstance(value, list) and len(value) == 2 and all(map(whole, value))
            if not ok or value[0] > value[1]:
                raise _fail(
                    _join(path, "value"), f"between takes [low, high] within 0..{MAX_COUNT}"
                )
        elif not whole(count.value):
            raise _fail(_join(path, "value"), f"a count is a whole number 0..{MAX_COUNT}")

    def window(self, window: Window | None, path: str, *, needs_bound: str | None) -> None:
        here = _join(path, "window")
        if window is not None and window.between is not None:
            low = self.moment(window.between[0], _join(_join(here, "between"), 0))
            high = self.moment(window.between[1], _join(_join(here, "between"), 1))
            if low > high:
                raise _fail(_join(here, "between"), "between takes [from, to] with from <= to")
            if (high - low).days > MAX_DAYS:
                raise _fail(_join(here, "between"), f"a window spans at most {MAX_DAYS} days")
        if needs_bound and (window is None or not window.bounded):
            raise _fail(
                here,
                f"{needs_bound} needs a bounded window ('last' N days/hours or 'between' "
                "dates): over all time it would scan every event of this name",
                "unbounded_segment",
            )

    def time_test(self, test: TimeTest, path: str) -> None:
        where = _join(path, "value")
        if test.op in ("within_last", "more_than_ago"):
            self.span(test.value, where)
        elif test.op == "between":
            if not isinstance(test.value, list) or len(test.value) != 2:
                raise _fail(where, "between takes [from, to]")
            if self.moment(test.value[0], _join(where, 0)) > self.moment(
                test.value[1], _join(where, 1)
            ):
                raise _fail(where, "between takes [from, to] with from <= to")
        else:
            self.moment(test.value, where)

    def event_condition(self, cond: EventCondition, path: str) -> None:
        self.name(cond.event, _join(path, "event"))
        self.filters(cond.where, _join(path, "where"))
        modes = [
            k for k in ("count", "aggregate", "first", "last", "not_followed_by")
            if getattr(cond, k) is not None
        ]  # fmt: skip
        if len(modes) > 1:
            raise _fail(_join(path, modes[1]), f"use one of {', '.join(modes)} per condition")
        needs = None
        if cond.count is not None:
            self.count(cond.count, _join(path, "count"))
            if not cond.count.existence:
                needs = "counting events"
        if cond.aggregate is not None:
            agg_path = _join(path, "aggregate")
            self.property_name(cond.aggregate.property, _join(agg_path, "property"))
            if cond.aggregate.op == "between":
                self.number_range(cond.aggregate.value, _join(agg_path, "value"))
            elif not _is_number(cond.aggregate.value):
                raise _fail(_join(agg_path, "value"), f"{cond.aggregate.fn} compares with a number")
            needs = f"{cond.aggregate.fn} of a property"
        for which in ("first", "last"):
            test = getattr(cond, which)
            if test is not None:
                if cond.window is not None:
                    raise _fail(
                        _join(path, "window"), f"{which} looks at all time; drop the window"
                    )
                self.time_test(test, _join(path, which))
        if cond.not_followed_by is not None:
            follow = _join(path, "not_followed_by")
            self.name(cond.not_followed_by.event, _join(follow, "event"))
            self.filters(cond.not_followed_by.where, _join(follow, "where"))
        self.window(cond.window, path, needs_bound=needs)

    def email_condition(self, cond: EmailCondition, path: str) -> None:
        for key in ("campaign", "workflow"):
            value = getattr(cond, key)
            if value is not None and "\x00" in value:
                raise _fail(_join(path, key), f"{key} contains a NUL character")
        needs = None
        if cond.count is not None:
            self.count(cond.count, _join(path, "count"))
            if not cond.count.existence:
                needs = "counting emails"
        self.window(cond.window, path, needs_bound=needs)

    def segment_condition(self, cond: SegmentCondition, path: str, chain: tuple[int, ...]) -> None:
        here = _join(path, "segment")
        target = cond.segment
        if target in chain:
            loop = " -> ".join(str(s) for s in (*chain, target))
            raise _fail(here, f"segment references form a cycle: {loop}", "segment_cycle")
        if target in self.done:
            return
        if target not in self.ctx.segments:
            raise _fail(here, f"unknown segment {target}", "unknown_segment")
        if len(chain) >= MAX_SEGMENT_CHAIN:
            raise _fail(here, f"segments refer to segments at most {MAX_SEGMENT_CHAIN} deep")
        try:
            root = self.node(self.ctx.segments[target], "", 0, (*chain, target))
        except InvalidSegment as exc:
            if exc.code == "segment_cycle":
                raise _fail(here, exc.message, exc.code) from None
            inner = f" at {exc.field}" if exc.field else ""
            raise _fail(
                here, f"segment {target} is invalid{inner}: {exc.message}", exc.code
            ) from None
        self.done[target] = root
