"""The one registry of fields a segment condition may name (docs/segments.md#fields).

A field is a name (``contact.seniority``), the entity it belongs to, a value type that
decides which operators fit, and how to read it: a column of ``contacts``/``companies``,
a key of their ``attributes`` JSON, or a pair of functions (SQL expression over the
entity's table, Python read of the entity's row) for anything else. The parser, the
compiler, the evaluator and the renderer all look fields up here, so a later feature
(engagement score, lifecycle stage, predictive scores) becomes segmentable by calling
``FIELDS.register(FieldSpec(...))``, without touching the compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import ColumnElement
from sqlalchemy.sql.expression import FromClause

from postwise.contacts.fields import (
    CONTACT_STATUSES,
    COUNTRIES,
    REVENUE_BANDS,
    SENIORITIES,
    SIZE_BANDS,
)
from postwise.segments import jsonsql

Entity = Literal["contact", "company"]


class ValueType(StrEnum):
    STRING = "string"
    ENUM = "enum"  # a string from a fixed set; ordered ones also take gt/gte/lt/lte
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"  # a calendar day (custom date attributes); compared day by day
    DATETIME = "datetime"  # an instant (created_at ...); compared to the microsecond
    LIST = "list"  # a list of strings


_SET = frozenset({"is_set", "not_set"})
_RELATIVE = frozenset({"within_last", "more_than_ago", "within_next"})
_ORDER = frozenset({"gt", "gte", "lt", "lte", "between"})
OPERATORS: Mapping[ValueType, frozenset[str]] = {
    ValueType.STRING: frozenset({"eq", "neq", "in", "not_in", "contains", "starts_with"}) | _SET,
    ValueType.ENUM: frozenset({"eq", "neq", "in", "not_in"}) | _SET,
    ValueType.NUMBER: frozenset({"eq", "neq", "in", "not_in"}) | _ORDER | _SET,
    ValueType.BOOLEAN: frozenset({"eq"}) | _SET,
    ValueType.DATE: frozenset({"eq", "neq", "anniversary_within"}) | _ORDER | _RELATIVE | _SET,
    ValueType.DATETIME: _ORDER | _RELATIVE | _SET,
    ValueType.LIST: frozenset({"contains", "not_contains", "in"}) | _SET,
}
ATTRIBUTE_TYPES: Mapping[str, ValueType] = {
    "string": ValueType.STRING,
    "number": ValueType.NUMBER,
    "boolean": ValueType.BOOLEAN,
    "date": ValueType.DATE,
    "list": ValueType.LIST,
}
ATTRIBUTE_PREFIX = "attributes."


@dataclass(frozen=True)
class FieldSpec:
    """How to read one field in SQL and in Python; see the module docstring.

    Exactly one of ``column``, ``attribute`` or the ``sql``/``read`` pair says where the
    value lives. ``read`` gets the entity's row as a mapping of column name to value.
    """

    name: str
    entity: Entity
    type: ValueType
    column: str | None = None
    attribute: str | None = None
    sql: Callable[[FromClause], ColumnElement[Any]] | None = None
    read: Callable[[Mapping[str, Any]], Any] | None = None
    choices: tuple[str, ...] = ()
    ordered: bool = False  # enums: choices are listed from lowest to highest
    description: str = ""
    extra_operators: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        sources = [self.column is not None, self.attribute is not None, self.sql is not None]
        if sum(sources) != 1 or (self.sql is None) != (self.read is None):
            raise ValueError(f"{self.name}: give one of column, attribute or sql+read")
        if self.type is ValueType.ENUM and not self.choices:
            raise ValueError(f"{self.name}: an enum field needs its choices")

    @property
    def operators(self) -> frozenset[str]:
        ops = OPERATORS[self.type] | self.extra_operators
        if self.type is ValueType.ENUM and self.ordered:
            ops |= _ORDER
        return ops

    def expression(self, table: FromClause) -> ColumnElement[Any]:
        """The field's value over ``table`` (contacts or companies, possibly aliased);
        NULL when unknown or, for attributes, of another JSON type than declared."""
        if self.sql is not None:
            return self.sql(table)
        if self.column is not None:
            return table.c[self.column]
        assert self.attribute is not None
        column = table.c.attributes
        if self.type is ValueType.NUMBER:
            return jsonsql.json_number(column, self.attribute)
        if self.type is ValueType.BOOLEAN:
            return jsonsql.json_boolean(column, self.attribute)
        if self.type is ValueType.DATE:
            return jsonsql.json_day(column, self.attribute)
        return jsonsql.json_text(column, self.attribute)  # string; lists are read apart

    def value(self, row: Mapping[str, Any] | None) -> Any:
        """The evaluator's reading of the same value (None for a missing row)."""
        if row is None:
            return None
        if self.read is not None:
            return self.read(row)
        if self.column is not None:
            return row.get(self.column)
        assert self.attribute is not None
        attrs = row.get("attributes")
        if self.type is ValueType.NUMBER:
            return jsonsql.py_number(attrs, self.attribute)
        if self.type is ValueType.BOOLEAN:
            return jsonsql.py_boolean(attrs, self.attribute)
        if self.type is ValueType.DATE:
            return jsonsql.py_day(attrs, self.attribute)
        if self.type is ValueType.LIST:
            value = (attrs or {}).get(self.attribute)
            return value if isinstance(value, list) else None
        return jsonsql.py_text(attrs, self.attribute)


