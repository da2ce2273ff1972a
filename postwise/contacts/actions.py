"""Every write to contacts goes through here: one validation, one company link, one audit.

``upsert_contacts`` is the batch primitive behind the API's single and bulk upserts and
the tracking ``identify`` call; each row is applied whole or rejected whole with its
reasons, and a row that changes nothing writes nothing (so repeating a call is harmless).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, or_, select
from sqlalchemy.orm import Session

from postwise.contacts.attributes import AttributeSchema, Entity
from postwise.contacts.companies import companies_for_domains
from postwise.contacts.fields import clean_contact
from postwise.core.clock import utcnow
from postwise.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from postwise.core.pagination import Page, keyset_page
from postwise.segments import changes as segment_changes
from postwise.storage.tables import Contact, ContactChange, ListMembership
from postwise.storage.tenancy import workspace_of

# Plain tables: a Core executemany on them skips the ORM bulk layer (each row names its
# workspace itself).
_CONTACTS = cast(Table, Contact.__table__)
_CHANGES = cast(Table, ContactChange.__table__)

# Statuses a person reached by their own act (or their mailbox's); an upsert never undoes them.
STICKY_STATUSES = frozenset({"unsubscribed", "complained", "bounced"})


@dataclass
class RowResult:
    index: int
    status: str  # created | updated | unchanged | rejected
    contact_id: int | None = None
    email: str | None = None
    errors: list[FieldError] = field(default_factory=list)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _diff(contact: Contact, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    changes: dict[str, list[Any]] = {}
    for key, value in values.items():
        if key == "attributes":
            merged = {**contact.attributes, **value}
            if merged != contact.attributes:
                changed = {k: v for k, v in value.items() if contact.attributes.get(k) != v}
                changes["attributes"] = [
                    {k: contact.attributes.get(k) for k in changed},
                    changed,
                ]
            continue
        old = getattr(contact, key)
        if old != value:
            changes[key] = [_jsonable(old), _jsonable(value)]
    return changes


def _status_error(contact: Contact, values: Mapping[str, Any]) -> FieldError | None:
    new = values.get("status")
    if new and new != contact.status and contact.status in STICKY_STATUSES:
        return FieldError(
            "status",
            "status_locked",
            f"the contact is {contact.status}; only the person can reverse that "
            "(a confirmed list subscription), not an update",
        )
    return None


def _change(
    workspace_id: int,
    contact_id: int,
    kind: str,
    source: str,
    changes: Mapping[str, Any],
    at: datetime,
) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "contact_id": contact_id,
        "kind": kind,
        "source": source,
        "changes": dict(changes),
        "at": at,
    }


def _record_changes(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Audit rows for many contacts in one executemany.

    Nothing reads their ids back, so unlike ``session.add`` this needs no RETURNING: on
    PostgreSQL it is a pipelined executemany, not one huge statement per thousand rows.
    The rows must name the session's workspace (``_change`` does).
    """
    if rows:
        session.connection().execute(insert(_CHANGES), list(rows))


# Every column a new contact is inserted with: executemany needs one key set for all rows.
_NEW_CONTACT: dict[str, Any] = {
    "external_id": None,
    "first_name": None,
    "last_name": None,
    "job_title": None,
    "seniority": None,
    "department": None,
    "country": None,
    "timezone": None,
    "language": None,
    "phone": None,
    "status": "subscribed",
}


