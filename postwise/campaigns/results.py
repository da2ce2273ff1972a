"""A/B results read from the database, and the decision that sends the rest.

Per test arm: recipients (snapshot rows of the arm), distinct contacts with a human
open or click of this campaign (machine opens, e.g. Apple Mail Privacy Protection, are
left out), and attributed conversions and revenue (``campaign_attributions``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from postwise.campaigns import abtest, fanout, store
from postwise.core import clock
from postwise.core.settings import get_settings
from postwise.storage.tables import CampaignAttribution, CampaignRecipient, Event

OPENED, CLICKED = "Email Opened", "Email Clicked"


def human_engagement(event: Any = Event) -> Any:
    return func.coalesce(event.properties["machine"].as_boolean(), False).is_(False)


def _engaged(session: Session, campaign_id: int, key: str, name: str) -> dict[str, int]:
    r = CampaignRecipient
    rows = session.execute(
        select(r.variant, func.count(func.distinct(r.contact_id)))
        .join(
            Event,
            and_(Event.contact_id == r.contact_id, Event.workspace_id == r.workspace_id),
        )
        .where(
            r.campaign_id == campaign_id,
            r.phase == "test",
            Event.type == "email",
            Event.name == name,
            Event.properties["campaign_key"].as_string() == key,
            human_engagement(),
        )
        .group_by(r.variant)
    ).all()
    return {str(v): int(n) for v, n in rows}


def arms(session: Session, campaign_id: int, metric: str) -> list[abtest.Arm]:
    campaign = store.get_campaign(session, campaign_id)
    keys = [v.key for v in store.variants_of(session, campaign_id)]
    sizes = dict(
        session.execute(
            select(CampaignRecipient.variant, func.count())
            .where(CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.phase == "test")
            .group_by(CampaignRecipient.variant)
        ).all()
    )
    if metric in ("open_rate", "click_rate"):
        hits = _engaged(
            session, campaign_id, campaign.key, OPENED if metric == "open_rate" else CLICKED
        )
        return [abtest.Arm(k, int(sizes.get(k, 0)), hits.get(k, 0)) for k in keys]
    per_contact: dict[str, dict[int, float]] = defaultdict(dict)
    for variant, contact, revenue in session.execute(
        select(
            CampaignRecipient.variant,
            CampaignRecipient.contact_id,
            func.sum(CampaignAttribution.revenue),
        )
        .join(
            CampaignAttribution,
            and_(
                CampaignAttribution.campaign_id == CampaignRecipient.campaign_id,
                CampaignAttribution.contact_id == CampaignRecipient.contact_id,
            ),
        )
        .where(CampaignRecipient.campaign_id == campaign_id, CampaignRecipient.phase == "test")
        .group_by(CampaignRecipient.variant, CampaignRecipient.contact_id)
    ):
        per_contact[str(variant)][int(contact)] = float(revenue or 0.0)
    out = []
    for k in keys:
        values = per_contact.get(k, {}).values()
        out.append(
            abtest.Arm(
                k,
                int(sizes.get(k, 0)),
                successes=len(per_contact.get(k, {})),
                revenue_sum=sum(values),
                revenue_sq_sum=sum(v * v for v in values),
            )
        )
    return out


def current(session: Session, campaign_id: int) -> dict[str, Any]:
    """The test as it stands (or as decided): each arm's value and interval."""
    campaign = store.get_campaign(session, campaign_id)
    if not campaign.ab:
        return {"ab": False}
    method = campaign.ab.get("method") or get_settings().campaign_ab_method
    decision = abtest.decide(
        arms(session, campaign_id, campaign.ab["metric"]), campaign.ab["metric"], method
    )
    return {
        "ab": True,
        "decided": campaign.ab_result,
        "winner_variant": campaign.winner_variant,
        "now": decision.as_dict(),
    }


def decide_and_send(session: Session, campaign_id: int) -> dict[str, Any] | None:
    """End of the test: decide; queue the rest with the winner or the fallback."""
    campaign = store.get_campaign(session, campaign_id, lock=True)
    if not campaign.ab or campaign.ab_result is not None:
        return campaign.ab_result
    if campaign.status not in ("sending", "sent"):
        return None  # paused or cancelled: resume re-runs the fan-out, which queues a new decision
    metric = campaign.ab["metric"]
    method = campaign.ab.get("method") or get_settings().campaign_ab_method
    keys = [v.key for v in store.variants_of(session, campaign_id)]
    decision = abtest.decide(arms(session, campaign_id, metric), metric, method)
    chosen = abtest.with_fallback(decision, campaign.ab.get("fallback", "send_a"), keys[0])
    queued = fanout.queue_rest(session, campaign, chosen) if chosen is not None else 0
    campaign.winner_variant = chosen
    campaign.ab_result = {
        **decision.as_dict(),
        "sent_to_rest": chosen,
        "rest_queued": queued,
        "decided_at": clock.utcnow().isoformat(),
    }
    if queued:
        from postwise.delivery.service import kick

        kick(session)
    session.flush()
    return campaign.ab_result
