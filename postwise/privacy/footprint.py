"""Where a person's data lives, derived from the schema so that new tables are not missed.

Export and erasure both start here, so what a person can see and what erasure removes
are the same rows:

- **owned rows**: the contact itself and every row of a table with a ``contact_id``
  column (or any foreign key to ``contacts``) pointing at it, found from
  ``Base.metadata``; plus anonymous events (no contact) under an ``anonymous_id`` the
  person's own events carry, i.e. what they did on the site before they identified;
- **mentions**: any other row in the workspace whose text or JSON holds one of the
  person's addresses. Rows that exist only because of the person (captured mail,
  jobs, unattributed events) count as theirs; in anyone else's row the address is
  replaced by ``[erased]``.

Every table is swept for mentions except those listed in ``NOT_PERSONAL`` with the reason
why; ``tests/privacy/test_footprint.py`` fails when a table is added that fits neither.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    FromClause,
    String,
    Table,
    Text,
    and_,
    cast,
    or_,
    select,
)
from sqlalchemy.orm import Session

from postwise.core.errors import ValidationFailed
from postwise.privacy.hashing import suppression_form
from postwise.storage.tables import Base, Contact, ContactChange, Event
from postwise.storage.tenancy import workspace_of

CONTACTS = "contacts"
NOT_PERSONAL: dict[str, str] = {
    "workspaces": "tenant name and settings",
    "api_keys": "key hashes, prefixes and scopes",
    "attribute_definitions": "the attribute schema, not anyone's values",
    "erasures": "the erasure audit, which by design holds no personal data",
    "suppressions": "erasure handles it itself: address entries go, a keyed hash stays",
}
# Tables whose rows exist only for the person they mention; such rows go whole.
BELONG_TO_MENTIONED: dict[str, str] = {
    "captured_messages": "mail captured on its way to (or from) the person",
    "jobs": "background work carried out for the person",
    "inbound_messages": "a bounce, complaint or reply about the person (``addresses``)",
    "suppression_events": "the audit of suppressing or lifting the person's address",
}
REDACTED = "[erased]"
# Characters that may sit next to an address inside a longer one (local part, subdomain).
_LEFT = r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
_RIGHT = r"(?![\w-]|\.[\w-])"


def _models() -> dict[str, Any]:
    return {
        mapper.local_table.name: mapper.class_
        for mapper in Base.registry.mappers
        if isinstance(mapper.local_table, Table)
    }


def model_for(table: Table) -> Any:
    return _models()[table.name]


def contact_link(table: Table) -> Column[Any] | None:
    """The column naming a contact: ``contact_id`` or any foreign key to ``contacts``."""
    for column in table.columns:
        if column.name == "contact_id" or any(
            fk.column.table.name == CONTACTS for fk in column.foreign_keys
        ):
            return column
    return None


def linked_tables() -> list[Table]:
    """Tables with rows owned by a contact, dependents before what they depend on."""
    tables = [
        t for t in Base.metadata.sorted_tables if t.name != CONTACTS and contact_link(t) is not None
    ]
    return list(reversed(tables))


def swept_tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name not in NOT_PERSONAL]


def text_columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if isinstance(c.type, String | JSON)]


@dataclass(frozen=True)
class Person:
    """Who a request is about: their contact rows, addresses and anonymous ids."""

    contact_ids: tuple[int, ...]
    addresses: tuple[str, ...]  # in suppression form (normalized, lower-case)
    anonymous_ids: tuple[str, ...]

    def pattern(self) -> re.Pattern[str]:
        """Any of the addresses as a whole address, not inside a longer one; any case."""
        forms = sorted({form for a in self.addresses for form in _spellings(a)}, key=len)
        alternatives = "|".join(re.escape(f) for f in reversed(forms))
        return re.compile(f"{_LEFT}(?:{alternatives}){_RIGHT}", re.IGNORECASE)


def _spellings(address: str) -> set[str]:
    """The address with its domain both as stored (IDNA) and as people write it."""
    local, _, domain = address.rpartition("@")
    spellings = {address}
    with contextlib.suppress(UnicodeError):
        spellings.add(f"{local}@{domain.encode().decode('idna')}".lower())
    return spellings


def _stored_spellings(address: str) -> set[str]:
    """Spellings plus how a JSON column may store them (non-ASCII escaped as ``\\uXXXX``)."""
    out = set()
    for spelling in _spellings(address):
        out.add(spelling)
        out.add(json.dumps(spelling)[1:-1])
    return out


def former_addresses(session: Session, contact_ids: tuple[int, ...]) -> set[str]:
    """Addresses the contacts had before an update, from their change history."""
    found: set[str] = set()
    changes = session.scalars(
        select(ContactChange.changes).where(ContactChange.contact_id.in_(contact_ids))
    )
    for change in changes:
        values = change.get("email") if isinstance(change, dict) else None
        for value in values if isinstance(values, list) else []:
            if isinstance(value, str):
                try:
                    found.add(suppression_form(value))
                except ValidationFailed:
                    continue
    return found


def find_person(session: Session, contacts: list[Contact], address: str) -> Person:
    """The person behind ``contacts`` (may be none) and ``address``, with former addresses.

    A former address now held by another contact is left out: it is someone else's now.
    """
    ids = tuple(sorted(c.id for c in contacts))
    addresses = {suppression_form(address)} | {suppression_form(c.email) for c in contacts}
    if ids:
        former = former_addresses(session, ids) - addresses
        if former:
            taken = {
                suppression_form(email)
                for email in session.scalars(
                    select(Contact.email).where(
                        Contact.id.not_in(ids),
                        Contact.email_domain.in_({a.rsplit("@", 1)[1] for a in former}),
                    )
                )
            }
            addresses |= former - taken
    anonymous: tuple[str, ...] = ()
    if ids:
        anonymous = tuple(
            sorted(
                a
                for a in session.scalars(
                    select(Event.anonymous_id)
                    .where(Event.contact_id.in_(ids), Event.anonymous_id.is_not(None))
                    .distinct()
                )
                if a
            )
        )
    return Person(ids, tuple(sorted(addresses)), anonymous)


def owned_criteria(table: Table, person: Person) -> ColumnElement[bool]:
    """Which rows of ``table`` (the contacts or a linked table) belong to the person."""
    model = model_for(table)
    if table.name == CONTACTS:
        contact_ids: ColumnElement[bool] = model.id.in_(person.contact_ids)
        return contact_ids
    link = contact_link(table)
    if link is None:
        raise ValueError(f"table {table.name} has no contact_id")
    column = getattr(model, link.key)
    owned: ColumnElement[bool] = column.in_(person.contact_ids)
    if table.name == Event.__tablename__ and person.anonymous_ids:
        owned = or_(owned, and_(column.is_(None), Event.anonymous_id.in_(person.anonymous_ids)))
    return owned


def owns(table: Table, row: Any, person: Person) -> bool:
    """``owned_criteria`` for one loaded row (in Python: SQL's NULL logic would blur it)."""
    if table.name == CONTACTS:
        return row.id in person.contact_ids
    link = contact_link(table)
    if link is None:
        return False
    owner = getattr(row, link.key)
    if owner is not None:
        return owner in person.contact_ids
    return table.name == Event.__tablename__ and row.anonymous_id in person.anonymous_ids


@dataclass
class Mention:
    """A row outside the person's own that holds one of their addresses."""

    table: Table
    row: Any
    columns: list[Column[Any]]
    belongs_to_person: bool


def _prefilter(column: Column[Any], model: Any, person: Person) -> ColumnElement[bool]:
    attribute = getattr(model, column.key)
    text = cast(attribute, Text) if isinstance(column.type, JSON) else attribute
    return or_(
        *(
            text.icontains(spelling, autoescape=True)
            for address in person.addresses
            for spelling in _stored_spellings(address)
        )
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def mentions(session: Session, person: Person) -> list[Mention]:
    """Rows in this workspace, outside the person's own, that hold one of their addresses.

    A ``LIKE`` prefilter finds candidates (one scan per table: erasures are rare), then
    a whole-address match decides, so ``ann@x.example`` never matches ``joann@x.example``.
    """
    if not person.addresses:
        return []
    pattern = person.pattern()
    workspace_id = workspace_of(session)
    found: list[Mention] = []
    for table in swept_tables():
        columns = text_columns(table)
        if not columns:
            continue
        model = model_for(table)
        stmt = select(model).where(or_(*(_prefilter(c, model, person) for c in columns)))
        if "workspace_id" in table.columns:
            stmt = stmt.where(getattr(model, "workspace_id") == workspace_id)  # noqa: B009
        link = contact_link(table)
        for row in session.scalars(stmt):
            if owns(table, row, person):
                continue
            hit = [
                c for c in columns if any(pattern.search(s) for s in _strings(getattr(row, c.key)))
            ]
            if not hit:
                continue
            unattributed = link is not None and getattr(row, link.key) is None
            found.append(
                Mention(table, row, hit, table.name in BELONG_TO_MENTIONED or unattributed)
            )
    return found


def redact_value(value: Any, pattern: re.Pattern[str]) -> Any:
    """The value with every occurrence of the address replaced, in strings and JSON alike."""
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        return {redact_value(k, pattern): redact_value(v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, pattern) for v in value]
    return value


def redact(mention: Mention, pattern: re.Pattern[str]) -> None:
    for column in mention.columns:
        value = redact_value(getattr(mention.row, column.key), pattern)
        length = getattr(column.type, "length", None)
        if isinstance(value, str) and length:
            value = value[:length]
        setattr(mention.row, column.key, value)


def row_document(table: FromClause, row: Any) -> dict[str, Any]:
    """Every column but the workspace, JSON-ready; bytes (raw mail) decoded as text."""
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.name == "workspace_id":
            continue
        value = getattr(row, column.key)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        out[column.name] = value
    return out
