"""Who an event belongs to: identify, group and alias, and the anonymous-id merge.

Rules (docs/tracking.md):

* A ``userId`` is a contact's ``external_id``; a ``userId`` that is an email address is
  also the contact's email when ``traits.email`` is absent.
* ``identify`` writes the contact through ``contacts.actions`` (the same validation as
  the API and the importer). Traits name contact fields (``TRAIT_FIELDS``) or declared
  custom attributes; other traits stay in the event only. Without an email and without
  a known ``userId`` there is no contact yet: the event is stored, and the identity map
  remembers the ``anonymousId`` for the ``userId`` until an email arrives.
* ``identities`` maps each anonymous id to one contact, the first it was identified as;
  merging sets the events of those ids (and of the ``userId``) that have no contact yet
  to the contact in one UPDATE and writes one ``identity_merged`` audit row. Repeating a
  call finds nothing left to merge and writes nothing.
* ``group`` upserts the company of ``traits.domain``, ``traits.website`` or a
  domain-like ``groupId`` and links the contact to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, func, insert, or_, select, update
from sqlalchemy.orm import Session

from postwise.contacts.actions import update_contact, upsert_contacts
from postwise.contacts.attributes import AttributeSchema, Entity
from postwise.contacts.companies import upsert_company
from postwise.contacts.emails import normalize_email
from postwise.core.clock import utcnow
from postwise.core.errors import FieldError, ValidationFailed
from postwise.segments import changes as segment_changes
from postwise.storage.tables import Contact, ContactChange, Event, Identity
from postwise.storage.tenancy import workspace_of
from postwise.tracking.events import Call

SOURCE = "tracking"
# Segment trait (and common spellings) -> contact field.
TRAIT_FIELDS = {
    "email": "email",
    "firstName": "first_name", "first_name": "first_name",
    "lastName": "last_name", "last_name": "last_name",
    "title": "job_title", "jobTitle": "job_title", "job_title": "job_title",
    "phone": "phone",
    "timezone": "timezone",
    "language": "language",
    "seniority": "seniority",
    "department": "department",
    "country": "country",
}  # fmt: skip
# Segment group trait -> company field.
GROUP_TRAIT_FIELDS = {
    "name": "name",
    "industry": "industry",
    "employees": "employee_count",
    "employee_count": "employee_count",
    "country": "country",
}


@lru_cache(maxsize=4096)
def user_email(value: str | None) -> str | None:
    """The email a userId stands for, when it is one."""
    if not value or "@" not in value:
        return None
    try:
        return normalize_email(value).address
    except ValidationFailed:
        return None


@dataclass
class Resolver:
    """What the stored identities say about the ids of one batch, updated as it is applied."""

    by_user: dict[str, int] = field(default_factory=dict)
    by_anonymous: dict[str, int] = field(default_factory=dict)
    contact_schema: AttributeSchema | None = None
    company_schema: AttributeSchema | None = None

    @classmethod
    def load(cls, session: Session, user_ids: set[str], anonymous_ids: set[str]) -> Resolver:
        resolver = cls()
        if user_ids:
            emails = {e for u in user_ids if (e := user_email(u))}
            clause: ColumnElement[bool] = Contact.external_id.in_(user_ids)
            if emails:
                clause = or_(clause, Contact.email.in_(emails))
            found = session.execute(
                select(Contact.id, Contact.external_id, Contact.email).where(clause)
            )
            by_email: dict[str, int] = {}
            for contact_id, external_id, email in found:
                if external_id is not None and external_id in user_ids:
                    resolver.by_user[external_id] = contact_id
                by_email[email] = contact_id
            for user_id in user_ids:
                as_email = user_email(user_id)
                if user_id not in resolver.by_user and as_email in by_email:
                    resolver.by_user[user_id] = by_email[as_email]
        if anonymous_ids:
            # Core on the hot path (every batch): the workspace filter is written out here.
            table = Identity.__table__.c
            rows = session.connection().execute(
                select(table.anonymous_id, table.contact_id).where(
                    table.workspace_id == workspace_of(session),
                    table.anonymous_id.in_(anonymous_ids),
                    table.contact_id.is_not(None),
                )
            )
            resolver.by_anonymous = {a: c for a, c in rows if c is not None}
        return resolver

    def contact_of(self, user_id: str | None, anonymous_id: str | None) -> int | None:
        if user_id is not None and user_id in self.by_user:
            return self.by_user[user_id]
        if anonymous_id is not None:
            return self.by_anonymous.get(anonymous_id)
        return None

    def schema(self, session: Session, entity: Entity) -> AttributeSchema:
        if entity is Entity.CONTACT:
            if self.contact_schema is None:
                self.contact_schema = AttributeSchema.load(session, entity)
            return self.contact_schema
        if self.company_schema is None:
            self.company_schema = AttributeSchema.load(session, entity)
        return self.company_schema


def contact_values(traits: Mapping[str, Any], schema: AttributeSchema) -> dict[str, Any]:
    """Traits as contact fields and declared attributes; other traits are left out."""
    values: dict[str, Any] = {}
    for trait, value in traits.items():
        column = TRAIT_FIELDS.get(trait)
        if column is not None and value is not None:
            values[column] = value
    name = traits.get("name")
    if isinstance(name, str) and name.strip() and "first_name" not in values:
        first, _, last = name.strip().partition(" ")
        values["first_name"] = first
        if last.strip() and "last_name" not in values:
            values["last_name"] = last.strip()
    address = traits.get("address")
    if isinstance(address, Mapping) and address.get("country") and "country" not in values:
        values["country"] = address["country"]
    attributes = {k: v for k, v in traits.items() if k in schema.types and k not in TRAIT_FIELDS}
    if attributes:
        values["attributes"] = attributes
    return values


def identify(session: Session, call: Call, resolver: Resolver) -> int | None:
    """Create or update the contact of an identify call; its id, or None without an email."""
    values = contact_values(call.properties, resolver.schema(session, Entity.CONTACT))
    if call.user_id is not None:
        values["external_id"] = call.user_id
        if "email" not in values and (email := user_email(call.user_id)):
            values["email"] = email
    known = resolver.contact_of(call.user_id, call.anonymous_id)
    if known is not None:
        update_contact(session, known, values, source=SOURCE)
        contact_id: int | None = known
    elif "email" in values:
        [result] = upsert_contacts(session, [values], source=SOURCE)
        if result.status == "rejected":
            raise ValidationFailed.from_errors(result.errors)
        contact_id = result.contact_id
    else:
        contact_id = None
    if contact_id is not None and call.user_id is not None:
        resolver.by_user[call.user_id] = contact_id
    remember(session, call, call.anonymous_id, contact_id, resolver)
    return contact_id


def alias(session: Session, call: Call, resolver: Resolver) -> int | None:
    """``previousId`` becomes another name of ``userId``'s contact (now or once it exists)."""
    contact_id = resolver.contact_of(call.user_id, None)
    remember(session, call, call.previous_id, contact_id, resolver)
    return contact_id


