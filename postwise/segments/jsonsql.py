"""Typed reads of one key of a JSON column, in SQL and in Python, meaning the same thing.

Event properties and custom attributes are schemaless: ``total`` may be ``500`` in one
event and ``"500"`` in the next. A comparison must neither fail (PostgreSQL raises on
``'abc'::float``) nor silently compare across types (SQLite orders any text after any
number). So each reader yields the value only when the stored JSON has the expected
type, and NULL (Python ``None``) otherwise:

============  =====================  ==================================  =================
reader        JSON type accepted     PostgreSQL                          SQLite
============  =====================  ==================================  =================
``text``      string                 ``jsonb_typeof = 'string'``, ``->>``  ``json_type = 'text'``
``number``    number (not boolean)   ``'number'``, cast to float8        ``'integer'/'real'``, REAL
``boolean``   true / false           ``'boolean'``, cast to boolean      ``'true'/'false'`` -> 1/0
``day``       string ``YYYY-MM-DD…`` its first 10 characters             same
``is_set``    anything but null      type not NULL and not ``'null'``    same
``is_array``  array                  ``'array'``                         same
``is_true``   true                   ``-> key = 'true'::jsonb``          ``json_type = 'true'``
============  =====================  ==================================  =================

A key may be a path into nested objects (``("product", "category")``): chained ``->``
on PostgreSQL, ``$."product"."category"`` on SQLite, ``py_get`` in Python; through
anything but an object the value is missing. ``fold``/``ascii_lower`` are the one case
folding all three sides perform identically (A-Z only; docs/segments.md#case).

The key is always a bound parameter (a JSON path ``$."key"`` on SQLite); keys that
could not be quoted in a path (``"`` and ``\\``, control characters) are refused by the
definition parser (``definition.PROPERTY_NAME``). The Python functions below are the
evaluator's side of the same rules and are what the property test holds the SQL to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, ColumnElement, Float, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeEngine

DAY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PG_DAY_REGEX = "^[0-9]{4}-[0-9]{2}-[0-9]{2}"
_SQLITE_DAY_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"


Key = str | Sequence[str]
"""One key, or a path of keys into nested objects (``("product", "category")``)."""


def _keys(key: Key) -> list[ColumnElement[Any]]:
    parts = [key] if isinstance(key, str) else list(key)
    return [bindparam(None, k, type_=String(), unique=True) for k in parts]


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER = str.maketrans(_UPPER, _UPPER.lower())
_PG_FOLD = f"translate({{}}, '{_UPPER}', '{_UPPER.lower()}')"
_SQLITE_FOLD = "lower({})"


def fold(text: str) -> str:
    """Case folding as ``ascii_lower`` does it in SQL: A-Z to a-z, nothing else.

    ASCII only on purpose: SQLite's ``lower()`` folds ASCII only and PostgreSQL's
    follows the database's locale (under glibc ``lower('İ')`` is ``i``, in Python
    ``i̇``), so ASCII's is the one folding both databases and Python do identically."""
    return text.translate(_ASCII_LOWER)


def fold_value(value: Any) -> Any:
    """A text, or each of a list of texts, folded."""
    return [fold(str(v)) for v in value] if isinstance(value, list) else fold(str(value))


class ascii_lower(FunctionElement[Any]):  # noqa: N801 - reads like a SQL function
    """``fold`` in SQL: ``translate`` on PostgreSQL (unlike ``lower``, independent of
    the locale), ``lower`` on SQLite (ASCII only, as SQLite is built without ICU)."""

    type = String()
    inherit_cache = True


@compiles(ascii_lower, "postgresql")
def _pg_ascii_lower(element: ascii_lower, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = _parts(element, compiler, **kw)
    return _PG_FOLD.format(text)


@compiles(ascii_lower, "sqlite")
def _sqlite_ascii_lower(element: ascii_lower, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = _parts(element, compiler, **kw)
    return _SQLITE_FOLD.format(text)


class JsonRead(FunctionElement[Any]):
    """``reader(column, key)``; compiled per dialect below."""

    inherit_cache = True
    kind = ""

    def __init__(self, column: ColumnElement[Any], key: Key) -> None:
        super().__init__(column, *_keys(key))


class json_text(JsonRead):  # noqa: N801 - reads like a SQL function
    type: TypeEngine[Any] = String()
    inherit_cache = True
    kind = "text"


class json_number(JsonRead):  # noqa: N801
    type = Float()
    inherit_cache = True
    kind = "number"


class json_boolean(JsonRead):  # noqa: N801
    type = Boolean()
    inherit_cache = True
    kind = "boolean"


class json_day(JsonRead):  # noqa: N801
    type = String()
    inherit_cache = True
    kind = "day"


class json_is_set(JsonRead):  # noqa: N801
    type = Boolean()
    inherit_cache = True
    kind = "is_set"


class json_is_array(JsonRead):  # noqa: N801
    type = Boolean()
    inherit_cache = True
    kind = "is_array"


class json_is_true(JsonRead):  # noqa: N801
    """The value is JSON ``true``; never NULL (the human-only filter runs on every
    email event of a window, so it is one cheap test rather than a typed read)."""

    type = Boolean()
    inherit_cache = True
    kind = "is_true"


class json_has_item(FunctionElement[Any]):  # noqa: N801
    """``column[key]`` is an array holding the string ``item``."""

    type = Boolean()
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], key: str, item: str) -> None:
        super().__init__(
            column,
            bindparam(None, key, type_=String(), unique=True),
            bindparam(None, item, type_=String(), unique=True),
        )


