"""Conversion attribution: a goal event credited to the last human touch before it.

A campaign with a ``goal_event`` claims those events of its recipients that happen
within ``attribution_window_hours`` after a human click on one of its messages (or a
human open, with ``credit: open``). Across campaigns the LAST qualifying touch before
the conversion wins (last-touch), so two campaigns never both claim one purchase.
Machine opens (privacy proxies, scanners) never count. Revenue is the event's numeric
``revenue_property``. Rows land in ``campaign_attributions``, one per conversion event
(unique), so the job can run again over the same span; analytics reads that table.

Runs as ``campaigns.attribute`` (per workspace, every few minutes while some campaign's
window is open) and from ``postwise campaign attribute``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from postwise.campaigns.results import CLICKED, OPENED, human_engagement
from postwise.core import clock
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, task
from postwise.storage.tables import Campaign, CampaignAttribution, CampaignRecipient, Event

ATTRIBUTE = "campaigns.attribute"
EVERY_SECONDS = 300
ACTIVE = ("sending", "sent", "paused")


def _revenue(properties: Any, name: str | None) -> float | None:
    if not name or not isinstance(properties, dict):
        return None
    value = properties.get(name)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def open_campaigns(session: Session, now: datetime) -> list[Campaign]:
    out = []
    for c in session.scalars(
        select(Campaign).where(Campaign.goal_event.is_not(None), Campaign.status.in_(ACTIVE))
    ):
        end = (c.finished_at or now) + timedelta(hours=c.attribution_window_hours)
        if c.started_at is not None and end >= now - timedelta(seconds=EVERY_SECONDS * 2):
            out.append(c)
    return out


def attribute(session: Session, *, now: datetime | None = None) -> int:
    """Credit every not yet credited goal event of the open campaigns; returns how many."""
    now = now or clock.utcnow()
    campaigns = open_campaigns(session, now)
    if not campaigns:
        return 0
    by_key = {c.key: c for c in campaigns}
    goals = {c.goal_event for c in campaigns if c.goal_event}
    since = min(c.started_at for c in campaigns if c.started_at is not None)
    longest = max(timedelta(hours=c.attribution_window_hours) for c in campaigns)
    credited = select(CampaignAttribution.event_id).where(CampaignAttribution.event_id == Event.id)
    conversions = session.execute(
        select(Event.id, Event.contact_id, Event.name, Event.properties, Event.occurred_at)
        .where(
            Event.name.in_(goals),
            Event.contact_id.is_not(None),
            Event.occurred_at >= since,
            Event.type != "email",
            ~credited.exists(),
        )
        .order_by(Event.id)
    ).all()
    added = 0
    for conv in conversions:
        touches = session.execute(
            select(Event.id, Event.name, Event.occurred_at, Event.properties)
            .where(
                Event.contact_id == conv.contact_id,
                Event.type == "email",
                or_(Event.name == CLICKED, Event.name == OPENED),
                Event.occurred_at <= conv.occurred_at,
                Event.occurred_at >= conv.occurred_at - longest,
                Event.properties["campaign_key"].as_string().in_(list(by_key)),
                human_engagement(),
            )
            .order_by(Event.occurred_at.desc(), Event.id.desc())
        ).all()
        for touch in touches:
            campaign = by_key.get(str((touch.properties or {}).get("campaign_key")))
            if campaign is None or campaign.goal_event != conv.name:
                continue
            if touch.name == OPENED and campaign.credit != "open":
                continue
            window = timedelta(hours=campaign.attribution_window_hours)
            if conv.occurred_at - touch.occurred_at > window:
                continue
            variant = session.scalar(
                select(CampaignRecipient.variant).where(
                    CampaignRecipient.campaign_id == campaign.id,
                    CampaignRecipient.contact_id == conv.contact_id,
                )
            )
            session.add(
                CampaignAttribution(
                    campaign_id=campaign.id,
                    campaign_key=campaign.key,
                    contact_id=conv.contact_id,
                    event_id=conv.id,
                    goal_event=conv.name,
                    touch="click" if touch.name == CLICKED else "open",
                    touch_event_id=touch.id,
                    touch_at=touch.occurred_at,
                    converted_at=conv.occurred_at,
                    variant=variant,
                    revenue=_revenue(conv.properties, campaign.revenue_property),
                )
            )
            added += 1
            break
    session.flush()
    return added


def summary(session: Session, campaign_id: int) -> dict[str, Any]:
    conversions, revenue = session.execute(
        select(func.count(), func.sum(CampaignAttribution.revenue)).where(
            CampaignAttribution.campaign_id == campaign_id
        )
    ).one()
    return {"conversions": int(conversions), "revenue": float(revenue or 0.0)}


def schedule_next(session: Session, workspace_id: int, seconds: float = EVERY_SECONDS) -> None:
    at = clock.utcnow() + timedelta(seconds=seconds)
    slot = int(at.timestamp()) // EVERY_SECONDS
    queue.enqueue(
        session,
        ATTRIBUTE,
        {},
        workspace_id=workspace_id,
        run_at=at,
        dedupe_key=f"{ATTRIBUTE}:{workspace_id}:{slot}",
    )


@task(ATTRIBUTE)
def attribute_job(ctx: JobContext) -> None:
    attribute(ctx.session)
    if ctx.workspace_id is not None and open_campaigns(ctx.session, clock.utcnow()):
        schedule_next(ctx.session, ctx.workspace_id)
