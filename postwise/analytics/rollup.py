"""Fold new email events into hourly counters, once each, in one transaction.

The watermark (last event id counted) moves in the same transaction as the counters and
the first-seen rows, so a rollup that dies half-way leaves nothing behind and the next
run redoes the whole batch: redone, never double-counted.

The PostgreSQL trap: ids are taken at insert but rows appear at commit, so a lower id can
become visible after a higher one was counted. A run therefore reads only the contiguous
id prefix whose ``received_at`` is older than ``lag``: an in-flight insert got its id and
``received_at`` before any later id, so every id after it is still inside the lag window
and the run stops before it (this holds while inserting transactions are shorter than
the lag; the default is 10 s).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.storage.tables import (
    ROLLUP_COUNTERS,
    AnalyticsFirstSeen,
    AnalyticsRollup,
    AnalyticsWatermark,
    CampaignAttribution,
    CampaignRecipient,
    Event,
    OutboxMessage,
)
from postwise.storage.tenancy import workspace_of

OPENED = "Email Opened"
CLICKED = "Email Clicked"
SIMPLE = {
    "Email Sent": "sent",
    "Email Delivered": "delivered",
    "Email Deferred": "deferred",  # once per message (outbox.mark_deferred)
    "Email Complained": "complaints",
    "Unsubscribed": "unsubscribes",
}
ROLLED_NAMES = (*SIMPLE, OPENED, CLICKED, "Email Bounced")
FILTER_REASONS = frozenset({"filter", "filtered"})
DEFAULT_LAG = timedelta(seconds=10)

Key = tuple[str, str, str, datetime]  # campaign_key, dimension, dimension_id, bucket


@dataclass(frozen=True)
class RollupResult:
    events: int
    last_event_id: int
    rows_touched: int
    contacts: frozenset[int]


HOURLY = frozenset({"campaign", "variant", "workflow"})


def hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def bucket_of(dimension: str, at: datetime) -> datetime:
    """Hours for the series people chart (campaign, variant, workflow); UTC days for the
    wide breakdowns (thousands of domains x 48 hours would make the report read too much)."""
    return at if dimension in HOURLY else at.replace(hour=0)


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _watermark(session: Session, ws: int) -> AnalyticsWatermark:
    stmt = select(AnalyticsWatermark).where(AnalyticsWatermark.workspace_id == ws)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()  # two rollups of one workspace take turns
    mark = session.execute(stmt).scalar_one_or_none()
    if mark is None:
        session.execute(
            _insert(session)(AnalyticsWatermark.__table__)
            .values(
                workspace_id=ws,
                last_event_id=0,
                events_rolled=0,
                last_attribution_id=0,
                updated_at=clock.utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["workspace_id"])
        )
        mark = session.execute(stmt).scalar_one()
    return mark


def _dimensions(campaign_key: str, props: dict[str, Any], rcpt: Any) -> list[tuple[str, str]]:
    """Which rows one event adds to: the campaign itself and its breakdowns."""
    dims: list[tuple[str, str]] = []
    if campaign_key:
        dims.append(("campaign", campaign_key))
    elif props.get("workflow_key"):
        dims.append(("workflow", str(props["workflow_key"])))
    email = str(props.get("email") or "")
    domain = rcpt.domain if rcpt is not None else email.rpartition("@")[2].lower()
    if domain:
        dims.append(("domain", domain))
    if rcpt is not None:
        if rcpt.variant:
            dims.append(("variant", rcpt.variant))
        if rcpt.company_id is not None:
            dims.append(("company", str(rcpt.company_id)))
        dims.append((rcpt.source_kind, str(rcpt.source_id)))  # segment | list
    return dims


def roll_up(
    session: Session,
    *,
    lag: timedelta = DEFAULT_LAG,
    limit: int = 50_000,
    now: datetime | None = None,
) -> RollupResult:
    """Count the next batch of settled events; the caller's transaction commits it all."""
    ws = workspace_of(session)
    mark = _watermark(session, ws)
    horizon = (now or clock.utcnow()) - lag
    rows = session.execute(
        select(
            Event.id,
            Event.name,
            Event.contact_id,
            Event.properties,
            Event.occurred_at,
            Event.received_at,
        )
        .where(Event.workspace_id == ws, Event.id > mark.last_event_id)
        .order_by(Event.id)
        .limit(limit)
    ).all()
    settled = []
    for row in rows:
        if row.received_at > horizon:
            break  # the safe horizon: stop at the first unsettled id, never skip it
        settled.append(row)
    if not settled:
        return RollupResult(0, mark.last_event_id, 0, frozenset())
    wanted = [r for r in settled if r.name in ROLLED_NAMES]
    outbox_ids = {
        int(r.properties["outbox_id"])
        for r in wanted
        if isinstance(r.properties, dict) and r.properties.get("outbox_id") is not None
    }
    recipients: dict[int, Any] = {}
    ordered = sorted(outbox_ids)
    for start in range(0, len(ordered), 5000):  # bounded parameters (SQLite, psycopg)
        for rc in session.execute(
            select(
                CampaignRecipient.outbox_id,
                CampaignRecipient.domain,
                CampaignRecipient.variant,
                CampaignRecipient.company_id,
                CampaignRecipient.source_kind,
                CampaignRecipient.source_id,
            ).where(
                CampaignRecipient.workspace_id == ws,
                CampaignRecipient.outbox_id.in_(ordered[start : start + 5000]),
            )
        ):
            recipients[int(rc.outbox_id)] = rc
    list_of = _list_sends(session, [o for o in ordered if o not in recipients])
    counters: dict[Key, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    firsts: dict[tuple[str, int, str], tuple[int, datetime, list[tuple[str, str]]]] = {}
    touched: set[int] = set()
    for r in wanted:
        props: dict[str, Any] = r.properties if isinstance(r.properties, dict) else {}
        ckey = str(props.get("campaign_key") or "")
        oid = props.get("outbox_id")
        rcpt = recipients.get(int(oid)) if oid is not None else None
        dims = _dimensions(ckey, props, rcpt)
        if rcpt is None and oid is not None and int(oid) in list_of:
            dims.append(("list", str(list_of[int(oid)])))  # a list send outside campaigns
        at = hour(r.occurred_at)
        names: list[str] = []
        if r.name in SIMPLE:
            names.append(SIMPLE[r.name])
        elif r.name == "Email Bounced":
            names.append("bounced_hard" if props.get("hard") else "bounced_soft")
            if props.get("reason") in FILTER_REASONS:
                names.append("filter_blocked")
        else:
            side = "machine" if props.get("machine") is True else "human"
            what = "opens" if r.name == OPENED else "clicks"
            names.append(f"{what}_{side}")
            if r.contact_id is not None:
                if side == "human":
                    touched.add(int(r.contact_id))
                fkey = (ckey, int(r.contact_id), f"{what[:-1]}_{side}")
                firsts.setdefault(fkey, (int(r.id), r.occurred_at, dims))
        for dim, dim_id in dims:
            cell = counters[(ckey, dim, dim_id, bucket_of(dim, at))]
            for name in names:
                cell[name] += 1
    first_rows = [
        {
            "workspace_id": ws,
            "campaign_key": k[0],
            "contact_id": k[1],
            "kind": k[2],
            "event_id": v[0],
            "seen_at": v[1],
        }
        for k, v in firsts.items()
    ]
    first_stmt = (
        _insert(session)(AnalyticsFirstSeen.__table__)
        .on_conflict_do_nothing(
            index_elements=["workspace_id", "campaign_key", "contact_id", "kind"]
        )
        .returning(
            AnalyticsFirstSeen.campaign_key,
            AnalyticsFirstSeen.contact_id,
            AnalyticsFirstSeen.kind,
        )
    )
    for start in range(0, len(first_rows), 5000):  # executemany with RETURNING
        inserted = session.execute(first_stmt, first_rows[start : start + 5000]).all()
        for ckey, contact_id, kind in inserted:
            _event_id, seen_at, dims = firsts[(ckey, int(contact_id), kind)]
            what, side = kind.split("_")
            for dim, dim_id in dims:
                bucket = bucket_of(dim, hour(seen_at))
                counters[(ckey, dim, dim_id, bucket)][f"unique_{what}s_{side}"] += 1
    if counters:
        _upsert(session, ws, counters)
    last = settled[-1]
    session.execute(
        update(AnalyticsWatermark)
        .where(AnalyticsWatermark.workspace_id == ws)
        .values(
            last_event_id=int(last.id),
            last_received_at=last.received_at,
            events_rolled=AnalyticsWatermark.events_rolled + len(settled),
            updated_at=clock.utcnow(),
        )
    )
    return RollupResult(len(settled), int(last.id), len(counters), frozenset(touched))


def _list_sends(session: Session, outbox_ids: list[int]) -> dict[int, int]:
    """Outbox id -> list id for mail sent to a list outside any campaign (no snapshot
    row), so list hygiene covers plain list sends too; a pruned outbox row is not found."""
    found: dict[int, int] = {}
    for start in range(0, len(outbox_ids), 5000):
        rows = session.execute(
            select(OutboxMessage.id, OutboxMessage.list_id).where(
                OutboxMessage.id.in_(outbox_ids[start : start + 5000]),
                OutboxMessage.list_id.is_not(None),
            )
        )
        found.update({int(i): int(list_id) for i, list_id in rows if list_id is not None})
    return found


def _upsert(session: Session, ws: int, counters: dict[Key, dict[str, float]]) -> None:
    table = AnalyticsRollup.__table__
    fields = (*ROLLUP_COUNTERS, "revenue")
    values = []
    for (ckey, dim, dim_id, bucket), row in sorted(counters.items()):
        value: dict[str, Any] = {
            "workspace_id": ws,
            "campaign_key": ckey,
            "dimension": dim,
            "dimension_id": dim_id[:255],
            "bucket": bucket,
        }
        for f in fields:
            value[f] = row.get(f, 0.0) if f == "revenue" else int(row.get(f, 0))
        values.append(value)
    stmt = _insert(session)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["workspace_id", "campaign_key", "dimension", "dimension_id", "bucket"],
        set_={f: table.c[f] + stmt.excluded[f] for f in fields},
    )
    for start in range(0, len(values), 5000):  # executemany: compiled once, batched
        session.execute(stmt, values[start : start + 5000])


