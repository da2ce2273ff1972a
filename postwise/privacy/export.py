"""GDPR access requests: everything held about one contact, as one JSON document.

The rows come from ``footprint.py``, the same place erasure looks, so an export shows
exactly what an erasure would remove. ``records`` holds the raw rows of every table
that belongs to the person, keyed by table name (a table added later appears without a
change here); ``lists`` repeats the memberships in the readable form the API uses.
Rows of other people that merely mention the person's address are not exported: they
would disclose someone else's data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.contacts.actions import get_contact
from postwise.contacts.documents import memberships
from postwise.core.clock import utcnow
from postwise.privacy.footprint import (
    BELONG_TO_MENTIONED,
    find_person,
    linked_tables,
    mentions,
    model_for,
    owned_criteria,
    row_document,
)
from postwise.privacy.hashing import AddressHasher
from postwise.privacy.suppression import entries_for
from postwise.storage.tables import Company, Contact
from postwise.storage.tenancy import workspace_of

EXPORT_FORMAT = "postwise.contact-export/1"


def export_contact(session: Session, contact_id: int, *, hasher: AddressHasher) -> dict[str, Any]:
    """One JSON-ready document; NotFound if the contact is not in this workspace."""
    contact = get_contact(session, contact_id)
    person = find_person(session, [contact], contact.email)
    records: dict[str, list[dict[str, Any]]] = {}
    for table in sorted(linked_tables(), key=lambda t: t.name):
        model = model_for(table)
        criteria = owned_criteria(table, person)
        rows = session.scalars(select(model).where(criteria).order_by(*table.primary_key.columns))
        records[table.name] = [row_document(table, row) for row in rows]
    for name in BELONG_TO_MENTIONED:
        records.setdefault(name, [])
    for mention in mentions(session, person):
        if mention.belongs_to_person:
            records.setdefault(mention.table.name, []).append(
                row_document(mention.table, mention.row)
            )
    company = session.get(Company, contact.company_id) if contact.company_id else None
    suppressions = {
        hit.suppression_id: {
            "id": hit.suppression_id,
            "kind": hit.kind,
            "value": hit.value,
            "reason": hit.reason,
            "created_at": hit.created_at.isoformat(),
        }
        for address in person.addresses
        for hit in entries_for(session, address, hasher=hasher)
    }
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "workspace_id": workspace_of(session),
        "contact": row_document(Contact.__table__, contact),
        "addresses": list(person.addresses),
        "company": row_document(Company.__table__, company) if company else None,
        "lists": memberships(session, contact.id),
        "records": dict(sorted(records.items())),
        "suppressions": [suppressions[k] for k in sorted(suppressions)],
    }
