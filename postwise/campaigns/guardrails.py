"""Guardrails: a campaign that draws complaints or hard bounces pauses itself.

Judged on every bounce or complaint record of the campaign (bounce intake calls
``evaluate``), once the campaign has handed over ``min_sample`` messages: a complaint
rate above ``complaint_rate`` (0.3%) or a hard-bounce rate above ``hard_bounce_rate``
(5%) pauses it (its unsent messages are held) and raises a ``campaign_guardrail``
alert in the bounce alerts (``GET /api/bounces/alerts``), which says what was seen and
what to do. A person resumes it after looking; the guardrail trips again only on new
evidence (it never re-pauses a campaign that is not sending).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postwise.core.settings import get_settings
from postwise.delivery.outbox import Status
from postwise.storage.tables import BounceAlert, BounceRecord, Campaign, OutboxMessage

ALERT_KIND = "campaign_guardrail"


@dataclass(frozen=True)
class Verdict:
    attempted: int
    hard_bounces: int
    complaints: int
    tripped: str | None  # complaint_rate | hard_bounce_rate | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "hard_bounces": self.hard_bounces,
            "complaints": self.complaints,
            "tripped": self.tripped,
        }


def thresholds(campaign: Campaign) -> dict[str, float]:
    settings = get_settings()
    own = campaign.guardrails or {}
    return {
        "min_sample": float(own.get("min_sample", settings.campaign_guardrail_min_sample)),
        "complaint_rate": float(
            own.get("complaint_rate", settings.campaign_guardrail_complaint_rate)
        ),
        "hard_bounce_rate": float(
            own.get("hard_bounce_rate", settings.campaign_guardrail_hard_bounce_rate)
        ),
    }


def measure(session: Session, campaign: Campaign) -> Verdict:
    limits = thresholds(campaign)
    attempted = int(
        session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.workspace_id == campaign.workspace_id,
                OutboxMessage.campaign_key == campaign.key,
                OutboxMessage.status.in_((Status.SENT.value, Status.BOUNCED.value)),
            )
        )
        or 0
    )
    hard, complaints = session.execute(
        select(
            func.count().filter(BounceRecord.kind == "bounce", BounceRecord.hard.is_(True)),
            func.count().filter(BounceRecord.kind == "complaint"),
        ).where(
            BounceRecord.workspace_id == campaign.workspace_id,
            BounceRecord.campaign_key == campaign.key,
        )
    ).one()
    tripped = None
    if attempted >= limits["min_sample"]:
        if complaints / attempted > limits["complaint_rate"]:
            tripped = "complaint_rate"
        elif hard / attempted > limits["hard_bounce_rate"]:
            tripped = "hard_bounce_rate"
    return Verdict(attempted, int(hard), int(complaints), tripped)


def evaluate(session: Session, campaign_key: str) -> Verdict | None:
    """Pause ``campaign_key`` (this session's workspace) if it crossed a limit."""
    from postwise.campaigns import lifecycle

    campaign = session.scalar(select(Campaign).where(Campaign.key == campaign_key))
    if campaign is None or campaign.status not in lifecycle.PAUSABLE:
        return None
    verdict = measure(session, campaign)
    if verdict.tripped is None:
        return verdict
    limits = thresholds(campaign)
    if verdict.tripped == "complaint_rate":
        rate, limit, what = (
            verdict.complaints / verdict.attempted,
            limits["complaint_rate"],
            ("complaints"),
        )
    else:
        rate, limit, what = (
            verdict.hard_bounces / verdict.attempted,
            limits["hard_bounce_rate"],
            "hard bounces",
        )
    reason = (
        f"guardrail: {what} {rate:.2%} of {verdict.attempted} messages, over the {limit:.2%} limit"
    )
    lifecycle.pause(session, campaign.id, reason=reason)
    session.add(
        BounceAlert(
            kind=ALERT_KIND,
            campaign_key=campaign.key,
            message=(
                f"Campaign {campaign.key!r} paused itself: {reason}. Check the audience's "
                "source and consent before resuming (postwise campaign resume)."
            ),
            evidence={**verdict.as_dict(), "limits": limits, "campaign_id": campaign.id},
        )
    )
    session.flush()
    return verdict
