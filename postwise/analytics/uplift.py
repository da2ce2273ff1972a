"""CLTV uplift: revenue of contacts reached by segmented campaigns over comparable contacts.

Reached: a contact whose first delivery-bound message of a campaign came through a
segment (``campaign_recipients.source_kind = 'segment'`` with an outbox row); first reach
= the earliest such row's send time. Comparison: contacts never reached that way (list
sends count as not reached; a contact whose send is still ahead of ``as_of`` is in
neither cohort), created by the stratum's index date. Strata: the company's
size band x industry (known before any send, so the campaign cannot have moved them).
A comparison contact's window starts at its stratum's index date, the (lower) median
first reach of the stratum's reached contacts, so both cohorts are measured over the
same calendar span.

Per contact: the summed revenue property of the chosen event over
[start, min(start + window, as_of)). Per stratum: difference of the means; the uplift is
their average weighted by reached contacts (effect on the reached), with a normal 95%
interval from the per-stratum variances. Reached contacts in a stratum without any
comparison contact are left out and counted as ``unmatched_reached``.

Cost: one pass over the reached snapshot rows, one over the not-reached contacts (kept
as counts per stratum) and one over the chosen event's rows (each with its contact's
stratum); memory is one entry per reached contact and per comparison contact with
revenue. It runs as the daily
``analytics.uplift`` job or on demand and stores its result in ``analytics_uplift``;
reports read that row (docs/analytics.md).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.errors import NotFound, ValidationFailed
from postwise.storage.tables import (
    AnalyticsUplift,
    CampaignRecipient,
    Company,
    Contact,
    Event,
)
from postwise.storage.tenancy import workspace_of

DEFAULT_EVENT = "Order Completed"
DEFAULT_PROPERTY = "revenue"
DEFAULT_WINDOW_DAYS = 90
MAX_WINDOW_DAYS = 3650
Z95 = 1.959964
UNKNOWN = "unknown"

Stratum = tuple[str, str]  # size band, industry


@dataclass
class _Group:
    """Revenue per contact of one cohort in one stratum (contacts without revenue add 0)."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, revenue: float) -> None:
        self.n += 1
        self.total += revenue
        self.squares += revenue * revenue

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def variance_of_mean(self) -> float:
        if self.n < 2:
            return 0.0
        var = max(self.squares - self.total * self.total / self.n, 0.0) / (self.n - 1)
        return var / self.n


@dataclass(slots=True)
class _Reached:
    start: datetime
    stratum: Stratum
    revenue: float = 0.0


@dataclass(slots=True)
class _Control:
    stratum: Stratum
    revenue: float = 0.0


@dataclass
class Params:
    event: str = DEFAULT_EVENT
    revenue_property: str = DEFAULT_PROPERTY
    window_days: int = DEFAULT_WINDOW_DAYS

    def check(self) -> Params:
        if not self.event.strip():
            raise ValidationFailed("event must name the conversion event", field="event")
        if not self.revenue_property.strip():
            raise ValidationFailed("revenue_property must not be empty", field="revenue_property")
        if not 1 <= self.window_days <= MAX_WINDOW_DAYS:
            raise ValidationFailed(
                f"window_days must be between 1 and {MAX_WINDOW_DAYS}", field="window_days"
            )
        return self


@dataclass
class _State:
    reached: dict[int, _Reached] = field(default_factory=dict)
    controls: dict[int, _Control] = field(default_factory=dict)  # with revenue only
    control_counts: dict[Stratum, int] = field(default_factory=lambda: defaultdict(int))


def _stratum(size_band: str | None, industry: str | None) -> Stratum:
    return (size_band or UNKNOWN, industry or UNKNOWN)


