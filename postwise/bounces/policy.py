"""What a bounce or complaint does to the address: the suppression policy.

- **Hard bounce**: the address is suppressed at once (reason ``bounced``) and the contact
  marked ``bounced``, unless ``filterblock.assess`` suspects the recipient's gateway of
  filtering us behind a fake "user unknown": then the person is kept.
- **Soft bounce** (mailbox full, greylisting, a full queue...): counted; the address is
  suppressed once it has ``soft_limit`` soft bounces within ``soft_days``. A DSN with
  ``Action: delayed`` is a warning while the message is still retried: recorded, ignored.
- **Complaint**: suppressed (reason ``complained``), the contact marked ``complained``,
  unsubscribed from every list, and its pending mail stopped.

Every suppression this module adds is audited in ``suppression_events`` with the bounce
record as evidence and the contact's former status, so ``filterblock`` can lift it again
exactly. Thresholds come from settings (``POSTWISE_BOUNCE_*``); see docs/bounces.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postwise.contacts import actions, lists
from postwise.core.errors import NotFound
from postwise.core.settings import Settings
from postwise.delivery import outbox
from postwise.privacy import suppression
from postwise.privacy.hashing import AddressHasher, suppression_form
from postwise.storage.tables import BounceRecord, ListMembership, Suppression

ACTOR = "bounce-policy"
SUPPRESSED = "suppressed"
SOFT_COUNTED = "soft_counted"
KEPT_FILTER_BLOCK = "kept_filter_block"
IGNORED = "ignored"
VERDICTS = (SUPPRESSED, SOFT_COUNTED, KEPT_FILTER_BLOCK, IGNORED)


@dataclass(frozen=True)
class Thresholds:
    soft_limit: int = 3
    soft_days: int = 7
    burst_min: int = 10
    burst_ratio: float = 0.2
    burst_minutes: int = 10
    engagement_days: int = 30
    block_per_minute: float = 6.0
    block_slow_hours: float = 24.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            soft_limit=settings.bounce_soft_limit,
            soft_days=settings.bounce_soft_days,
            burst_min=settings.bounce_burst_min,
            burst_ratio=settings.bounce_burst_ratio,
            burst_minutes=settings.bounce_burst_minutes,
            engagement_days=settings.bounce_engagement_days,
            block_per_minute=settings.bounce_block_per_minute,
            block_slow_hours=settings.bounce_block_slow_hours,
        )


def suppress(
    session: Session,
    record: BounceRecord,
    *,
    hasher: AddressHasher,
    reason: str,
    evidence: dict[str, Any],
) -> None:
    """Suppress the record's address (audited) and mark its contact; idempotent."""
    address = suppression_form(record.email)
    existing = session.scalar(
        select(Suppression).where(Suppression.kind == "address", Suppression.value == address)
    )
    previous_status = None
    if record.contact_id is not None:
        try:
            previous_status = actions.get_contact(session, record.contact_id).status
        except NotFound:
            record.contact_id = None
    if existing is None:
        row = suppression.add_suppression(
            session,
            hasher=hasher,
            email=record.email,
            reason=reason,
            note=f"{record.kind} {record.status or ''} {record.reason}".replace("  ", " ")[:500],
        )
        if row.kind == "address":
            suppression.audit(
                session,
                row,
                "added",
                actor=ACTOR,
                note=(record.diagnostic or "")[:500],
                evidence={
                    "bounce_record_id": record.id,
                    "contact_id": record.contact_id,
                    "previous_status": previous_status,
                    **evidence,
                },
            )
            record.evidence = {**record.evidence, "suppression_id": row.id, **evidence}
    else:
        record.evidence = {**record.evidence, "already_suppressed": existing.id, **evidence}
    status = "complained" if reason == "complained" else "bounced"
    if record.contact_id is not None and previous_status not in (status, "complained"):
        actions.set_status(
            session, record.contact_id, status, source="system", reason=f"{record.kind} {reason}"
        )
        record.evidence = {**record.evidence, "previous_status": previous_status}
    record.verdict = SUPPRESSED


def _soft_count(session: Session, record: BounceRecord, now: datetime, days: int) -> int:
    """Soft bounces of the address within ``days``, this one included."""
    return 1 + int(
        session.scalar(
            select(func.count()).where(
                BounceRecord.id != record.id,
                BounceRecord.email == record.email,
                BounceRecord.kind == "bounce",
                BounceRecord.hard.is_(False),
                BounceRecord.verdict != IGNORED,
                BounceRecord.occurred_at >= now - timedelta(days=days),
            )
        )
        or 0
    )


def complaint(session: Session, record: BounceRecord, *, hasher: AddressHasher) -> None:
    """Suppress, and leave every list: a complaint is the strongest "stop" there is."""
    suppress(session, record, hasher=hasher, reason="complained", evidence={})
    if record.contact_id is None:
        return
    memberships = session.scalars(
        select(ListMembership).where(
            ListMembership.contact_id == record.contact_id,
            ListMembership.status != "unsubscribed",
        )
    ).all()
    for membership in memberships:
        lists.unsubscribe(session, membership.list_id, record.contact_id, source="system")
    outbox.suppress_pending_for_contact(session, record.contact_id, marketing_only=False)
    record.evidence = {**record.evidence, "lists_left": [m.list_id for m in memberships]}


def apply(
    session: Session,
    record: BounceRecord,
    *,
    hasher: AddressHasher,
    thresholds: Thresholds,
    now: datetime,
    action: str | None = None,
) -> str:
    """Decide and act on one new record (already flushed, so it has an id); returns the
    verdict, also set on the record."""
    from postwise.bounces import filterblock  # imports this module's thresholds

    if record.kind == "complaint":
        complaint(session, record, hasher=hasher)
    elif action == "delayed":
        record.verdict = IGNORED
        record.evidence = {**record.evidence, "why": "delayed: still being retried"}
    elif record.hard:
        suspicion = filterblock.assess(session, record, thresholds, now)
        if suspicion is not None:
            filterblock.keep(session, record, suspicion, thresholds, now, hasher=hasher)
        else:
            suppress(session, record, hasher=hasher, reason="bounced", evidence={"hard": True})
    else:
        count = _soft_count(session, record, now, thresholds.soft_days)
        if count >= thresholds.soft_limit:
            evidence = {"soft_bounces": count, "within_days": thresholds.soft_days}
            suppress(session, record, hasher=hasher, reason="bounced", evidence=evidence)
        else:
            record.verdict = SOFT_COUNTED
            record.evidence = {**record.evidence, "soft_bounces": count}
    session.flush()
    return record.verdict
