"""GDPR erasure: delete a person's data everywhere and keep only a keyed hash of them.

In one transaction, erasure

1. deletes every row the person owns (``footprint.py``): the contact, its list
   memberships, every consent record, every change on its timeline, every event with
   its ``contact_id`` and the anonymous events under the ``anonymous_id`` values those
   events carry (what they did before identifying), and any table added later with a
   ``contact_id``;
2. deletes rows that exist only for them (captured mail, jobs, unattributed events
   naming their address) and replaces their address by ``[erased]`` in anyone else's
   rows;
3. removes the plain ``address`` suppressions of their addresses (current and former)
   and adds an ``address_hash`` entry (reason ``erased``) for each, so they are never
   mailed again while the address cannot be read back;
4. writes an ``erasures`` audit row: when, at whose request, how many rows per table.

A person is identified by address: contacts whose address differs only in case are the
same mailbox and are erased together. They may sign up again later (a new contact with
the same address can be created), but stay suppressed until ``suppression.readmit``
records their fresh consent. Backups are outside the reach of this function.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from postwise.contacts.actions import get_contact
from postwise.core.clock import utcnow
from postwise.core.errors import ValidationFailed
from postwise.privacy.footprint import (
    CONTACTS,
    find_person,
    linked_tables,
    mentions,
    model_for,
    owned_criteria,
    redact,
)
from postwise.privacy.hashing import AddressHasher, suppression_form
from postwise.privacy.suppression import ADDRESS, record_erasure_hash
from postwise.segments import changes as segment_changes
from postwise.storage.tables import Contact, Erasure, Suppression


@dataclass(frozen=True)
class ErasureReceipt:
    """What was done, for the requester and the audit; no personal data by design."""

    erasure_id: int
    contact_ids: list[int]
    erased_at: datetime
    requested_by: str
    deleted: dict[str, int]
    redacted: dict[str, int]
    suppression_ids: list[int]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["erased_at"] = self.erased_at.isoformat()
        return out


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _same_mailbox(session: Session, address: str) -> list[Contact]:
    """Contacts whose address equals ``address`` ignoring case (contacts keep the case)."""
    domain = address.rsplit("@", 1)[1]
    candidates = session.scalars(select(Contact).where(Contact.email_domain == domain))
    return [c for c in candidates if suppression_form(c.email) == address]


def erase_address(
    session: Session, email: str, *, hasher: AddressHasher, requested_by: str
) -> ErasureReceipt:
    """Erase whoever has this address; with no contact, still purge and suppress it.

    People ask by address, and may not be (or no longer be) a contact; the address may
    still sit in captured mail, jobs, events or a plain suppression entry.
    """
    requested_by = requested_by.strip()
    if not requested_by or len(requested_by) > 200:
        raise ValidationFailed(
            "requested_by must say who asked (1 to 200 characters, no personal data "
            "of the person erased)",
            field="requested_by",
        )
    address = suppression_form(email)
    contacts = _same_mailbox(session, address)
    person = find_person(session, contacts, address)
    deleted: Counter[str] = Counter()
    redacted: Counter[str] = Counter()

    if person.contact_ids:
        segment_changes.contacts_leaving(session, person.contact_ids)  # member counts
        for table in linked_tables():
            criteria = owned_criteria(table, person)
            result = session.execute(delete(model_for(table)).where(criteria))
            deleted[table.name] += _rowcount(result)
        result = session.execute(delete(Contact).where(Contact.id.in_(person.contact_ids)))
        deleted[CONTACTS] += _rowcount(result)
    session.flush()

    pattern = person.pattern()
    for mention in mentions(session, person):
        if mention.belongs_to_person:
            session.delete(mention.row)
            deleted[mention.table.name] += 1
        else:
            redact(mention, pattern)
            redacted[mention.table.name] += 1
    session.flush()

    result = session.execute(
        delete(Suppression).where(
            Suppression.kind == ADDRESS, Suppression.value.in_(person.addresses)
        )
    )
    deleted["suppressions"] += _rowcount(result)
    hashes = [record_erasure_hash(session, hasher.hash_normalized(a)) for a in person.addresses]
    session.flush()

    audit = Erasure(
        former_contact_ids=list(person.contact_ids),
        requested_by=requested_by,
        erased_at=utcnow(),
        deleted={k: v for k, v in sorted(deleted.items()) if v},
        redacted={k: v for k, v in sorted(redacted.items()) if v},
    )
    session.add(audit)
    session.flush()
    return ErasureReceipt(
        erasure_id=audit.id,
        contact_ids=list(person.contact_ids),
        erased_at=audit.erased_at,
        requested_by=requested_by,
        deleted=dict(audit.deleted),
        redacted=dict(audit.redacted),
        suppression_ids=sorted(h.id for h in hashes),
    )


def erase_contact(
    session: Session, contact_id: int, *, hasher: AddressHasher, requested_by: str
) -> ErasureReceipt:
    """Erase the person behind a contact; NotFound if it is not in this workspace."""
    contact = get_contact(session, contact_id)
    return erase_address(session, contact.email, hasher=hasher, requested_by=requested_by)


def list_erasures(session: Session, *, limit: int = 50) -> list[Erasure]:
    """The newest audit records, for operators answering 'was this request carried out?'."""
    return list(session.scalars(select(Erasure).order_by(Erasure.id.desc()).limit(limit)))
