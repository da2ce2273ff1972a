"""The suppression list: addresses, whole domains and erased people, never to be mailed.

Three kinds of entry share the ``suppressions`` table:

- ``address``: one address, stored in ``suppression_form`` (normalized, lower-case);
- ``domain``: a domain and every subdomain of it (``corp.example`` covers
  ``eu.corp.example``);
- ``address_hash``: the keyed hash an erasure leaves behind (``hashing.py``); it matches
  the address it came from and reveals nothing else.

``suppressed_among`` is the check every sending path must make before a message goes
out; ``is_suppressed`` is its one-address form for the API and CLI. Suppression is
separate from a contact's ``status``: it also covers people who are not contacts (any
more) and is never undone by an import or an update, only by ``remove_suppression`` (for
plain entries) or ``readmit`` (the audited way back after an erasure).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postwise.contacts.actions import get_contact
from postwise.contacts.emails import normalize_domain
from postwise.contacts.lists import CONSENT_SOURCES, ConsentInput
from postwise.core.clock import utcnow
from postwise.core.errors import Conflict, NotFound, ValidationFailed
from postwise.core.pagination import Page, keyset_page
from postwise.privacy.hashing import AddressHasher, suppression_form
from postwise.storage.tables import Consent, ContactChange, Suppression, SuppressionEvent

Kind = Literal["address", "domain", "address_hash"]
# Reasons a person or a caller may give; ``erased`` is written by erasure alone.
Reason = Literal["unsubscribed", "bounced", "complained", "spamtrap", "manual"]
AnyReason = Literal[Reason, "erased"]
ADDRESS, DOMAIN, ADDRESS_HASH = get_args(Kind)
ERASED = "erased"
KINDS: tuple[str, ...] = get_args(Kind)
REASONS: tuple[str, ...] = get_args(Reason)
ALL_REASONS: tuple[str, ...] = get_args(AnyReason)
# What ``suppressed_among`` answers for an address that cannot be mailed at all.
INVALID_ADDRESS = "invalid_address"
# Addresses per query: each brings up to a few domains and one hash as bound parameters.
BATCH = 500


@dataclass(frozen=True)
class SuppressionHit:
    """Why an address must not be mailed: the entry that matched it."""

    suppression_id: int
    kind: str
    value: str
    reason: str
    created_at: datetime

    @classmethod
    def of(cls, row: Suppression) -> SuppressionHit:
        return cls(row.id, row.kind, row.value, row.reason, row.created_at)


@dataclass(frozen=True)
class _Probe:
    address: str
    hash: str
    domains: tuple[str, ...]  # most specific first


def domain_chain(domain: str) -> tuple[str, ...]:
    """``eu.corp.example`` → (``eu.corp.example``, ``corp.example``); bare TLDs never match."""
    labels = domain.split(".")
    return tuple(".".join(labels[i:]) for i in range(len(labels) - 1))


def _probe(email: str, hasher: AddressHasher) -> _Probe:
    address = suppression_form(email)
    return _Probe(address, hasher.hash_normalized(address), domain_chain(address.rsplit("@", 1)[1]))


def _matching(session: Session, probes: Sequence[_Probe]) -> dict[tuple[str, str], Suppression]:
    rows = session.scalars(
        select(Suppression).where(
            or_(
                and_(
                    Suppression.kind == ADDRESS, Suppression.value.in_({p.address for p in probes})
                ),
                and_(
                    Suppression.kind == ADDRESS_HASH,
                    Suppression.value.in_({p.hash for p in probes}),
                ),
                and_(
                    Suppression.kind == DOMAIN,
                    Suppression.value.in_({d for p in probes for d in p.domains}),
                ),
            )
        )
    )
    return {(row.kind, row.value): row for row in rows}


def _first_hit(probe: _Probe, found: dict[tuple[str, str], Suppression]) -> SuppressionHit | None:
    """The most specific entry wins: the address, then the erasure hash, then the domain."""
    keys = [(ADDRESS, probe.address), (ADDRESS_HASH, probe.hash)]
    keys += [(DOMAIN, domain) for domain in probe.domains]
    for key in keys:
        row = found.get(key)
        if row is not None:
            return SuppressionHit.of(row)
    return None


def suppressed_among(
    session: Session, emails: Iterable[str], *, hasher: AddressHasher
) -> dict[str, str]:
    """The addresses among ``emails`` that must not be mailed, each with its reason.

    Every code path that sends mail calls this for its recipients just before handing
    messages to a transport, and drops every address it returns. Addresses come back as
    the caller gave them; one that is not a valid address at all is returned with reason
    ``invalid_address``. One query per 500 addresses, whatever the mix of entry kinds.
    """
    out: dict[str, str] = {}
    pending: list[tuple[str, _Probe]] = []
    for email in dict.fromkeys(emails):
        try:
            pending.append((email, _probe(email, hasher)))
        except ValidationFailed:
            out[email] = INVALID_ADDRESS
    for start in range(0, len(pending), BATCH):
        chunk = pending[start : start + BATCH]
        found = _matching(session, [probe for _, probe in chunk])
        if not found:
            continue
        for email, probe in chunk:
            hit = _first_hit(probe, found)
            if hit is not None:
                out[email] = hit.reason
    return out


def is_suppressed(session: Session, email: str, *, hasher: AddressHasher) -> SuppressionHit | None:
    """The entry that suppresses ``email``, or None; ValidationFailed if it is no address."""
    probe = _probe(email, hasher)
    return _first_hit(probe, _matching(session, [probe]))


def entries_for(session: Session, email: str, *, hasher: AddressHasher) -> list[SuppressionHit]:
    """Every entry that applies to ``email`` (not only the winning one), for exports."""
    probe = _probe(email, hasher)
    found = _matching(session, [probe])
    return [SuppressionHit.of(row) for row in sorted(found.values(), key=lambda r: r.id)]


def _check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise ValidationFailed(
            f"reason must be one of {', '.join(REASONS)}", code="invalid_reason", field="reason"
        )
    return reason


def _insert(session: Session, kind: str, value: str, reason: str, note: str) -> Suppression:
    """Insert, or return the entry a concurrent writer stored first (the unique key decides)."""
    existing = session.scalar(
        select(Suppression).where(Suppression.kind == kind, Suppression.value == value)
    )
    if existing is not None:
        return existing
    row = Suppression(kind=kind, value=value, reason=reason, note=note, created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raced = session.scalar(
            select(Suppression).where(Suppression.kind == kind, Suppression.value == value)
        )
        if raced is None:
            raise
        return raced
    return row


def record_erasure_hash(session: Session, address_hash: str) -> Suppression:
    """The entry that keeps an erased address from ever being mailed; only erasure calls it."""
    return _insert(session, ADDRESS_HASH, address_hash, ERASED, "")


def add_suppression(
    session: Session,
    *,
    hasher: AddressHasher,
    email: str | None = None,
    domain: str | None = None,
    reason: str = "manual",
    note: str = "",
) -> Suppression:
    """Suppress one address or a whole domain; adding an existing entry returns it unchanged.

    An address that was erased is already suppressed by its hash: the existing hash entry
    is returned and the address is not stored again in clear.
    """
    if (email is None) == (domain is None):
        raise ValidationFailed(
            "give either an email address or a domain", code="email_or_domain", field="email"
        )
    _check_reason(reason)
    if len(note) > 500:
        raise ValidationFailed("note must be at most 500 characters", field="note")
    if domain is not None:
        return _insert(session, DOMAIN, normalize_domain(domain), reason, note)
    probe = _probe(email or "", hasher)
    erased = session.scalar(
        select(Suppression).where(Suppression.kind == ADDRESS_HASH, Suppression.value == probe.hash)
    )
    if erased is not None:
        return erased
    return _insert(session, ADDRESS, probe.address, reason, note)


def get_suppression(session: Session, suppression_id: int) -> Suppression:
    row = session.get(Suppression, suppression_id)
    if row is None:
        raise NotFound(f"suppression {suppression_id} does not exist in this workspace")
    return row


def audit(
    session: Session,
    row: Suppression,
    action: str,
    *,
    actor: str,
    note: str = "",
    evidence: dict[str, Any] | None = None,
) -> SuppressionEvent:
    """Record that ``row`` was added or lifted, by whom and why (``suppression_events``).

    The entry itself is deleted when lifted; this row is what remains to show it existed.
    Erasure hashes are never audited here: the hash is the only trace erasure may keep.
    """
    event = SuppressionEvent(
        suppression_id=row.id,
        action=action,
        entry_kind=row.kind,
        value=row.value,
        reason=row.reason,
        actor=actor[:200],
        note=note[:500],
        evidence=evidence or {},
        at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def remove_suppression(
    session: Session, suppression_id: int, *, actor: str = "unknown", note: str = ""
) -> None:
    """Lift an address or domain entry, audited; an erasure's hash only goes through
    ``readmit``."""
    row = get_suppression(session, suppression_id)
    if row.kind == ADDRESS_HASH:
        raise Conflict(
            "this entry keeps an erased person from being mailed; it is lifted only when "
            "they consent again (POST /api/contacts/{id}/readmit)",
            code="erasure_suppression",
        )
    audit(session, row, "lifted", actor=actor, note=note)
    session.delete(row)
    session.flush()


def list_suppressions(
    session: Session,
    *,
    kind: str | None = None,
    reason: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Suppression]:
    """Oldest first; ``q`` matches part of an address or domain, any case."""
    if kind is not None and kind not in KINDS:
        raise ValidationFailed(
            f"kind must be one of {', '.join(KINDS)}", code="invalid_kind", field="kind"
        )
    if reason is not None and reason not in ALL_REASONS:
        raise ValidationFailed(
            f"reason must be one of {', '.join(ALL_REASONS)}", code="invalid_reason", field="reason"
        )
    stmt = select(Suppression)
    if kind is not None:
        stmt = stmt.where(Suppression.kind == kind)
    if reason is not None:
        stmt = stmt.where(Suppression.reason == reason)
    if q:
        stmt = stmt.where(Suppression.value.contains(q.strip().lower(), autoescape=True))
    return keyset_page(session, stmt, Suppression.id, cursor, limit)


def readmit(
    session: Session,
    contact_id: int,
    consent: ConsentInput,
    *,
    hasher: AddressHasher,
    requested_by: str,
) -> list[SuppressionHit]:
    """Lift the address and erasure-hash entries of a contact who has consented again.

    This is the only way an erased person becomes mailable: they signed up again (so a
    contact with the address exists) and gave fresh consent, which is recorded as a
    consent row; the lifting itself lands on the contact's timeline with who did it.
    Domain entries are not about the person and stay. Returns what was lifted.
    """
    if consent.source not in CONSENT_SOURCES or consent.source == "import":
        allowed = ", ".join(s for s in CONSENT_SOURCES if s != "import")
        raise ValidationFailed(
            f"fresh consent must come from one of {allowed}; an import cannot prove it",
            code="invalid_source",
            field="source",
        )
    if not (consent.text or "").strip():
        raise ValidationFailed(
            "record the wording the person agreed to", code="consent_text_required", field="text"
        )
    if not requested_by.strip():
        raise ValidationFailed("say who lifts the suppression", field="requested_by")
    contact = get_contact(session, contact_id)
    probe = _probe(contact.email, hasher)
    rows = list(
        session.scalars(
            select(Suppression).where(
                or_(
                    and_(Suppression.kind == ADDRESS, Suppression.value == probe.address),
                    and_(Suppression.kind == ADDRESS_HASH, Suppression.value == probe.hash),
                )
            )
        )
    )
    if not rows:
        return []
    lifted = [SuppressionHit.of(row) for row in rows]
    now = utcnow()
    record = Consent(
        contact_id=contact.id,
        list_id=None,
        source=consent.source,
        ip=consent.ip,
        consent_text=consent.text,
        recorded_at=now,
        confirmed_at=now,
    )
    session.add(record)
    session.flush()
    session.execute(
        delete(Suppression).where(Suppression.id.in_([h.suppression_id for h in lifted]))
    )
    details: dict[str, Any] = {
        "lifted": [{"kind": h.kind, "reason": h.reason} for h in lifted],
        "consent_id": record.id,
        "requested_by": requested_by[:200],
    }
    session.add(
        ContactChange(
            contact_id=contact.id, kind="readmitted", source=consent.source, changes=details, at=now
        )
    )
    session.flush()
    return lifted