class json_text_in(FunctionElement[Any]):  # noqa: N801
    """``column[key]`` is a JSON string equal to one of ``values``. On PostgreSQL the
    text comparison comes first and the type test (``->>`` also renders numbers and
    booleans as text) only for rows that pass it: as fast as a bare ``->> = :v``, which
    event filters such as ``category = "Books"`` need, as they run on every event of
    a window."""

    type = Boolean()
    inherit_cache = True
    # depth and fold change the SQL, so they belong in the statement cache's key.
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("depth", InternalTraversal.dp_plain_obj),
        ("fold", InternalTraversal.dp_boolean),
    ]

    def __init__(
        self,
        column: ColumnElement[Any],
        key: Key,
        values: list[str],
        fold: bool = False,
    ) -> None:
        self.depth = 1 if isinstance(key, str) else len(key)
        self.fold = fold
        super().__init__(
            column,
            *_keys(key),
            *[bindparam(None, v, type_=String(), unique=True) for v in values],
        )


def _parts(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(clause, **kw) for clause in element.clauses]


def _pg_path(column: str, keys: list[str]) -> tuple[str, str]:
    """The object holding the last key (``->`` yields NULL through a non-object, as
    the evaluator's walk does) and that key, cast for the ``->``/``->>`` operators."""
    for key in keys[:-1]:
        column = f"({column} -> CAST({key} AS TEXT))"
    return column, f"CAST({keys[-1]} AS TEXT)"


@compiles(JsonRead, "postgresql")
def _pg_read(element: JsonRead, compiler: SQLCompiler, **kw: Any) -> str:
    column, *keys = _parts(element, compiler, **kw)
    column, key = _pg_path(column, keys)
    typeof = f"jsonb_typeof({column} -> {key})"
    value = f"({column} ->> {key})"
    if element.kind == "text":
        return f"(CASE WHEN {typeof} = 'string' THEN {value} END)"
    if element.kind == "number":
        return f"(CASE WHEN {typeof} = 'number' THEN CAST({value} AS DOUBLE PRECISION) END)"
    if element.kind == "boolean":
        return f"(CASE WHEN {typeof} = 'boolean' THEN CAST({value} AS BOOLEAN) END)"
    if element.kind == "day":
        return (
            f"(CASE WHEN {typeof} = 'string' AND {value} ~ '{_PG_DAY_REGEX}' "
            f"THEN substr({value}, 1, 10) END)"
        )
    if element.kind == "is_array":
        return f"(coalesce({typeof}, 'null') = 'array')"
    if element.kind == "is_true":
        return f"coalesce(({column} -> {key}) = CAST('true' AS JSONB), false)"
    return f"(coalesce({typeof}, 'null') <> 'null')"


def _sqlite_json_path(keys: list[str]) -> str:
    """``$."a"."b"``; json_type/json_extract give NULL through a non-object."""
    return "('$.\"' || " + " || '\".\"' || ".join(keys) + " || '\"')"