def remember(
    session: Session,
    call: Call,
    anonymous_id: str | None,
    contact_id: int | None,
    resolver: Resolver,
) -> None:
    """Record ``anonymous_id`` -> ``userId``/contact, then merge what the contact now owns."""
    if anonymous_id is not None:
        row = session.scalar(select(Identity).where(Identity.anonymous_id == anonymous_id))
        if row is None:
            first_seen = session.scalar(
                select(func.min(Event.occurred_at)).where(Event.anonymous_id == anonymous_id)
            )
            session.add(
                Identity(
                    anonymous_id=anonymous_id,
                    user_id=call.user_id,
                    contact_id=contact_id,
                    source=call.type,
                    first_seen=min(first_seen or call.occurred_at, call.occurred_at),
                )
            )
            session.flush()
        elif row.contact_id is None:
            # The first contact the id is identified as wins; later ones leave it be.
            row.user_id = row.user_id or call.user_id
            row.contact_id = contact_id
    if contact_id is not None:
        users = {u for u in (call.user_id, call.previous_id) if u}
        merge(session, contact_id, users, call, resolver=resolver)


def merge(
    session: Session,
    contact_id: int,
    user_ids: Iterable[str],
    call: Call,
    *,
    resolver: Resolver,
) -> int:
    """Give ``contact_id`` the unmerged ids of its users and their contact-less events."""
    now = utcnow()
    user_ids = set(user_ids)
    pending = list(
        session.scalars(
            select(Identity).where(
                Identity.merged_at.is_(None),
                or_(Identity.contact_id == contact_id, Identity.user_id.in_(user_ids))
                if user_ids
                else Identity.contact_id == contact_id,
            )
        )
    )
    anonymous_ids = sorted(row.anonymous_id for row in pending)
    owned = [Event.user_id.in_(user_ids)] if user_ids else []
    if anonymous_ids:
        owned.append(Event.anonymous_id.in_(anonymous_ids))
    moved = 0
    if owned:
        result = session.execute(
            update(Event)
            .where(Event.contact_id.is_(None), or_(*owned))
            .values(contact_id=contact_id)
            .execution_options(synchronize_session=False)
        )
        moved = int(result.rowcount)  # type: ignore[attr-defined]
    for row in pending:
        row.contact_id, row.merged_at = contact_id, now
        resolver.by_anonymous.setdefault(row.anonymous_id, contact_id)
    if pending or moved:
        session.execute(
            insert(ContactChange),
            [
                {
                    "workspace_id": workspace_of(session),
                    "contact_id": contact_id,
                    "kind": "identity_merged",
                    "source": SOURCE,
                    "at": now,
                    "changes": {
                        "anonymous_ids": anonymous_ids,
                        "user_ids": sorted(user_ids),
                        "events": moved,
                        "call": call.type,
                        "message_id": call.message_id,
                    },
                }
            ],
        )
    session.flush()
    if moved:
        segment_changes.note(session, [contact_id], [segment_changes.ANY_EVENT])
    return moved


