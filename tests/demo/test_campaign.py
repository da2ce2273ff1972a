"""The demo holds a campaign sent to a segment, and its report is populated from the real
rollup: every figure equals a count of the stored events, people and machines apart."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from postwise.analytics import report, uplift
from postwise.campaigns import store
from postwise.demo.campaign import CAMPAIGN_KEY, SEGMENT_NAME
from postwise.demo.loader import DemoResult, load_demo
from postwise.segments import membership
from postwise.storage.database import Database
from postwise.storage.tables import (
    CampaignAttribution,
    CampaignRecipient,
    Contact,
    Event,
    OutboxMessage,
    Segment,
)


@pytest.fixture
def demo(db: Database) -> DemoResult:
    return load_demo(db, seed=3, contacts=300, companies=30)


def test_the_demo_campaign_went_to_a_segment_and_its_report_matches_its_events(
    db: Database, demo: DemoResult
) -> None:
    with db.tenant(demo.workspace_id) as s:
        campaign = store.get_by_key(s, CAMPAIGN_KEY)
        assert campaign is not None and campaign.status == "sent"
        segment = s.scalars(select(Segment).where(Segment.name == SEGMENT_NAME)).one()
        assert campaign.audience["sources"] == [{"segment": segment.id}]
        recipients = list(s.scalars(select(CampaignRecipient)))
        members = set(membership.current_members(s, segment.id))
        assert len(recipients) == campaign.recipient_count == demo.counts["campaign_recipients"]
        assert len(recipients) >= 20
        assert {r.contact_id for r in recipients} <= members
        assert {(r.source_kind, r.source_id) for r in recipients} == {("segment", segment.id)}
        outbox = {o.id: o for o in s.scalars(select(OutboxMessage))}
        assert {r.outbox_id for r in recipients} == set(outbox)
        assert {o.status for o in outbox.values()} == {"sent"}

        mail = [
            e
            for e in s.scalars(select(Event).where(Event.type == "email"))
            if e.properties.get("campaign_key") == CAMPAIGN_KEY
        ]
        seen: Counter[str] = Counter()
        uniques: dict[str, set[int]] = {}
        for e in mail:
            side = "machine" if e.properties.get("machine") else "human"
            kind = {"Email Opened": "opens", "Email Clicked": "clicks"}.get(e.name)
            if kind:
                seen[f"{kind}_{side}"] += 1
                uniques.setdefault(f"unique_{kind}_{side}", set()).add(int(e.contact_id or 0))
            elif e.name == "Email Bounced":
                seen["bounced_hard" if e.properties.get("hard") else "bounced_soft"] += 1
            else:
                seen[e.name] += 1
        credits = list(s.scalars(select(CampaignAttribution)))
        result = report.campaign_report(s, campaign.id)
        totals = result.totals
        assert totals["sent"] == seen["Email Sent"] == len(recipients)
        assert totals["delivered"] == seen["Email Delivered"]
        for name in ("opens_human", "opens_machine", "clicks_human", "clicks_machine"):
            assert totals[name] == seen[name] > 0, name
            assert totals[f"unique_{name}"] == len(uniques[f"unique_{name}"]), name
        assert totals["bounced_hard"] + totals["bounced_soft"] > 0
        assert totals["bounced_hard"] == seen["bounced_hard"]
        assert totals["unsubscribes"] == seen["Unsubscribed"]
        assert totals["complaints"] == seen["Email Complained"]
        assert totals["conversions"] == len(credits) > 0
        assert totals["revenue"] == pytest.approx(sum(c.revenue or 0 for c in credits))
        assert len(result.hourly) > 10  # a series to chart
        assert result.breakdowns["segment"][0].id == str(segment.id)
        lift = uplift.compute(s, uplift.Params())  # what the daily job will store
        assert lift["reached"] + lift["unmatched_reached"] == len(recipients)
        assert lift["comparison"] > 0 and lift["uplift"] is not None
        hygiene = report.hygiene(s, "segment")
        assert [(h["name"], h["sent"]) for h in hygiene] == [(SEGMENT_NAME, len(recipients))]
        bounced = {e.contact_id for e in mail if e.name == "Email Bounced" and e.properties["hard"]}
        statuses = dict(s.execute(select(Contact.id, Contact.status)).all())
        assert bounced and {statuses[c] for c in bounced} == {"bounced"}


def test_the_demo_campaign_is_the_same_every_time(db: Database, demo: DemoResult) -> None:
    again = load_demo(db, seed=3, contacts=300, companies=30)
    figures = []
    for ws in (demo.workspace_id, again.workspace_id):
        with db.tenant(ws) as s:
            campaign = store.get_by_key(s, CAMPAIGN_KEY)
            assert campaign is not None
            totals = report.campaign_report(s, campaign.id).totals
            figures.append({k: v for k, v in totals.items() if k != "revenue"})
    assert figures[0] == figures[1]
