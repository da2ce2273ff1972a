"""Custom attributes: each is declared with a type per workspace, and values are coerced
to one JSON form per type so that segments compare them the same way on every backend.

Stored forms: string -> str, number -> int or float, boolean -> bool,
date -> ``YYYY-MM-DD`` (or ``YYYY-MM-DDTHH:MM:SS+00:00`` when a time was given),
list -> list of str. CSV cells arrive as text and are parsed by the same rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from postwise.core.pagination import Page, keyset_page
from postwise.storage.tables import AttributeDefinition

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_STRING = 2000
MAX_LIST_ITEMS = 200
MAX_DESCRIPTION = 500
_TRUE = {"true", "yes", "y", "1", "t", "on"}
_FALSE = {"false", "no", "n", "0", "f", "off"}


class AttributeType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    LIST = "list"


class Entity(StrEnum):
    CONTACT = "contact"
    COMPANY = "company"


class InvalidValue(ValueError):
    """Raised by ``coerce``; the message says what was expected."""


def coerce(kind: AttributeType, value: Any) -> Any:
    """The stored form of ``value`` for an attribute of type ``kind`` (None stays None)."""
    if value is None:
        return None
    if kind is AttributeType.STRING:
        if isinstance(value, bool | dict | list):
            raise InvalidValue("expected text")
        text = str(value)
        if len(text) > MAX_STRING:
            raise InvalidValue(f"text longer than {MAX_STRING} characters")
        if "\x00" in text:
            raise InvalidValue("text contains a NUL character")
        return text
    if kind is AttributeType.NUMBER:
        return _number(value)
    if kind is AttributeType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidValue("expected true or false")
    if kind is AttributeType.DATE:
        return _date(value)
    if kind is AttributeType.LIST:
        items = value.split(";") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise InvalidValue("expected a list of strings (in CSV: values separated by ';')")
        cleaned = [i.strip() for i in items if i.strip()]
        if any("\x00" in i for i in cleaned):
            raise InvalidValue("an item contains a NUL character")
        if len(cleaned) > MAX_LIST_ITEMS:
            raise InvalidValue(f"more than {MAX_LIST_ITEMS} items")
        return cleaned
    raise InvalidValue(f"unknown attribute type {kind}")  # pragma: no cover


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise InvalidValue("expected a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "")) if value.strip() else math.nan
        except ValueError:
            raise InvalidValue(f"expected a number, got {value!r}") from None
    else:
        raise InvalidValue("expected a number")
    if not math.isfinite(number):
        raise InvalidValue("expected a finite number")
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        raise InvalidValue("expected a date as YYYY-MM-DD or an ISO 8601 date-time")
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        return _date(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidValue(f"expected a date as YYYY-MM-DD, got {value!r}") from None


class AttributeSchema:
    """The declared attributes of one entity in one workspace, loaded once per operation."""

    def __init__(self, entity: Entity, types: Mapping[str, AttributeType]) -> None:
        self.entity = entity
        self.types = dict(types)

    @classmethod
    def load(cls, session: Session, entity: Entity) -> AttributeSchema:
        rows = session.execute(
            select(AttributeDefinition.name, AttributeDefinition.type).where(
                AttributeDefinition.entity == entity.value
            )
        )
        return cls(entity, {name: AttributeType(kind) for name, kind in rows})

    def clean(self, values: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
        """Coerced values; problems are appended to ``errors`` with ``attributes.NAME`` fields."""
        cleaned: dict[str, Any] = {}
        for name, value in values.items():
            kind = self.types.get(name)
            if kind is None:
                errors.append(
                    FieldError(
                        f"attributes.{name}",
                        "unknown_attribute",
                        f"unknown {self.entity.value} attribute {name!r}: declare it first "
                        "(POST /api/attributes or 'postwise attribute create')",
                    )
                )
                continue
            try:
                cleaned[name] = coerce(kind, value)
            except InvalidValue as exc:
                errors.append(
                    FieldError(
                        f"attributes.{name}", "invalid_attribute", f"{name} ({kind.value}): {exc}"
                    )
                )
        return cleaned


def define_attribute(
    session: Session, entity: str, name: str, kind: str, description: str = ""
) -> AttributeDefinition:
    errors: list[FieldError] = []
    if entity not in Entity.__members__.values():
        errors.append(
            FieldError("entity", "invalid_entity", "entity must be 'contact' or 'company'")
        )
    if not NAME_PATTERN.fullmatch(name or ""):
        errors.append(
            FieldError(
                "name",
                "invalid_name",
                "attribute names are lower-case letters, digits and '_', starting with a letter",
            )
        )
    if kind not in AttributeType.__members__.values():
        errors.append(
            FieldError("type", "invalid_type", f"type must be one of {', '.join(AttributeType)}")
        )
    errors += _description_errors(description)
    if errors:
        raise ValidationFailed.from_errors(errors)
    existing = session.scalar(
        select(AttributeDefinition).where(
            AttributeDefinition.entity == entity, AttributeDefinition.name == name
        )
    )
    if existing is not None:
        raise Conflict(
            f"{entity} attribute {name!r} already exists", code="attribute_exists", field="name"
        )
    definition = AttributeDefinition(entity=entity, name=name, type=kind, description=description)
    session.add(definition)
    session.flush()
    return definition


def get_attribute(session: Session, attribute_id: int) -> AttributeDefinition:
    found = session.get(AttributeDefinition, attribute_id)
    if found is None:
        raise NotFound(f"attribute definition {attribute_id} does not exist")
    return found


def _description_errors(description: str) -> list[FieldError]:
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        return [
            FieldError(
                "description",
                "invalid_description",
                f"description must be at most {MAX_DESCRIPTION} characters, without NUL",
            )
        ]
    return []


def search_attributes(
    session: Session,
    *,
    entity: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[AttributeDefinition]:
    stmt = select(AttributeDefinition)
    if entity:
        stmt = stmt.where(AttributeDefinition.entity == entity)
    if q:
        stmt = stmt.where(AttributeDefinition.name.contains(q.lower(), autoescape=True))
    return keyset_page(session, stmt, AttributeDefinition.id, cursor, limit)


def update_attribute(session: Session, attribute_id: int, description: str) -> AttributeDefinition:
    """Only the description changes: name and type are what stored values were checked against."""
    definition = get_attribute(session, attribute_id)
    if errors := _description_errors(description):
        raise ValidationFailed.from_errors(errors)
    definition.description = description
    session.flush()
    return definition


def delete_attribute(session: Session, attribute_id: int) -> None:
    """Stored values stay (rewriting every row is costly and loses data); new writes of the
    name are refused as unknown until it is declared again."""
    session.delete(get_attribute(session, attribute_id))
    session.flush()
