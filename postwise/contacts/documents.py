"""Read models: a contact as one JSON-ready document, and its timeline.

The same document feeds ``postwise contact show``, the API and, extended with all rows,
the GDPR export, so what a user sees and what they can export never drift apart.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.storage.tables import (
    Company,
    Consent,
    Contact,
    ContactChange,
    ContactChangeBatch,
    Event,
    ListMembership,
    MailingList,
)
from postwise.tracking.actors import actor

CONTACT_COLUMNS = (
    "id", "email", "external_id", "first_name", "last_name", "job_title", "seniority",
    "department", "country", "timezone", "language", "phone", "status", "company_id",
    "attributes", "created_at", "updated_at",
)  # fmt: skip
COMPANY_COLUMNS = (
    "id", "domain", "name", "industry", "employee_count", "size_band", "revenue_band",
    "country", "attributes", "created_at", "updated_at",
)  # fmt: skip


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def row_dict(obj: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    return {name: _iso(getattr(obj, name)) for name in columns}


def contact_dict(contact: Contact) -> dict[str, Any]:
    return row_dict(contact, CONTACT_COLUMNS)


def company_dict(company: Company) -> dict[str, Any]:
    return row_dict(company, COMPANY_COLUMNS)


def event_dict(event: Event) -> dict[str, Any]:
    label, reason = actor(event.properties)
    return {
        "id": event.id,
        "type": event.type,
        "name": event.name,
        "actor": label,
        "actor_reason": reason,
        "properties": event.properties,
        "context": event.context,
        "anonymous_id": event.anonymous_id,
        "message_id": event.message_id,
        "occurred_at": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
    }


def memberships(session: Session, contact_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(ListMembership, MailingList.name, Consent)
        .join(MailingList, MailingList.id == ListMembership.list_id)
        .outerjoin(Consent, Consent.id == ListMembership.consent_id)
        .where(ListMembership.contact_id == contact_id)
        .order_by(ListMembership.list_id)
    )
    return [
        {
            "list_id": m.list_id,
            "list": name,
            "status": m.status,
            "subscribed_at": _iso(m.created_at),
            "updated_at": _iso(m.updated_at),
            "consent": None
            if consent is None
            else {
                "source": consent.source,
                "ip": consent.ip,
                "text": consent.consent_text,
                "recorded_at": _iso(consent.recorded_at),
                "confirmed_at": _iso(consent.confirmed_at),
            },
        }
        for m, name, consent in rows
    ]


def latest_events(session: Session, contact_id: int, limit: int = 10) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Event)
        .where(Event.contact_id == contact_id)
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(limit)
    )
    return [event_dict(e) for e in rows]


def timeline(session: Session, contact_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """Changes and events merged, newest first."""
    changes = session.scalars(
        select(ContactChange)
        .where(ContactChange.contact_id == contact_id)
        .order_by(ContactChange.at.desc(), ContactChange.id.desc())
        .limit(limit)
    )
    entries: list[dict[str, Any]] = [
        {"at": c.at, "kind": "change", "change": c.kind, "source": c.source, "details": c.changes}
        for c in changes
    ]
    if not any(entry["change"] == "created" for entry in entries):
        entries += batch_changes(session, contact_id)
    entries += [
        {
            "at": e.occurred_at,
            "kind": "event",
            "type": e.type,
            "name": e.name,
            "actor": label,
            "actor_reason": reason,
            "properties": e.properties,
        }
        for e in session.scalars(
            select(Event)
            .where(Event.contact_id == contact_id)
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(limit)
        )
        for label, reason in [actor(e.properties)]
    ]
    entries.sort(key=lambda entry: entry["at"], reverse=True)
    return [{**entry, "at": _iso(entry["at"])} for entry in entries[:limit]]


def batch_changes(session: Session, contact_id: int) -> list[dict[str, Any]]:
    """The change a batch recorded once for all its contacts: a CSV import's "created"
    (``ContactChangeBatch``), found by the contact's ``created_at``, the batch's instant."""
    found = session.execute(
        select(ContactChangeBatch.at, ContactChangeBatch.kind, ContactChangeBatch.source)
        .join(
            Contact,
            (Contact.workspace_id == ContactChangeBatch.workspace_id)
            & (Contact.created_at == ContactChangeBatch.at),
        )
        .where(Contact.id == contact_id)
        .limit(1)
    ).first()
    if found is None:
        return []
    at, kind, source = found
    return [{"at": at, "kind": "change", "change": kind, "source": source, "details": {}}]


def contact_document(session: Session, contact: Contact, *, events: int = 10) -> dict[str, Any]:
    company = session.get(Company, contact.company_id) if contact.company_id else None
    return {
        **contact_dict(contact),
        "company": company_dict(company) if company else None,
        "lists": memberships(session, contact.id),
        "latest_events": latest_events(session, contact.id, events),
    }