class FieldRegistry:
    """Fields by name; custom attributes are resolved per workspace on top of these."""

    def __init__(self, specs: Iterator[FieldSpec] | list[FieldSpec] | tuple[FieldSpec, ...] = ()):
        self._specs: dict[str, FieldSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: FieldSpec) -> FieldSpec:
        if not spec.name.startswith(f"{spec.entity}.") or ATTRIBUTE_PREFIX in spec.name:
            raise ValueError(f"{spec.name}: a field is named '{spec.entity}.<name>'")
        if spec.name in self._specs:
            raise ValueError(f"{spec.name} is already registered")
        self._specs[spec.name] = spec
        return spec

    def copy(self) -> FieldRegistry:
        return FieldRegistry(list(self._specs.values()))

    def get(self, name: str) -> FieldSpec | None:
        return self._specs.get(name)

    def __iter__(self) -> Iterator[FieldSpec]:
        return iter(self._specs.values())

    def resolve(self, name: str, attributes: Mapping[tuple[str, str], str]) -> FieldSpec | None:
        """``contact.seniority`` from the registry, ``contact.attributes.plan`` from the
        workspace's declared attributes (``(entity, name) -> type``); None if unknown."""
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        entity, _, rest = name.partition(".")
        if entity not in ("contact", "company") or not rest.startswith(ATTRIBUTE_PREFIX):
            return None
        attribute = rest[len(ATTRIBUTE_PREFIX) :]
        declared = attributes.get((entity, attribute))
        if declared is None or declared not in ATTRIBUTE_TYPES:
            return None
        return FieldSpec(
            name=name,
            entity="contact" if entity == "contact" else "company",
            type=ATTRIBUTE_TYPES[declared],
            attribute=attribute,
            description=f"custom {entity} attribute",
        )


def _contact(name: str, type_: ValueType, **kw: Any) -> FieldSpec:
    return FieldSpec(name=f"contact.{name}", entity="contact", type=type_, column=name, **kw)


def _company(name: str, type_: ValueType, **kw: Any) -> FieldSpec:
    return FieldSpec(name=f"company.{name}", entity="company", type=type_, column=name, **kw)


_COUNTRIES = tuple(sorted(COUNTRIES))
FIELDS = FieldRegistry(
    [
        _contact("email", ValueType.STRING),
        _contact("email_domain", ValueType.STRING),
        _contact("external_id", ValueType.STRING),
        _contact("first_name", ValueType.STRING),
        _contact("last_name", ValueType.STRING),
        _contact("job_title", ValueType.STRING),
        _contact("seniority", ValueType.ENUM, choices=SENIORITIES, ordered=True),
        _contact("department", ValueType.STRING),
        _contact("country", ValueType.ENUM, choices=_COUNTRIES),
        _contact("timezone", ValueType.STRING),
        _contact("language", ValueType.STRING),
        _contact("phone", ValueType.STRING),
        _contact("status", ValueType.ENUM, choices=CONTACT_STATUSES),
        _contact("created_at", ValueType.DATETIME, description="when the contact was created"),
        _contact("updated_at", ValueType.DATETIME),
        _company("domain", ValueType.STRING),
        _company("name", ValueType.STRING),
        _company("industry", ValueType.STRING),
        _company("employee_count", ValueType.NUMBER),
        _company("size_band", ValueType.ENUM, choices=SIZE_BANDS, ordered=True),
        _company("revenue_band", ValueType.ENUM, choices=REVENUE_BANDS, ordered=True),
        _company("country", ValueType.ENUM, choices=_COUNTRIES),
        _company("created_at", ValueType.DATETIME),
    ]
)