def revenue_of(properties: Any, name: str) -> float:
    """The event's numeric revenue property; anything else (missing, text, bool) is 0."""
    if not isinstance(properties, dict):
        return 0.0
    value = properties.get(name)
    if isinstance(value, bool) or value is None:
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _reached(session: Session, ws: int) -> dict[int, _Reached]:
    r = CampaignRecipient
    reach_at = func.min(func.coalesce(r.scheduled_for, r.created_at)).label("reach_at")
    rows = session.execute(
        select(r.contact_id, reach_at, Company.size_band, Company.industry)
        .join(Contact, (Contact.id == r.contact_id) & (Contact.workspace_id == ws))
        .outerjoin(Company, (Company.id == Contact.company_id) & (Company.workspace_id == ws))
        .where(r.workspace_id == ws, r.source_kind == "segment", r.outbox_id.is_not(None))
        .group_by(r.contact_id, Company.size_band, Company.industry)
        .execution_options(yield_per=10_000)
    )
    return {
        int(row.contact_id): _Reached(clock.as_utc(row.reach_at), _stratum(row[2], row[3]))
        for row in rows
    }


def index_dates(reached: dict[int, _Reached]) -> dict[Stratum, datetime]:
    """Per stratum the lower median first reach: where comparison windows start."""
    starts: dict[Stratum, list[datetime]] = defaultdict(list)
    for item in reached.values():
        starts[item.stratum].append(item.start)
    return {s: sorted(v)[(len(v) - 1) // 2] for s, v in starts.items()}


def compute(session: Session, params: Params, *, as_of: datetime | None = None) -> dict[str, Any]:
    """The uplift as a JSON-ready document (see the module docstring for the definition)."""
    params.check()
    ws = workspace_of(session)
    as_of = as_of or clock.utcnow()
    window = timedelta(days=params.window_days)
    snapshot = _reached(session, ws)
    state = _State(reached={c: r for c, r in snapshot.items() if r.start < as_of})
    starts = index_dates(state.reached)

    # Not reached: counted per stratum when they existed at the index date.
    contacts = session.execute(
        select(Contact.id, Contact.created_at, Company.size_band, Company.industry)
        .outerjoin(Company, (Company.id == Contact.company_id) & (Company.workspace_id == ws))
        .where(Contact.workspace_id == ws)
        .execution_options(yield_per=10_000)
    )
    for cid, created_at, size_band, industry in contacts:
        if int(cid) in snapshot:  # reached, or due to be: never a comparison contact
            continue
        stratum = _stratum(size_band, industry)
        start = starts.get(stratum)
        if start is not None and clock.as_utc(created_at) <= start:
            state.control_counts[stratum] += 1

    # The first reach, not the first index date: a stratum's median can be days after the
    # earliest reach in it, and that contact's window starts at its own reach.
    earliest = min((r.start for r in state.reached.values()), default=None)
    if earliest is not None:
        # Each event brings its contact's stratum, so comparison contacts need no memory
        # beyond those who bought something.
        events = session.execute(
            select(
                Event.contact_id,
                Event.occurred_at,
                Event.properties,
                Contact.created_at,
                Company.size_band,
                Company.industry,
            )
            .join(Contact, (Contact.id == Event.contact_id) & (Contact.workspace_id == ws))
            .outerjoin(Company, (Company.id == Contact.company_id) & (Company.workspace_id == ws))
            .where(
                Event.workspace_id == ws,
                Event.name == params.event,
                Event.occurred_at >= earliest,
                Event.occurred_at < as_of,
                Event.type != "email",
            )
            .execution_options(yield_per=10_000)
        )
        for contact_id, occurred_at, properties, created_at, size_band, industry in events:
            cid = int(contact_id)
            at = clock.as_utc(occurred_at)
            reached = state.reached.get(cid)
            if reached is not None:
                if reached.start <= at < min(reached.start + window, as_of):
                    reached.revenue += revenue_of(properties, params.revenue_property)
                continue
            if cid in snapshot:
                continue
            stratum = _stratum(size_band, industry)
            start = starts.get(stratum)
            if start is None or clock.as_utc(created_at) > start:
                continue
            if start <= at < min(start + window, as_of):
                control = state.controls.setdefault(cid, _Control(stratum))
                control.revenue += revenue_of(properties, params.revenue_property)
    return _estimate(params, as_of, state, starts)


def _estimate(
    params: Params, as_of: datetime, state: _State, starts: dict[Stratum, datetime]
) -> dict[str, Any]:
    treated: dict[Stratum, _Group] = defaultdict(_Group)
    for item in state.reached.values():
        treated[item.stratum].add(item.revenue)
    compared: dict[Stratum, _Group] = defaultdict(_Group)
    for control in state.controls.values():  # those with revenue in their window
        compared[control.stratum].add(control.revenue)
    for stratum, count in state.control_counts.items():  # the rest add 0 each
        compared[stratum].n = count

    matched = sorted(s for s in treated if state.control_counts.get(s))
    unmatched = sum(treated[s].n for s in treated if not state.control_counts.get(s))
    n_reached = sum(treated[s].n for s in matched)
    strata = []
    uplift = reached_mean = compared_mean = variance = 0.0
    for s in matched:
        t, c = treated[s], compared[s]
        w = t.n / n_reached
        uplift += w * (t.mean - c.mean)
        reached_mean += w * t.mean
        compared_mean += w * c.mean
        variance += w * w * (t.variance_of_mean() + c.variance_of_mean())
        strata.append(
            {
                "size_band": s[0],
                "industry": s[1],
                "index_date": starts[s].isoformat(),
                "reached": t.n,
                "comparison": c.n,
                "reached_revenue_per_contact": round(t.mean, 6),
                "comparison_revenue_per_contact": round(c.mean, 6),
                "difference": round(t.mean - c.mean, 6),
            }
        )
    se = math.sqrt(variance)
    has = bool(matched)
    return {
        "event": params.event,
        "revenue_property": params.revenue_property,
        "window_days": params.window_days,
        "as_of": as_of.isoformat(),
        "reached": n_reached,
        "comparison": sum(compared[s].n for s in matched),
        "unmatched_reached": unmatched,
        "reached_revenue_per_contact": round(reached_mean, 6) if has else None,
        "comparison_revenue_per_contact": round(compared_mean, 6) if has else None,
        "uplift": round(uplift, 6) if has else None,
        "uplift_ci95": [round(uplift - Z95 * se, 6), round(uplift + Z95 * se, 6)] if has else None,
        "relative_uplift": round(uplift / compared_mean, 6) if has and compared_mean else None,
        "strata": strata,
    }


def refresh(session: Session, params: Params, *, as_of: datetime | None = None) -> dict[str, Any]:
    """Compute and store (one row per parameter set); returns the stored document."""
    result = compute(session, params, as_of=as_of)
    ws = workspace_of(session)
    postgres = session.get_bind().dialect.name == "postgresql"
    insert_fn: Any = postgresql.insert if postgres else sqlite.insert
    stmt = insert_fn(AnalyticsUplift.__table__).values(
        workspace_id=ws,
        event=params.event,
        revenue_property=params.revenue_property,
        window_days=params.window_days,
        computed_at=clock.utcnow(),
        result=result,
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["workspace_id", "event", "revenue_property", "window_days"],
            set_={"computed_at": stmt.excluded.computed_at, "result": stmt.excluded.result},
        )
    )
    return stored(session, params)


def stored(session: Session, params: Params) -> dict[str, Any]:
    """The last stored result for these parameters, with when it was computed."""
    params.check()
    row = session.execute(
        select(AnalyticsUplift).where(
            AnalyticsUplift.event == params.event,
            AnalyticsUplift.revenue_property == params.revenue_property,
            AnalyticsUplift.window_days == params.window_days,
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(
            f"no uplift computed yet for event {params.event!r}, property "
            f"{params.revenue_property!r}, {params.window_days} days: run "
            "'postwise report uplift --refresh' or POST /api/analytics/uplift",
            field="event",
        )
    return {"computed_at": clock.as_utc(row.computed_at).isoformat(), **row.result}


def known_params(session: Session) -> list[Params]:
    """What the daily job refreshes: every stored parameter set, and each campaign goal
    event (with its revenue property) at the default window."""
    from postwise.storage.tables import Campaign

    found = {
        (r.event, r.revenue_property, r.window_days)
        for r in session.execute(
            select(
                AnalyticsUplift.event, AnalyticsUplift.revenue_property, AnalyticsUplift.window_days
            )
        )
    }
    for goal, prop in session.execute(
        select(Campaign.goal_event, Campaign.revenue_property).where(
            Campaign.goal_event.is_not(None)
        )
    ):
        found.add((goal, prop or DEFAULT_PROPERTY, DEFAULT_WINDOW_DAYS))
    return [Params(e, p, w) for e, p, w in sorted(found)]
