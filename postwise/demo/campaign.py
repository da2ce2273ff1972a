"""A sent campaign to a segment in the demo, so the first report a user opens has data.

The segment, the template and the campaign go through their real actions (validation,
membership refresh). What delivery and tracking would have written three days ago is
written as history: one sent outbox row and one audience-snapshot row per subscribed
member, then the email events a real send leaves (sent, delivered, bounces, opens and
clicks of people and of machines, unsubscribes, complaints) and purchases after some
clicks, drawn from a seeded random generator, so a demo is the same every time. The
attribution job and the analytics rollup then run over them as they would in production,
so the report, the hygiene table and the engagement scores come from the real code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from postwise.analytics import engagement, rollup
from postwise.campaigns import attribution
from postwise.campaigns.store import create_campaign
from postwise.messages.store import TemplateInput, create_template
from postwise.segments import membership
from postwise.segments.store import SegmentInput, create_segment
from postwise.storage.tables import (
    CampaignRecipient,
    Contact,
    Event,
    OutboxMessage,
    SegmentMembership,
)

CAMPAIGN_KEY = "q4-decision-makers"
SEGMENT_NAME = "Decision makers"
DECISION_MAKERS = {
    "field": "contact.seniority",
    "op": "in",
    "value": ["director", "vp", "c_level", "owner"],
}
SENT_DAYS_AGO = 3
SENDER = ("Northwind", "news@northwind-demo.example", "northwind-demo.example")
LINK = "https://northwind-demo.example/q4"

# Shares among recipients (hard and soft bounces) or among those delivered (the rest).
HARD_BOUNCE, SOFT_BOUNCE = 0.02, 0.01
APPLE_PROXY, HUMAN_OPEN, CLICK_OF_OPENERS = 0.22, 0.38, 0.35
SCANNER_CLICK, UNSUBSCRIBE, COMPLAINT, PURCHASE_OF_CLICKERS = 0.04, 0.015, 0.004, 0.25


@dataclass(frozen=True)
class DemoCampaign:
    campaign_id: int
    segment_id: int
    recipients: int
    events: int
    conversions: int


def write_campaign(
    session: Session, workspace_id: int, *, now: datetime, seed: int
) -> DemoCampaign:
    """Segment, template, campaign and its history; rolled up before this returns."""
    rng = random.Random(f"demo-campaign-{seed}")
    segment = create_segment(
        session,
        SegmentInput(SEGMENT_NAME, DECISION_MAKERS, "Directors, VPs, C-level and owners"),
        refresh=False,
    )
    membership.refresh(session, segment.id)
    template = create_template(
        session,
        TemplateInput(
            name="Q4 product update",
            subject="{{ contact.first_name | default('Hello') }}, what's new for Q4",
            html=(
                "<html><body><p>Hi {{ contact.first_name | default('there') }},</p>"
                "<p>Three things we shipped this quarter.</p>"
                f'<p><a href="{LINK}">See what is new</a></p></body></html>'
            ),
            text=f"Three things we shipped this quarter: {LINK}",
        ),
    )
    from_name, from_address, domain = SENDER
    campaign = create_campaign(
        session,
        {
            "key": CAMPAIGN_KEY,
            "name": "Q4 update to decision makers",
            "template_id": template.id,
            "sending_domain": domain,
            "from_name": from_name,
            "from_address": from_address,
            "audience": {"segment_ids": [segment.id]},
            "goal_event": "Order Completed",
            "revenue_property": "revenue",
            "attribution_window_hours": 168,
        },
    )
    sent_at = (now - timedelta(days=SENT_DAYS_AGO)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    people = session.execute(
        select(Contact.id, Contact.email, Contact.email_domain, Contact.company_id)
        .join(SegmentMembership, SegmentMembership.contact_id == Contact.id)
        .where(
            SegmentMembership.segment_id == segment.id,
            SegmentMembership.exited_at.is_(None),
            Contact.status == "subscribed",
        )
        .order_by(Contact.id)
    ).all()
    events: list[dict[str, Any]] = []
    for index, person in enumerate(people):
        at = sent_at + timedelta(seconds=index * 2)  # paced over a few minutes
        outbox = OutboxMessage(
            contact_id=person.id,
            email=person.email,
            kind="marketing",
            template_id=template.id,
            campaign_key=CAMPAIGN_KEY,
            status="sent",
            attempts=1,
            transport="demo",
            message_id=f"<{CAMPAIGN_KEY}.{person.id}@{domain}>",
            created_at=sent_at,
            first_attempt_at=at,
            sent_at=at,
            next_attempt_at=at,
        )
        session.add(outbox)
        session.flush()
        session.add(
            CampaignRecipient(
                campaign_id=campaign.id,
                contact_id=person.id,
                email=person.email,
                domain=person.email_domain,
                company_id=person.company_id,
                source_kind="segment",
                source_id=segment.id,
                phase="all",
                outbox_id=outbox.id,
                scheduled_for=at,
                created_at=sent_at,
            )
        )
        events += _history(rng, person.id, outbox.id, person.email, at, now)
    for start in range(0, len(events), 2000):
        session.execute(
            insert(Event),
            [{**e, "workspace_id": workspace_id} for e in events[start : start + 2000]],
        )
    _statuses(session, events)
    campaign.status = "sent"
    campaign.recipient_count = len(people)
    campaign.started_at = sent_at
    campaign.finished_at = sent_at + timedelta(seconds=2 * len(people))
    campaign.created_at = sent_at - timedelta(days=1)
    session.flush()
    conversions = attribution.attribute(session, now=now)
    _roll_up(session)
    return DemoCampaign(campaign.id, segment.id, len(people), len(events), conversions)


OUTCOME_STATUS = (  # later outcomes win, as the bounce and unsubscribe actions would leave it
    ("Unsubscribed", "unsubscribed"),
    ("Email Complained", "complained"),
)


def _statuses(session: Session, events: list[dict[str, Any]]) -> None:
    """Hard bounces, complaints and unsubscribes leave the contact's status as the real
    actions would, so the demo's people and its report agree."""
    status: dict[int, str] = {}
    for e in events:
        if e["name"] == "Email Bounced" and e["properties"].get("hard"):
            status[e["contact_id"]] = "bounced"
        for name, value in OUTCOME_STATUS:
            if e["name"] == name:
                status[e["contact_id"]] = value
    for value in sorted(set(status.values())):
        ids = sorted(c for c, v in status.items() if v == value)
        session.execute(update(Contact).where(Contact.id.in_(ids)).values(status=value))


