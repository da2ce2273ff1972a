"""Who a campaign goes to, as one SQL statement (counted for the estimate, inserted at send).

Sources (segments' current members, lists' subscribed members) are read in the order
given; a contact in several gets the first (``ord``), so the snapshot says "through which
segment or list". Exclusion segments and lists, contacts that are not ``subscribed``
(unsubscribed, bounced, complained) and suppressed addresses and domains are removed in
the same statement. Suppression is checked once more per message at send time (subdomain
entries and erasure hashes are only matched there).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from postwise.core.errors import ValidationFailed
from postwise.storage.tables import (
    Campaign,
    Contact,
    ListMembership,
    MailingList,
    Segment,
    SegmentMembership,
    Suppression,
)


def check_sources(session: Session, campaign: Campaign) -> None:
    """Every named segment and list exists in this workspace (the session's)."""
    spec = campaign.audience or {}
    for source in spec.get("sources", []):
        ((kind, ident),) = source.items()
        table: Any = Segment if kind == "segment" else MailingList
        if session.scalar(select(table.id).where(table.id == ident)) is None:
            raise ValidationFailed(f"{kind} {ident} does not exist", field="audience.sources")
    for ident in spec.get("exclude_segment_ids", []):
        if session.scalar(select(Segment.id).where(Segment.id == ident)) is None:
            raise ValidationFailed(
                f"segment {ident} does not exist", field="audience.exclude_segment_ids"
            )
    for ident in spec.get("exclude_list_ids", []):
        if session.scalar(select(MailingList.id).where(MailingList.id == ident)) is None:
            raise ValidationFailed(
                f"list {ident} does not exist", field="audience.exclude_list_ids"
            )


def segment_ids(campaign: Campaign) -> list[int]:
    """The segments the audience reads, sources then exclusions, each once."""
    spec = campaign.audience or {}
    ids = [int(v) for s in spec.get("sources", []) for k, v in s.items() if k == "segment"]
    ids += [int(v) for v in spec.get("exclude_segment_ids", [])]
    return list(dict.fromkeys(ids))


def refresh_stale_segments(
    session: Session, campaign: Campaign, now: datetime, sweep_minutes: int
) -> list[int]:
    """Fully refresh each audience segment that was never refreshed, or that depends on
    time and was last refreshed more than a sweep period ago; returns their ids.

    The snapshot reads stored memberships (one indexed join, the same rows the segment
    pages show) rather than re-running every segment's compiled SQL inside each batch:
    a segment saved seconds before the send has no members until its first refresh, and
    a time-dependent one may be a sweep behind. Segments without time in their rules
    are kept current by real-time re-evaluation, so a refresh would only cost time.
    Run once, when the fan-out starts, before the first batch.
    """
    from postwise.segments import catalog, membership

    refreshed = []
    horizon = now - timedelta(minutes=sweep_minutes)
    for ident in segment_ids(campaign):
        row = session.get(Segment, ident)
        if row is None:
            continue
        if row.refreshed_at is not None and (
            row.refreshed_at >= horizon or not catalog.loaded(session, row).time_dependent
        ):
            continue
        membership.refresh(session, ident, now=now)
        refreshed.append(ident)
    return refreshed


def _in_range(column: Any, lo: int | None, hi: int | None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if lo is not None:
        out.append(column > lo)
    if hi is not None:
        out.append(column <= hi)
    return out


def audience_select(
    campaign: Campaign, *, lo: int | None = None, hi: int | None = None
) -> Select[Any] | None:
    """Rows (contact_id, email, domain, company_id, timezone, ord) of the audience, contact
    ids in (lo, hi]; None when the campaign names no source."""
    spec = campaign.audience or {}
    sources = spec.get("sources", [])
    if not sources:
        return None
    ws = campaign.workspace_id
    parts = []
    for ord_, source in enumerate(sources):
        ((kind, ident),) = source.items()
        if kind == "segment":
            parts.append(
                select(SegmentMembership.contact_id, literal(ord_).label("ord")).where(
                    SegmentMembership.workspace_id == ws,
                    SegmentMembership.segment_id == ident,
                    SegmentMembership.exited_at.is_(None),
                    *_in_range(SegmentMembership.contact_id, lo, hi),
                )
            )
        else:
            parts.append(
                select(ListMembership.contact_id, literal(ord_).label("ord")).where(
                    ListMembership.workspace_id == ws,
                    ListMembership.list_id == ident,
                    ListMembership.status == "subscribed",
                    *_in_range(ListMembership.contact_id, lo, hi),
                )
            )
    if len(parts) == 1:
        firsts = parts[0].subquery()
    else:
        both = union_all(*parts).subquery()
        firsts = (
            select(both.c.contact_id, func.min(both.c.ord).label("ord"))
            .group_by(both.c.contact_id)
            .subquery()
        )
    conditions: list[ColumnElement[bool]] = [
        Contact.workspace_id == ws,
        Contact.status == "subscribed",
        ~exists().where(
            Suppression.workspace_id == ws,
            Suppression.kind == "address",
            Suppression.value == func.lower(Contact.email),
        ),
        ~exists().where(
            Suppression.workspace_id == ws,
            Suppression.kind == "domain",
            Suppression.value == Contact.email_domain,
        ),
    ]
    excluded_segments = spec.get("exclude_segment_ids", [])
    if excluded_segments:
        conditions.append(
            ~exists().where(
                SegmentMembership.workspace_id == ws,
                SegmentMembership.contact_id == Contact.id,
                SegmentMembership.segment_id.in_(excluded_segments),
                SegmentMembership.exited_at.is_(None),
            )
        )
    excluded_lists = spec.get("exclude_list_ids", [])
    if excluded_lists:
        # Anyone on an exclusion list, subscribed or not: "customers" stay customers.
        conditions.append(
            ~exists().where(
                ListMembership.workspace_id == ws,
                ListMembership.contact_id == Contact.id,
                ListMembership.list_id.in_(excluded_lists),
            )
        )
    return (
        select(
            Contact.id.label("contact_id"),
            Contact.email,
            Contact.email_domain,
            Contact.company_id,
            Contact.timezone,
            firsts.c.ord,
        )
        .join(firsts, and_(firsts.c.contact_id == Contact.id))
        .where(*conditions)
    )


def estimate(session: Session, campaign: Campaign) -> dict[str, Any]:
    """The audience as it would be snapshotted now: total and per first-matching source."""
    check_sources(session, campaign)
    stmt = audience_select(campaign)
    sources = (campaign.audience or {}).get("sources", [])
    if stmt is None:
        return {"total": 0, "by_source": []}
    sub = stmt.subquery()
    rows: dict[int, int] = {
        int(o): int(n)
        for o, n in session.connection().execute(
            select(sub.c.ord, func.count()).group_by(sub.c.ord)
        )
    }
    by_source = []
    for ord_, source in enumerate(sources):
        ((kind, ident),) = source.items()
        by_source.append({"kind": kind, "id": ident, "count": int(rows.get(ord_, 0))})
    return {"total": sum(rows.values()), "by_source": by_source}