def _domain_of(call: Call) -> str | None:
    traits = call.properties
    for key in ("domain", "website"):
        value = traits.get(key)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            host = urlsplit(text if "//" in text else f"//{text}").hostname or text
            return host.removeprefix("www.")
    group_id = call.group_id or ""
    if "." in group_id and " " not in group_id and "@" not in group_id:
        return group_id.lower().removeprefix("www.")
    return None


def group(session: Session, call: Call, resolver: Resolver) -> int | None:
    """Upsert the company named by the group call and link the caller's contact to it."""
    contact_id = resolver.contact_of(call.user_id, call.anonymous_id)
    domain = _domain_of(call)
    if domain is None:
        return contact_id
    schema = resolver.schema(session, Entity.COMPANY)
    data: dict[str, Any] = {"domain": domain}
    for trait, value in call.properties.items():
        column = GROUP_TRAIT_FIELDS.get(trait)
        if column is not None and value is not None:
            data[column] = value
    attributes = {k: v for k, v in call.properties.items() if k in schema.types}
    if attributes:
        data["attributes"] = attributes
    company, _created = upsert_company(session, data)
    if contact_id is not None:
        contact = session.get(Contact, contact_id)
        if contact is not None and contact.company_id != company.id:
            session.add(
                ContactChange(
                    contact_id=contact.id,
                    kind="updated",
                    source=SOURCE,
                    changes={
                        "company_id": [contact.company_id, company.id],
                        "group": call.group_id,
                    },
                )
            )
            contact.company_id = company.id
            session.flush()
            segment_changes.note(session, [contact.id], [segment_changes.COMPANY])
    return contact_id


def field_errors(exc: ValidationFailed) -> list[FieldError]:
    return exc.errors or [FieldError(exc.field, exc.code, exc.message)]