def _insert_contacts(session: Session, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """New contacts in one executemany, then their ids by email.

    ``session.add`` needs each id back, which on PostgreSQL is one INSERT ... RETURNING
    with a dozen placeholders per row, and psycopg parses a statement that long in Python
    on every call (it caches only short ones): that parse was most of a bulk call's time.
    An executemany of the one-row statement is pipelined and parsed once.
    """
    if not rows:
        return {}
    session.connection().execute(insert(_CONTACTS), list(rows))
    emails = [row["email"] for row in rows]
    return {
        email: contact_id
        for contact_id, email in session.execute(
            select(Contact.id, Contact.email).where(Contact.email.in_(emails))
        )
    }


def _email_of(owner: Contact | Mapping[str, Any]) -> str:
    """A stored contact, or the row of one this call is about to insert."""
    return str(owner["email"]) if isinstance(owner, Mapping) else owner.email


def upsert_contacts(
    session: Session, rows: Sequence[Mapping[str, Any]], *, source: str
) -> list[RowResult]:
    """Create or update contacts by email. Rows later in the batch win over earlier ones."""
    schema = AttributeSchema.load(session, Entity.CONTACT)
    results: list[RowResult] = []
    cleaned: list[tuple[int, dict[str, Any]]] = []
    for index, row in enumerate(rows):
        try:
            values = clean_contact(row, schema)
        except ValidationFailed as exc:
            results.append(
                RowResult(index, "rejected", email=str(row.get("email") or ""), errors=exc.errors)
            )
            continue
        cleaned.append((index, values))
        results.append(RowResult(index, "pending", email=values["email"]))
    if not cleaned:
        return results
    cleaned, duplicates = _merge_duplicates(cleaned)

    emails = {v["email"] for _, v in cleaned}
    external_ids = {v["external_id"] for _, v in cleaned if v.get("external_id")}
    existing = {
        c.email: c
        for c in session.scalars(
            select(Contact).where(
                or_(Contact.email.in_(emails), Contact.external_id.in_(external_ids))
                if external_ids
                else Contact.email.in_(emails)
            )
        )
    }
    by_external: dict[str, Any] = {c.external_id: c for c in existing.values() if c.external_id}
    created: list[dict[str, Any]] = []
    companies = companies_for_domains(session, {v["email_domain"] for _, v in cleaned})
    now = utcnow()
    workspace_id = workspace_of(session)
    audit: list[dict[str, Any]] = []
    noted: list[tuple[int | None, str]] = []  # (contact, what changed) for segments

    for index, values in cleaned:
        result = results[index]
        contact = existing.get(values["email"])
        ext = values.get("external_id")
        owner = by_external.get(ext) if ext else None
        if owner is not None and owner is not contact:
            result.status = "rejected"
            result.errors = [
                FieldError(
                    "external_id",
                    "external_id_taken",
                    f"external_id {ext!r} belongs to {_email_of(owner)}",
                )
            ]
            continue
        company = companies.get(values["email_domain"])
        if contact is None:
            new = {
                **_NEW_CONTACT,
                **values,
                "attributes": values.get("attributes", {}),
                "workspace_id": workspace_id,
                "company_id": company.id if company else None,
                "created_at": now,
                "updated_at": now,
            }
            created.append(new)
            if ext:
                by_external[ext] = new
            result.status = "created"
            result.contact_id = -1  # filled after the insert
            continue
        if (problem := _status_error(contact, values)) is not None:
            result.status, result.errors = "rejected", [problem]
            continue
        changes = _diff(contact, values)
        if company is not None and contact.company_id is None:
            contact.company_id = company.id
            noted.append((contact.id, segment_changes.COMPANY))
        if not changes:
            result.status, result.contact_id = "unchanged", contact.id
            continue
        for key in changes:
            setattr(
                contact,
                key,
                {**contact.attributes, **values[key]} if key == "attributes" else values[key],
            )
        contact.updated_at = now
        if ext:
            by_external[ext] = contact
        audit.append(_change(workspace_id, contact.id, "updated", source, changes, now))
        noted.extend((contact.id, key) for key in segment_changes.contact_keys(changes))
        result.status, result.contact_id = "updated", contact.id

    session.flush()
    ids = _insert_contacts(session, created)
    for index, _values in cleaned:
        result = results[index]
        if result.status == "created":
            result.contact_id = ids[result.email or ""]
            audit.append(_change(workspace_id, result.contact_id, "created", source, {}, now))
            noted.append((result.contact_id, segment_changes.ANYTHING))
    _record_changes(session, audit)
    segment_changes.note_pairs(session, noted)
    for earlier, final in duplicates.items():
        done = results[final]
        results[earlier] = RowResult(
            earlier, done.status, done.contact_id, done.email, list(done.errors)
        )
    return results


def _merge_duplicates(
    cleaned: list[tuple[int, dict[str, Any]]],
) -> tuple[list[tuple[int, dict[str, Any]]], dict[int, int]]:
    """Rows naming one email twice become one row (later values win), applied once."""
    merged: dict[str, tuple[int, dict[str, Any]]] = {}
    duplicates: dict[int, int] = {}
    for index, values in cleaned:
        previous = merged.get(values["email"])
        if previous is not None:
            earlier, old = previous
            attributes = {**old.get("attributes", {}), **values.get("attributes", {})}
            values = {**old, **values}
            if attributes:
                values["attributes"] = attributes
            for row, final in list(duplicates.items()):
                if final == earlier:
                    duplicates[row] = index
            duplicates[earlier] = index
        merged[values["email"]] = (index, values)
    return sorted(merged.values(), key=lambda item: item[0]), duplicates


def upsert_contact(
    session: Session, data: Mapping[str, Any], *, source: str
) -> tuple[Contact, str]:
    """One contact: (contact, 'created' | 'updated' | 'unchanged'), or ValidationFailed."""
    [result] = upsert_contacts(session, [data], source=source)
    if result.status == "rejected":
        raise ValidationFailed.from_errors(result.errors)
    return get_contact(session, result.contact_id or 0), result.status


def create_contact(session: Session, data: Mapping[str, Any], *, source: str) -> Contact:
    email = clean_contact(
        {"email": data.get("email")}, AttributeSchema(Entity.CONTACT, {}), partial=True
    )
    if session.scalar(select(Contact.id).where(Contact.email == email["email"])) is not None:
        raise Conflict(
            f"a contact with email {email['email']} already exists",
            code="contact_exists",
            field="email",
        )
    contact, _ = upsert_contact(session, data, source=source)
    return contact


def update_contact(
    session: Session, contact_id: int, data: Mapping[str, Any], *, source: str
) -> Contact:
    contact = get_contact(session, contact_id)
    values = clean_contact(data, AttributeSchema.load(session, Entity.CONTACT), partial=True)
    if "email" in values and values["email"] != contact.email:
        clash = session.scalar(select(Contact.id).where(Contact.email == values["email"]))
        if clash is not None:
            raise Conflict(
                f"a contact with email {values['email']} already exists",
                code="contact_exists",
                field="email",
            )
    if values.get("external_id") and values["external_id"] != contact.external_id:
        clash = session.scalar(
            select(Contact.id).where(Contact.external_id == values["external_id"])
        )
        if clash is not None:
            raise Conflict(
                f"external_id {values['external_id']!r} is taken",
                code="external_id_taken",
                field="external_id",
            )
    if (problem := _status_error(contact, values)) is not None:
        raise ValidationFailed.from_errors([problem])
    changes = _diff(contact, values)
    if not changes:
        return contact
    for key in changes:
        setattr(
            contact,
            key,
            {**contact.attributes, **values[key]} if key == "attributes" else values[key],
        )
    if "email_domain" in changes:
        company = companies_for_domains(session, [contact.email_domain]).get(contact.email_domain)
        contact.company_id = company.id if company else None
    contact.updated_at = utcnow()
    session.add(
        ContactChange(contact_id=contact.id, kind="updated", source=source, changes=changes)
    )
    session.flush()
    segment_changes.note(session, [contact.id], segment_changes.contact_keys(changes))
    return contact


def set_status(
    session: Session, contact_id: int, status: str, *, source: str, reason: str = ""
) -> Contact:
    """For the system's own transitions (unsubscribe link, bounce, complaint, confirmation)."""
    contact = get_contact(session, contact_id)
    if contact.status != status:
        session.add(
            ContactChange(
                contact_id=contact.id,
                kind="status",
                source=source,
                changes={"status": [contact.status, status], "reason": reason},
            )
        )
        contact.status = status
        contact.updated_at = utcnow()
        session.flush()
        segment_changes.note(session, [contact.id], segment_changes.contact_keys({"status": []}))
    return contact


def unset_attributes(
    session: Session, contact_id: int, names: Sequence[str], *, source: str
) -> Contact:
    contact = get_contact(session, contact_id)
    present = {n: contact.attributes[n] for n in names if n in contact.attributes}
    if present:
        contact.attributes = {k: v for k, v in contact.attributes.items() if k not in present}
        contact.updated_at = utcnow()
        session.add(
            ContactChange(
                contact_id=contact.id,
                kind="updated",
                source=source,
                changes={"attributes": [present, {}]},
            )
        )
        session.flush()
        keys = segment_changes.contact_keys({"attributes": [present, {}]})
        segment_changes.note(session, [contact.id], keys)
    return contact


def get_contact(session: Session, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} does not exist in this workspace")
    return contact


def find_contact_by_email(session: Session, email: str) -> Contact | None:
    from postwise.contacts.emails import normalize_email

    return session.scalar(select(Contact).where(Contact.email == normalize_email(email).address))


def get_contact_by_email(session: Session, email: str) -> Contact:
    contact = find_contact_by_email(session, email)
    if contact is None:
        raise NotFound(f"no contact with email {email} in this workspace", field="email")
    return contact


def delete_contact(session: Session, contact_id: int) -> None:
    """Removes the contact and what hangs off it; for erasure with a tombstone see privacy."""
    contact = get_contact(session, contact_id)
    segment_changes.contacts_leaving(session, [contact.id])
    session.execute(delete(ListMembership).where(ListMembership.contact_id == contact.id))
    session.delete(contact)
    session.flush()


def search_contacts(
    session: Session,
    *,
    q: str | None = None,
    status: str | None = None,
    company_id: int | None = None,
    list_id: int | None = None,
    email_domain: str | None = None,
    updated_since: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Contact]:
    stmt = select(Contact)
    if q:
        stmt = stmt.where(
            or_(
                Contact.email.icontains(q, autoescape=True),
                Contact.first_name.icontains(q, autoescape=True),
                Contact.last_name.icontains(q, autoescape=True),
            )
        )
    if status:
        stmt = stmt.where(Contact.status == status)
    if company_id is not None:
        stmt = stmt.where(Contact.company_id == company_id)
    if email_domain:
        stmt = stmt.where(Contact.email_domain == email_domain.lower())
    if updated_since is not None:
        stmt = stmt.where(Contact.updated_at >= updated_since)
    if list_id is not None:
        stmt = stmt.where(
            Contact.id.in_(
                select(ListMembership.contact_id).where(ListMembership.list_id == list_id)
            )
        )
    return keyset_page(session, stmt, Contact.id, cursor, limit)