def fold_attributions(
    session: Session,
    *,
    lag: timedelta = DEFAULT_LAG,
    limit: int = 50_000,
    now: datetime | None = None,
) -> int:
    """Add the next settled attributions to ``conversions`` and ``revenue``; returns how many.

    Same exactly-once pattern as the events: the attribution watermark moves in the
    caller's transaction with the counters, and only the contiguous id prefix whose
    ``created_at`` is older than ``lag`` is read (ids are taken before commit). A
    conversion lands in the hour it happened, on the campaign and on the recipient's
    variant, domain, company and segment/list from the audience snapshot.
    """
    ws = workspace_of(session)
    mark = _watermark(session, ws)
    horizon = (now or clock.utcnow()) - lag
    rows = session.execute(
        select(
            CampaignAttribution.id,
            CampaignAttribution.campaign_id,
            CampaignAttribution.campaign_key,
            CampaignAttribution.contact_id,
            CampaignAttribution.variant,
            CampaignAttribution.revenue,
            CampaignAttribution.converted_at,
            CampaignAttribution.created_at,
        )
        .where(
            CampaignAttribution.workspace_id == ws,
            CampaignAttribution.id > mark.last_attribution_id,
        )
        .order_by(CampaignAttribution.id)
        .limit(limit)
    ).all()
    settled = []
    for row in rows:
        if row.created_at > horizon:
            break  # the safe horizon, as for events
        settled.append(row)
    if not settled:
        return 0
    recipients: dict[tuple[int, int], Any] = {}
    pairs = sorted({(int(r.campaign_id), int(r.contact_id)) for r in settled})
    for campaign_id in sorted({c for c, _ in pairs}):
        contacts = [k for c, k in pairs if c == campaign_id]
        for start in range(0, len(contacts), 5000):  # bounded parameters
            for rc in session.execute(
                select(
                    CampaignRecipient.contact_id,
                    CampaignRecipient.domain,
                    CampaignRecipient.variant,
                    CampaignRecipient.company_id,
                    CampaignRecipient.source_kind,
                    CampaignRecipient.source_id,
                ).where(
                    CampaignRecipient.workspace_id == ws,
                    CampaignRecipient.campaign_id == campaign_id,
                    CampaignRecipient.contact_id.in_(contacts[start : start + 5000]),
                )
            ):
                recipients[(campaign_id, int(rc.contact_id))] = rc
    counters: dict[Key, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in settled:
        rcpt = recipients.get((int(r.campaign_id), int(r.contact_id)))
        dims = _dimensions(r.campaign_key, {}, rcpt)
        if rcpt is None and r.variant:
            dims.append(("variant", r.variant))
        at = hour(r.converted_at)
        for dim, dim_id in dims:
            cell = counters[(r.campaign_key, dim, dim_id, bucket_of(dim, at))]
            cell["conversions"] += 1
            cell["revenue"] += float(r.revenue or 0.0)
    _upsert(session, ws, counters)
    session.execute(
        update(AnalyticsWatermark)
        .where(AnalyticsWatermark.workspace_id == ws)
        .values(last_attribution_id=int(settled[-1].id), updated_at=clock.utcnow())
    )
    return len(settled)
