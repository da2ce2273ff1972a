"""Campaign reports read from the rollups only (never the raw events).

Rates count human activity; machine opens/clicks (privacy proxies, link scanners) are
shown beside them, never mixed in. Denominators: delivered for open and click rates,
unique human opens for click-to-open.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postwise.core.errors import NotFound, ValidationFailed
from postwise.storage.tables import ROLLUP_COUNTERS, AnalyticsRollup, Campaign

DIMENSIONS = ("campaign", "variant", "domain", "company", "segment", "list", "workflow")
FIELDS = (*ROLLUP_COUNTERS, "revenue")
REPORT_TOP = 50  # rows per breakdown in the campaign report


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 6) if den else None


@dataclass
class Totals:
    counters: dict[str, float]

    def kpis(self) -> dict[str, float | None]:
        c = self.counters
        delivered = c["delivered"] or c["sent"]
        return {
            "delivery_rate": _rate(c["delivered"], c["sent"]),
            "open_rate": _rate(c["unique_opens_human"], delivered),
            "click_rate": _rate(c["unique_clicks_human"], delivered),
            "click_to_open": _rate(c["unique_clicks_human"], c["unique_opens_human"]),
            "conversion_rate": _rate(c["conversions"], delivered),
            "revenue_per_recipient": _rate(c["revenue"], delivered),
            "bounce_rate": _rate(c["bounced_hard"] + c["bounced_soft"], c["sent"]),
            "unsubscribe_rate": _rate(c["unsubscribes"], delivered),
            "complaint_rate": _rate(c["complaints"], delivered),
            "machine_open_share": _rate(c["opens_machine"], c["opens_machine"] + c["opens_human"]),
        }


@dataclass
class Row:
    dimension: str
    id: str
    counters: dict[str, float]
    kpis: dict[str, float | None] = field(default_factory=dict)


@dataclass
class CampaignReport:
    campaign_id: int
    key: str
    name: str
    status: str
    recipients: int
    totals: dict[str, float]
    kpis: dict[str, float | None]
    breakdowns: dict[str, list[Row]]
    hourly: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sums() -> list[Any]:
    return [func.coalesce(func.sum(getattr(AnalyticsRollup, f)), 0).label(f) for f in FIELDS]


def _counters(row: Any) -> dict[str, float]:
    m = row._mapping
    out: dict[str, float] = {f: int(m[f]) for f in ROLLUP_COUNTERS}
    out["revenue"] = float(m["revenue"])
    return out


def breakdown(
    session: Session, campaign_key: str, dimension: str, *, top: int | None = None
) -> list[Row]:
    """Every row of one dimension by id, or the ``top`` largest by sent (the report shows
    the 50 biggest domains; the API and CSV give them all)."""
    stmt = (
        select(AnalyticsRollup.dimension_id, *_sums())
        .where(AnalyticsRollup.campaign_key == campaign_key, AnalyticsRollup.dimension == dimension)
        .group_by(AnalyticsRollup.dimension_id)
    )
    if top is None:
        stmt = stmt.order_by(AnalyticsRollup.dimension_id)
    else:
        stmt = stmt.order_by(func.sum(AnalyticsRollup.sent).desc(), AnalyticsRollup.dimension_id)
        stmt = stmt.limit(top)
    rows = session.execute(stmt).all()
    out = []
    for r in rows:
        counters = _counters(r)
        out.append(Row(dimension, r.dimension_id, counters, Totals(counters).kpis()))
    return out


def series(
    session: Session,
    campaign_key: str,
    *,
    dimension: str = "campaign",
    dimension_id: str | None = None,
    interval: str = "hour",
) -> list[dict[str, Any]]:
    """Counters per hour (or per UTC day, summed from the hours) for one dimension row."""
    rows = session.execute(
        select(AnalyticsRollup.bucket, *_sums())
        .where(
            AnalyticsRollup.campaign_key == campaign_key,
            AnalyticsRollup.dimension == dimension,
            AnalyticsRollup.dimension_id == (dimension_id or campaign_key),
        )
        .group_by(AnalyticsRollup.bucket)
        .order_by(AnalyticsRollup.bucket)
    ).all()
    points: dict[datetime, dict[str, float]] = {}
    for r in rows:
        at = r.bucket if interval == "hour" else r.bucket.replace(hour=0)
        point = points.setdefault(at, dict.fromkeys(FIELDS, 0))
        for f, v in _counters(r).items():
            point[f] += v
    return [{"at": at.isoformat(), **v} for at, v in points.items()]


def campaign_report(session: Session, campaign_id: int) -> CampaignReport:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found", field="campaign_id")
    total_row = session.execute(
        select(*_sums()).where(
            AnalyticsRollup.campaign_key == campaign.key,
            AnalyticsRollup.dimension == "campaign",
            AnalyticsRollup.dimension_id == campaign.key,
        )
    ).one()
    totals = _counters(total_row)
    return CampaignReport(
        campaign_id=campaign.id,
        key=campaign.key,
        name=campaign.name,
        status=campaign.status,
        recipients=campaign.recipient_count,
        totals=totals,
        kpis=Totals(totals).kpis(),
        breakdowns={
            d: breakdown(session, campaign.key, d, top=REPORT_TOP)
            for d in ("variant", "domain", "company", "segment", "list")
        },
        hourly=series(session, campaign.key),
    )


def segment_report(session: Session, segment_id: int) -> dict[str, Any]:
    """Sums over every campaign of what was sent through a segment, plus its engagement."""
    from postwise.analytics import engagement
    from postwise.storage.tables import Segment

    segment = session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found", field="segment_id")
    row = session.execute(
        select(*_sums()).where(
            AnalyticsRollup.dimension == "segment", AnalyticsRollup.dimension_id == str(segment_id)
        )
    ).one()
    totals = _counters(row)
    return {
        "segment_id": segment_id,
        "name": segment.name,
        "totals": totals,
        "kpis": Totals(totals).kpis(),
        "engagement_score_mean": round(engagement.segment_mean(session, segment_id), 6),
    }


def list_report(session: Session, list_id: int) -> dict[str, Any]:
    """Sums over every campaign of what was sent through a list (its hygiene rates)."""
    from postwise.storage.tables import MailingList

    mailing_list = session.get(MailingList, list_id)
    if mailing_list is None:
        raise NotFound(f"list {list_id} not found", field="list_id")
    row = session.execute(
        select(*_sums()).where(
            AnalyticsRollup.dimension == "list", AnalyticsRollup.dimension_id == str(list_id)
        )
    ).one()
    totals = _counters(row)
    return {
        "list_id": list_id,
        "name": mailing_list.name,
        "totals": totals,
        "kpis": Totals(totals).kpis(),
    }


HYGIENE_KPIS = ("bounce_rate", "unsubscribe_rate", "complaint_rate", "conversion_rate")


def hygiene(session: Session, kind: str) -> list[dict[str, Any]]:
    """Per segment or per list, over every campaign sent through it: sent, delivered,
    bounces, unsubscribes, complaints, conversions and their rates (one grouped read of
    the daily rollup rows; names from the segment or list, removed ones named by id)."""
    from postwise.storage.tables import MailingList, Segment

    if kind not in ("segment", "list"):
        raise ValidationFailed("kind must be 'segment' or 'list'", field="kind")
    model: Any = Segment if kind == "segment" else MailingList
    names = {str(i): n for i, n in session.execute(select(model.id, model.name))}
    rows = session.execute(
        select(AnalyticsRollup.dimension_id, *_sums())
        .where(AnalyticsRollup.dimension == kind)
        .group_by(AnalyticsRollup.dimension_id)
    ).all()
    out = []
    for r in rows:
        counters = _counters(r)
        kpis = Totals(counters).kpis()
        out.append(
            {
                "kind": kind,
                "id": int(r.dimension_id),
                "name": names.get(r.dimension_id),
                "sent": counters["sent"],
                "delivered": counters["delivered"],
                "bounced": counters["bounced_hard"] + counters["bounced_soft"],
                "unsubscribes": counters["unsubscribes"],
                "complaints": counters["complaints"],
                "conversions": counters["conversions"],
                "revenue": counters["revenue"],
                **{k: kpis[k] for k in HYGIENE_KPIS},
            }
        )
    return sorted(out, key=lambda row: row["id"])


def to_csv(rows: list[Row]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    kpi_names = list(Totals(dict.fromkeys(FIELDS, 0)).kpis())
    writer.writerow(["dimension", "id", *FIELDS, *kpi_names])
    for r in rows:
        writer.writerow(
            [r.dimension, r.id, *(r.counters[f] for f in FIELDS), *(r.kpis[k] for k in kpi_names)]
        )
    return out.getvalue()
