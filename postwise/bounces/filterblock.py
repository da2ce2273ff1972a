"""Filter blocks posing as unknown users: keep the people, mark the domain, slow down, alert.

Corporate gateways (Mimecast, Proofpoint, Exchange Online Protection...) often reject
mail they dislike with a fake ``550 5.1.1 user unknown``. Trusting that would suppress
real, active people. A hard bounce is a *suspected filter block* when any of these holds:

- **burst**: the recipient's domain is corporate (not free-mail) and has returned at least
  ``burst_min`` hard bounces within ``burst_minutes`` in this send (campaign), and they
  are at least ``burst_ratio`` of that campaign's recipients at the domain: whole
  departments do not vanish in ten minutes;
- **engagement**: the recipient opened or clicked a message as a human (the
  ``machine`` label of ``tracking/machines.py`` is false) or used the website within
  ``engagement_days``: people who read mail last week rarely stopped existing;
- **wording**: the diagnostic speaks of spam, policy, reputation or blocking
  (``RecipientOutcome.filter_wording``);
- **domain blocked**: the domain is already marked as blocking.

Then the person stays subscribed (verdict ``kept_filter_block``). When the signal speaks
about the gateway (burst, wording, an active block) and the domain is corporate, the
domain is also marked in ``domain_blocks`` with the evidence, its pace is cut to
``block_per_minute`` for ``block_slow_hours`` (the deliverer reads ``paced_domains``),
suppressions this same burst already made at the domain are lifted (audited), and one
alert says what was seen and what to do. Engagement alone keeps the person but marks no
domain: in B2B one engaged person's bounce is as likely someone who left the company.
A person clears the block once it is solved.
See docs/bounces.md (filter blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postwise.bounces.policy import ACTOR, KEPT_FILTER_BLOCK, SUPPRESSED, Thresholds
from postwise.contacts import actions
from postwise.contacts.freemail import is_free_mail
from postwise.core import clock
from postwise.core.errors import NotFound
from postwise.privacy import suppression
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import (
    BounceAlert,
    BounceRecord,
    DomainBlock,
    Event,
    OutboxMessage,
    Suppression,
)
from postwise.storage.tenancy import workspace_of
from postwise.tracking.actors import MACHINE_KEY

ACTIVE, CLEARED = "active", "cleared"
ENGAGEMENT_EVENTS = ("Email Opened", "Email Clicked")
WEB_EVENT_TYPES = ("page", "screen", "track")
# Signals that speak about the domain's gateway, not only about one person.
GATEWAY_SIGNALS = frozenset({"burst", "filter_wording", "domain_blocked"})
_ENGAGEMENT_SCAN = 50  # recent events read per recipient when looking for a human one


@dataclass(frozen=True)
class Suspicion:
    signals: tuple[str, ...]  # burst | engagement | filter_wording | domain_blocked
    evidence: dict[str, Any]


def active_block(session: Session, domain: str) -> DomainBlock | None:
    return session.scalar(
        select(DomainBlock).where(DomainBlock.domain == domain, DomainBlock.status == ACTIVE)
    )


def recent_engagement(session: Session, contact_id: int, since: datetime) -> dict[str, Any] | None:
    """The latest human open/click or website event of the contact since ``since``."""
    rows = session.execute(
        select(Event.name, Event.type, Event.properties, Event.occurred_at)
        .where(
            Event.contact_id == contact_id,
            Event.occurred_at >= since,
            or_(Event.name.in_(ENGAGEMENT_EVENTS), Event.type.in_(WEB_EVENT_TYPES)),
        )
        .order_by(Event.occurred_at.desc())
        .limit(_ENGAGEMENT_SCAN)
    )
    for name, type_, properties, occurred_at in rows:
        if name in ENGAGEMENT_EVENTS and (properties or {}).get(MACHINE_KEY) is not False:
            continue  # a scanner or a proxy prefetch proves nothing about the person
        return {"event": name, "type": type_, "at": clock.as_utc(occurred_at).isoformat()}
    return None


def _recipients_at(session: Session, domain: str, campaign_key: str | None, now: datetime) -> int:
    """How many people at ``domain`` this send went to (the burst ratio's denominator)."""
    stmt = select(func.count()).where(func.lower(OutboxMessage.email).like(f"%@{domain}"))
    if campaign_key is not None:
        stmt = stmt.where(OutboxMessage.campaign_key == campaign_key)
    else:
        stmt = stmt.where(OutboxMessage.created_at >= now - timedelta(days=1))
    return int(session.scalar(stmt) or 0)


def burst(
    session: Session, record: BounceRecord, thresholds: Thresholds, now: datetime
) -> dict[str, Any]:
    """Hard bounces at the record's domain in this send's window, and their share."""
    since = now - timedelta(minutes=thresholds.burst_minutes)
    stmt = select(func.count(func.distinct(BounceRecord.email))).where(
        BounceRecord.domain == record.domain,
        BounceRecord.kind == "bounce",
        BounceRecord.hard.is_(True),
        BounceRecord.occurred_at >= since,
        BounceRecord.occurred_at <= now,
    )
    if record.campaign_key is not None:
        stmt = stmt.where(BounceRecord.campaign_key == record.campaign_key)
    count = int(session.scalar(stmt) or 0)
    recipients = _recipients_at(session, record.domain, record.campaign_key, now)
    ratio = count / recipients if recipients else 1.0
    return {
        "hard_bounces": count,
        "recipients": recipients,
        "ratio": round(ratio, 4),
        "minutes": thresholds.burst_minutes,
        "campaign_key": record.campaign_key,
    }


def lock_domain(session: Session, domain: str) -> None:
    """Serialize the hard-bounce decisions of one workspace's domain until commit.

    Bounces of a burst arrive in parallel (SMTP connections, webhook requests): without
    this, one whose transaction started before the burst was recognized could suppress
    its address after the burst's lifting ran, and stay suppressed. PostgreSQL takes a
    transaction-scoped advisory lock; SQLite already runs one writer at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = f"postwise.bounces:{workspace_of(session)}:{domain}"
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def assess(
    session: Session, record: BounceRecord, thresholds: Thresholds, now: datetime
) -> Suspicion | None:
    """Why this hard bounce may be a filter block, or None when it looks real."""
    signals: list[str] = []
    evidence: dict[str, Any] = {}
    corporate = not is_free_mail(record.domain)
    if corporate:
        lock_domain(session, record.domain)
    if record.filter_wording:
        signals.append("filter_wording")
    if corporate and active_block(session, record.domain) is not None:
        signals.append("domain_blocked")
    if record.contact_id is not None and thresholds.engagement_days > 0:
        since = now - timedelta(days=thresholds.engagement_days)
        seen = recent_engagement(session, record.contact_id, since)
        if seen is not None:
            signals.append("engagement")
            evidence["engagement"] = seen
    if corporate:
        seen_burst = burst(session, record, thresholds, now)
        if (
            seen_burst["hard_bounces"] >= thresholds.burst_min
            and seen_burst["ratio"] >= thresholds.burst_ratio
        ):
            signals.append("burst")
            evidence["burst"] = seen_burst
    return Suspicion(tuple(signals), evidence) if signals else None


def _alert_text(domain: str, block: DomainBlock, thresholds: Thresholds) -> str:
    seen = block.evidence
    parts = []
    if "burst" in seen:
        b = seen["burst"]
        parts.append(
            f"{b['hard_bounces']} hard bounces from {domain} within {b['minutes']} minutes "
            f"({b['ratio']:.0%} of the {b['recipients']} recipients there"
            + (f" in {b['campaign_key']}" if b.get("campaign_key") else "")
            + ")"
        )
    if seen.get("engaged"):
        parts.append(
            f"{seen['engaged']} of the bounced people opened, clicked or visited the site "
            f"in the last {thresholds.engagement_days} days"
        )
    if seen.get("filter_wording"):
        parts.append("the rejection text speaks of spam, policy or reputation")
    seen_text = "; ".join(parts) or f"hard bounces from {domain} that look filtered"
    return (
        f"Suspected filter block at {domain}: {seen_text}. These bounces say 'user unknown' "
        "but look like the company's mail gateway rejecting our mail, not addresses that "
        "stopped existing, so nobody was suppressed (suppressions this burst made were "
        f"lifted) and sending to {domain} is slowed to {thresholds.block_per_minute:g} "
        f"messages a minute for {thresholds.block_slow_hours:g} hours. What to do: check "
        "the sending reputation (blocklists, SPF/DKIM/DMARC alignment), the content of the "
        "campaign (links, attachments, wording), and the pace at that company's gateway; "
        f"ask {domain}'s IT to allowlist the sending domain and IP. Clear the block once it "
        "is solved (POST /api/bounces/domain-blocks/{id}/clear) so real unknown users are "
        "suppressed again."
    )


def _lift_burst(
    session: Session, block: DomainBlock, thresholds: Thresholds, now: datetime
) -> list[int]:
    """Undo the suppressions this burst already made at the domain; returns record ids."""
    since = now - timedelta(minutes=thresholds.burst_minutes)
    stmt = select(BounceRecord).where(
        BounceRecord.domain == block.domain,
        BounceRecord.kind == "bounce",
        BounceRecord.hard.is_(True),
        BounceRecord.verdict == SUPPRESSED,
        BounceRecord.occurred_at >= since,
    )
    if block.campaign_key is not None:
        stmt = stmt.where(BounceRecord.campaign_key == block.campaign_key)
    lifted = []
    for record in session.scalars(stmt):
        suppression_id = record.evidence.get("suppression_id")
        row = session.get(Suppression, suppression_id) if suppression_id else None
        if row is not None:
            suppression.remove_suppression(
                session,
                row.id,
                actor=ACTOR,
                note=f"suspected filter block at {block.domain} (domain block {block.id})",
            )
        previous = record.evidence.get("previous_status")
        if record.contact_id is not None and previous and previous != "bounced":
            try:
                contact = actions.get_contact(session, record.contact_id)
            except NotFound:
                contact = None
            if contact is not None and contact.status == "bounced":
                actions.set_status(
                    session,
                    record.contact_id,
                    previous,
                    source="system",
                    reason=f"suspected filter block at {block.domain}",
                )
        record.verdict = KEPT_FILTER_BLOCK
        record.evidence = {**record.evidence, "lifted": True, "domain_block_id": block.id}
        lifted.append(record.id)
    return lifted


def _block_row(session: Session, domain: str, now: datetime) -> DomainBlock:
    """The domain's row, inserted (not yet active) if missing; a concurrent intake that
    inserted it first wins the unique key and its row is used."""
    block = session.scalar(select(DomainBlock).where(DomainBlock.domain == domain))
    if block is not None:
        return block
    block = DomainBlock(domain=domain, status=CLEARED, since=now, evidence={})
    try:
        with session.begin_nested():
            session.add(block)
    except IntegrityError:
        raced = session.scalar(select(DomainBlock).where(DomainBlock.domain == domain))
        if raced is None:
            raise
        return raced
    return block


def keep(
    session: Session,
    record: BounceRecord,
    suspicion: Suspicion,
    thresholds: Thresholds,
    now: datetime,
    *,
    hasher: AddressHasher,
) -> DomainBlock | None:
    """Keep the person; for a corporate domain, mark it, slow it, lift, alert."""
    del hasher  # lifting goes through the suppression actions, which need no hash
    record.verdict = KEPT_FILTER_BLOCK
    record.evidence = {**record.evidence, "signals": list(suspicion.signals), **suspicion.evidence}
    if is_free_mail(record.domain) or not GATEWAY_SIGNALS & set(suspicion.signals):
        # The person is kept. A free-mail provider is not one company's gateway, and one
        # engaged person's bounce is as likely a leaver as a filter: no domain verdict.
        return None
    block = _block_row(session, record.domain, now)
    fresh = block.status != ACTIVE
    evidence = dict(block.evidence) if not fresh else {}
    evidence["signals"] = sorted(set(evidence.get("signals", [])) | set(suspicion.signals))
    evidence["bounces"] = int(evidence.get("bounces", 0)) + 1
    if "engagement" in suspicion.signals:
        evidence["engaged"] = int(evidence.get("engaged", 0)) + 1
    if "filter_wording" in suspicion.signals:
        evidence["filter_wording"] = int(evidence.get("filter_wording", 0)) + 1
    if "burst" in suspicion.evidence:
        evidence["burst"] = suspicion.evidence["burst"]
    samples = list(evidence.get("samples", []))
    if len(samples) < 5:
        samples.append(
            {
                "bounce_record_id": record.id,
                "status": record.status,
                "diagnostic": (record.diagnostic or "")[:300],
            }
        )
    evidence["samples"] = samples
    block.status = ACTIVE
    block.last_seen_at = now
    block.campaign_key = record.campaign_key
    block.per_minute = thresholds.block_per_minute
    block.slow_until = now + timedelta(hours=thresholds.block_slow_hours)
    if fresh:
        block.since, block.cleared_at = now, None
    block.evidence = evidence
    session.flush()
    if fresh:
        lifted = _lift_burst(session, block, thresholds, now)
        block.evidence = {**evidence, "lifted_records": lifted}
        session.add(
            BounceAlert(
                kind="filter_block",
                domain=block.domain,
                campaign_key=record.campaign_key,
                message=_alert_text(block.domain, block, thresholds).replace("{id}", str(block.id)),
                evidence={"domain_block_id": block.id, **block.evidence},
                created_at=now,
            )
        )
    elif "burst" in suspicion.signals:
        _lift_burst(session, block, thresholds, now)
    record.evidence = {**record.evidence, "domain_block_id": block.id}
    session.flush()
    return block


def clear_block(session: Session, block_id: int, *, actor: str) -> DomainBlock:
    """A person says the block is solved: hard bounces at the domain count again."""
    block = session.get(DomainBlock, block_id)
    if block is None:
        raise NotFound(f"domain block {block_id} does not exist", field="block_id")
    if block.status == ACTIVE:
        block.status = CLEARED
        block.cleared_at = clock.utcnow()
        block.slow_until = None
        block.evidence = {**block.evidence, "cleared_by": actor[:200]}
        session.flush()
    return block


def paced_domains(session: Session, now: datetime | None = None) -> dict[str, float]:
    """Domains the deliverer must slow down, with messages per minute (system session:
    the pace is shared by every workspace, since they share sending IPs)."""
    now = now or clock.utcnow()
    rows = session.execute(
        select(DomainBlock.domain, func.min(DomainBlock.per_minute))
        .where(
            DomainBlock.status == ACTIVE,
            DomainBlock.slow_until > now,
            DomainBlock.per_minute.is_not(None),
        )
        .group_by(DomainBlock.domain)
    )
    return {str(domain): float(rate) for domain, rate in rows if rate is not None}


def pace_reader(db: Database) -> Callable[[], dict[str, float]]:
    """The deliverer's ``paces`` hook: the current caps, read in a short system session."""

    def read() -> dict[str, float]:
        with db.system() as session:
            return paced_domains(session)

    return read