def _sqlite_path(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    column, *keys = _parts(element, compiler, **kw)
    return [column, _sqlite_json_path(keys)]


@compiles(JsonRead, "sqlite")
def _sqlite_read(element: JsonRead, compiler: SQLCompiler, **kw: Any) -> str:
    column, path = _sqlite_path(element, compiler, **kw)
    typeof = f"json_type({column}, {path})"
    value = f"json_extract({column}, {path})"
    if element.kind == "text":
        return f"(CASE WHEN {typeof} = 'text' THEN {value} END)"
    if element.kind == "number":
        return f"(CASE WHEN {typeof} IN ('integer', 'real') THEN CAST({value} AS REAL) END)"
    if element.kind == "boolean":
        return f"(CASE {typeof} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
    if element.kind == "day":
        return (
            f"(CASE WHEN {typeof} = 'text' AND {value} GLOB '{_SQLITE_DAY_GLOB}' "
            f"THEN substr({value}, 1, 10) END)"
        )
    if element.kind == "is_array":
        return f"(coalesce({typeof}, 'null') = 'array')"
    if element.kind == "is_true":
        return f"coalesce({typeof} = 'true', 0)"
    return f"(coalesce({typeof}, 'null') <> 'null')"


@compiles(json_has_item, "postgresql")
def _pg_has_item(element: json_has_item, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, item = _parts(element, compiler, **kw)
    key = f"CAST({key} AS TEXT)"
    return (
        f"(coalesce(jsonb_typeof({column} -> {key}), 'null') = 'array' AND "
        f"({column} -> {key}) @> jsonb_build_array(CAST({item} AS TEXT)))"
    )


@compiles(json_has_item, "sqlite")
def _sqlite_has_item(element: json_has_item, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, item = _parts(element, compiler, **kw)
    path = f"('$.\"' || {key} || '\"')"
    return (
        f"(coalesce(json_type({column}, {path}), 'null') = 'array' AND EXISTS ("
        f"SELECT 1 FROM json_each({column}, {path}) AS item "
        f"WHERE item.type = 'text' AND item.value = {item}))"
    )


@compiles(json_text_in, "postgresql")
def _pg_text_in(element: json_text_in, compiler: SQLCompiler, **kw: Any) -> str:
    column, *rest = _parts(element, compiler, **kw)
    keys, values = rest[: element.depth], rest[element.depth :]
    column, key = _pg_path(column, keys)
    options = ", ".join(f"CAST({v} AS TEXT)" for v in values)
    text = f"({column} ->> {key})"
    if not element.fold:
        return f"({text} IN ({options}) AND jsonb_typeof({column} -> {key}) = 'string')"
    # Folding keeps the byte length (ASCII letters only), so a length test, far cheaper
    # than translate(), first turns away most rows of a scan (measured: the fold was
    # half the time of a 160k-row category filter).
    lengths = ", ".join(f"octet_length(CAST({v} AS TEXT))" for v in values)
    return (
        f"(octet_length({text}) IN ({lengths}) AND {_PG_FOLD.format(text)} IN ({options})"
        f" AND jsonb_typeof({column} -> {key}) = 'string')"
    )


@compiles(json_text_in, "sqlite")
def _sqlite_text_in(element: json_text_in, compiler: SQLCompiler, **kw: Any) -> str:
    column, *rest = _parts(element, compiler, **kw)
    keys, values = rest[: element.depth], rest[element.depth :]
    path = _sqlite_json_path(keys)
    text = (
        f"(CASE WHEN json_type({column}, {path}) = 'text' THEN json_extract({column}, {path}) END)"
    )
    text = _SQLITE_FOLD.format(text) if element.fold else text
    return f"({text} IN ({', '.join(values)}))"


# --- the evaluator's side -------------------------------------------------------------


def py_get(doc: Any, key: Key) -> Any:
    """The value at ``key`` (a key or a path); None through anything but an object."""
    for part in [key] if isinstance(key, str) else key:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(part)
    return doc


def py_text(doc: Mapping[str, Any] | None, key: Key) -> str | None:
    value = py_get(doc, key)
    return value if isinstance(value, str) else None


def py_number(doc: Mapping[str, Any] | None, key: Key) -> float | None:
    value = py_get(doc, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def py_boolean(doc: Mapping[str, Any] | None, key: Key) -> bool | None:
    value = py_get(doc, key)
    return value if isinstance(value, bool) else None


def py_day(doc: Mapping[str, Any] | None, key: Key) -> str | None:
    value = py_get(doc, key)
    if isinstance(value, str) and DAY_PATTERN.match(value):
        return value[:10]
    return None


def py_is_set(doc: Mapping[str, Any] | None, key: Key) -> bool:
    return py_get(doc, key) is not None


def py_is_array(doc: Mapping[str, Any] | None, key: Key) -> bool:
    return isinstance(py_get(doc, key), list)


def py_is_true(doc: Mapping[str, Any] | None, key: Key) -> bool:
    return py_get(doc, key) is True


def py_has_item(doc: Mapping[str, Any] | None, key: str, item: str) -> bool:
    value = (doc or {}).get(key)
    return isinstance(value, list) and any(isinstance(i, str) and i == item for i in value)


class json_rows(FunctionElement[Any]):  # noqa: N801 - reads like a SQL function
    """An aggregate: the rows as one JSON array of arrays of these columns (JSON
    columns embedded as JSON), so rows can ride along in another statement's column.
    NULL on PostgreSQL when there are no rows."""

    type = JSON()
    inherit_cache = True


@compiles(json_rows, "postgresql")
def _pg_json_rows(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg(json_build_array({', '.join(_parts(element, compiler, **kw))}))"


@compiles(json_rows, "sqlite")
def _sqlite_json_rows(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    parts = [
        f"json({sql})" if isinstance(column.type, JSON) else sql
        for column, sql in zip(element.clauses, _parts(element, compiler, **kw), strict=True)
    ]
    return f"json_group_array(json_array({', '.join(parts)}))"