def _roll_up(session: Session) -> None:
    """Fold every event of the new workspace now (nobody else writes to it yet, so the
    safe horizon has nothing to wait for) and score the people it touched."""
    while True:
        result = rollup.roll_up(session, lag=timedelta(0))
        if result.contacts:
            engagement.rescore(session, sorted(result.contacts))
        if result.events == 0:
            break
    rollup.fold_attributions(session, lag=timedelta(0))


def _event(
    name: str, contact_id: int, outbox_id: int, email: str, at: datetime, **props: Any
) -> dict[str, Any]:
    """An email event carries its message (outbox id, campaign key) as the pipeline's do;
    a purchase is the shop's ``track`` call and knows nothing of mail."""
    mail = name.startswith("Email") or name == "Unsubscribed"
    about = {"outbox_id": outbox_id, "campaign_key": CAMPAIGN_KEY, "email": email} if mail else {}
    return {
        "contact_id": contact_id,
        "type": "email" if mail else "track",
        "name": name,
        "properties": {**about, **props},
        "context": {},
        "occurred_at": at,
        "received_at": at + timedelta(seconds=1),
    }


def _history(
    rng: random.Random, contact_id: int, outbox_id: int, email: str, sent: datetime, now: datetime
) -> list[dict[str, Any]]:
    """What one recipient's message went through, as the pipeline and tracker record it."""
    latest = now - timedelta(minutes=5)

    def after(start: datetime, low_minutes: float, high_minutes: float) -> datetime:
        return min(start + timedelta(minutes=rng.uniform(low_minutes, high_minutes)), latest)

    def ev(name: str, at: datetime, **props: Any) -> dict[str, Any]:
        return _event(name, contact_id, outbox_id, email, at, **props)

    out = [ev("Email Sent", sent, transport="demo")]
    roll = rng.random()
    if roll < HARD_BOUNCE:
        reply = "550 5.1.1 The email account that you tried to reach does not exist"
        bounce = ev(
            "Email Bounced", after(sent, 1, 20), hard=True, reason="user_unknown", reply=reply
        )
        return [*out, bounce]
    if roll < HARD_BOUNCE + SOFT_BOUNCE:
        reply = "452 4.2.2 The email account that you tried to reach is over quota"
        bounce = ev(
            "Email Bounced", after(sent, 5, 60), hard=False, reason="mailbox_full", reply=reply
        )
        return [*out, bounce]
    out.append(ev("Email Delivered", sent + timedelta(seconds=3), transport="demo"))
    if rng.random() < APPLE_PROXY:
        out.append(ev("Email Opened", after(sent, 1, 15), machine=True, machine_reason="apple_mpp"))
    if rng.random() < SCANNER_CLICK:
        scanned = sent + timedelta(seconds=4)
        reason = "click_right_after_send"
        out.append(ev("Email Clicked", scanned, url=LINK, machine=True, machine_reason=reason))
    if rng.random() < HUMAN_OPEN:
        first = after(sent, 20, 60 * 30)
        out.append(ev("Email Opened", first, machine=False))
        if rng.random() < 0.3:
            out.append(ev("Email Opened", after(first, 60, 60 * 20), machine=False))
        if rng.random() < CLICK_OF_OPENERS:
            click = after(first, 0.5, 5)
            out.append(ev("Email Clicked", click, url=LINK, machine=False))
            if rng.random() < PURCHASE_OF_CLICKERS:
                revenue = round(rng.uniform(200, 4000), 2)
                order = f"Q4-{outbox_id}"
                bought = after(click, 10, 600)
                item = {"product_id": "q4-upgrade", "name": "Q4 upgrade", "price": revenue,
                        "quantity": 1}  # fmt: skip
                out.append(ev("Order Completed", bought, order_id=order, total=revenue,
                              revenue=revenue, tax=0.0, currency="USD",
                              products=[item]))  # fmt: skip
        elif rng.random() < UNSUBSCRIBE / HUMAN_OPEN:
            out.append(ev("Unsubscribed", after(first, 1, 60)))
    if rng.random() < COMPLAINT:
        out.append(ev("Email Complained", after(sent, 60, 60 * 30), feedback_type="abuse"))
    return out
