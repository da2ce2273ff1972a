"""Reading bounce and complaint records, per-domain summaries, domain blocks and alerts.

Every function takes a session bound to one workspace (``Database.tenant``): the
tenancy layer filters each select, so no caller can read another workspace's bounces.
Acknowledging an alert is the one write here. See docs/bounces.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from postwise.bounces.filterblock import ACTIVE, CLEARED
from postwise.core import clock
from postwise.core.errors import NotFound, ValidationFailed
from postwise.core.pagination import Page, keyset_page
from postwise.storage.tables import BounceAlert, BounceRecord, DomainBlock, InboundMessage
from postwise.storage.tenancy import workspace_of

RECORD_KINDS = ("bounce", "complaint")


@dataclass(frozen=True)
class RecordFilter:
    campaign_key: str | None = None
    domain: str | None = None
    email: str | None = None
    reason: str | None = None
    kind: str | None = None
    verdict: str | None = None
    hard: bool | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_records(
    session: Session, filters: RecordFilter, *, cursor: str | None = None, limit: int = 50
) -> Page[BounceRecord]:
    """Oldest first by id, keyset-paginated."""
    if filters.kind is not None and filters.kind not in RECORD_KINDS:
        raise ValidationFailed(
            f"kind must be one of {', '.join(RECORD_KINDS)}", code="invalid_kind", field="kind"
        )
    stmt = select(BounceRecord)
    if filters.campaign_key is not None:
        stmt = stmt.where(BounceRecord.campaign_key == filters.campaign_key)
    if filters.domain is not None:
        stmt = stmt.where(BounceRecord.domain == filters.domain.strip().lower())
    if filters.email is not None:
        stmt = stmt.where(BounceRecord.email == filters.email.strip().lower())
    if filters.reason is not None:
        stmt = stmt.where(BounceRecord.reason == filters.reason)
    if filters.kind is not None:
        stmt = stmt.where(BounceRecord.kind == filters.kind)
    if filters.verdict is not None:
        stmt = stmt.where(BounceRecord.verdict == filters.verdict)
    if filters.hard is not None:
        stmt = stmt.where(BounceRecord.hard.is_(filters.hard))
    if filters.since is not None:
        stmt = stmt.where(BounceRecord.occurred_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(BounceRecord.occurred_at < filters.until)
    return keyset_page(session, stmt, BounceRecord.id, cursor, limit)


def get_record(session: Session, record_id: int) -> BounceRecord:
    row = session.get(BounceRecord, record_id)
    if row is None:
        raise NotFound(f"bounce record {record_id} does not exist", field="record_id")
    return row


def inbound_raw(session: Session, record: BounceRecord) -> bytes | None:
    """The kept bytes of the message a record came from (same workspace only)."""
    if record.inbound_id is None:
        return None
    raw = session.scalar(
        select(InboundMessage.raw).where(
            InboundMessage.id == record.inbound_id,
            InboundMessage.workspace_id == record.workspace_id,
        )
    )
    return bytes(raw) if raw is not None else None


@dataclass(frozen=True)
class DomainSummary:
    domain: str
    bounces: int
    hard: int
    soft: int
    complaints: int
    suppressed: int
    kept_filter_block: int
    last_at: datetime
    blocked: bool


def summary_by_domain(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign_key: str | None = None,
    limit: int = 100,
) -> list[DomainSummary]:
    """Per recipient domain, most bounces first."""
    b = BounceRecord
    is_bounce = b.kind == "bounce"

    def count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.sum(case((condition, 1), else_=0))

    stmt = select(
        b.domain,
        count_if(is_bounce),
        count_if(is_bounce & b.hard.is_(True)),
        count_if(is_bounce & b.hard.is_(False)),
        count_if(b.kind == "complaint"),
        count_if(b.verdict == "suppressed"),
        count_if(b.verdict == "kept_filter_block"),
        func.max(b.occurred_at),
    ).group_by(b.domain)
    if since is not None:
        stmt = stmt.where(b.occurred_at >= since)
    if until is not None:
        stmt = stmt.where(b.occurred_at < until)
    if campaign_key is not None:
        stmt = stmt.where(b.campaign_key == campaign_key)
    stmt = stmt.order_by(func.count().desc(), b.domain).limit(max(1, min(limit, 1000)))
    rows = list(session.execute(stmt))
    blocked = set(
        session.scalars(
            select(DomainBlock.domain).where(
                DomainBlock.status == ACTIVE, DomainBlock.domain.in_([r[0] for r in rows])
            )
        )
    )
    return [
        DomainSummary(
            domain=str(r[0]),
            bounces=int(r[1] or 0),
            hard=int(r[2] or 0),
            soft=int(r[3] or 0),
            complaints=int(r[4] or 0),
            suppressed=int(r[5] or 0),
            kept_filter_block=int(r[6] or 0),
            last_at=clock.as_utc(r[7]),
            blocked=str(r[0]) in blocked,
        )
        for r in rows
    ]


def list_blocks(
    session: Session, *, status: str | None = None, cursor: str | None = None, limit: int = 50
) -> Page[DomainBlock]:
    if status is not None and status not in (ACTIVE, CLEARED):
        raise ValidationFailed(
            "status must be active or cleared", code="invalid_status", field="status"
        )
    stmt = select(DomainBlock)
    if status is not None:
        stmt = stmt.where(DomainBlock.status == status)
    return keyset_page(session, stmt, DomainBlock.id, cursor, limit)


def list_alerts(
    session: Session,
    *,
    acknowledged: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[BounceAlert]:
    stmt = select(BounceAlert)
    if acknowledged is True:
        stmt = stmt.where(BounceAlert.acknowledged_at.is_not(None))
    elif acknowledged is False:
        stmt = stmt.where(BounceAlert.acknowledged_at.is_(None))
    return keyset_page(session, stmt, BounceAlert.id, cursor, limit)


def acknowledge_alert(session: Session, alert_id: int, *, by: str) -> BounceAlert:
    """Mark an alert as seen; acknowledging twice keeps the first time and person."""
    alert = session.get(BounceAlert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} does not exist", field="alert_id")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = clock.utcnow()
        alert.acknowledged_by = by[:200]
        session.flush()
    return alert


def list_inbound(
    session: Session,
    *,
    kind: str | None = None,
    parsed: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[InboundMessage]:
    """The workspace's kept inbound messages (unparsed ones with their reason), oldest
    first. ``inbound_messages`` is not tenant-filtered (rows may have no workspace), so
    the workspace condition is written here, from the session's own workspace."""
    stmt = select(InboundMessage).where(InboundMessage.workspace_id == workspace_of(session))
    if kind is not None:
        stmt = stmt.where(InboundMessage.kind == kind)
    if parsed is not None:
        stmt = stmt.where(InboundMessage.parsed.is_(parsed))
    return keyset_page(session, stmt, InboundMessage.id, cursor, limit)
