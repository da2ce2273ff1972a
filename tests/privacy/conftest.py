"""A workspace pair and a person with data in every table that can hold personal data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from postwise.contacts import actions, lists
from postwise.core import clock
from postwise.privacy.hashing import AddressHasher
from postwise.segments import membership, store
from postwise.storage.database import Database
from postwise.storage.tables import (
    AnalyticsFirstSeen,
    Base,
    BounceRecord,
    Campaign,
    CampaignAttribution,
    CampaignRecipient,
    CapturedMessage,
    ContactEngagement,
    Enrollment,
    Event,
    Identity,
    InboundMessage,
    Job,
    OutboxMessage,
    Suppression,
    SuppressionEvent,
    Workflow,
)
from postwise.workspaces.actions import NewWorkspace, create_workspace

ADA = "Ada.Lovelace@analytical.example"
ADA_OLD = "ada.countess@analytical.example"
FIRST, LAST, PHONE = "Augusta", "Byronesque", "+442079460958"
NEEDLES = (ADA, ADA_OLD, "Ada.Lovelace", "ada.countess", FIRST, LAST, PHONE)


@pytest.fixture
def hasher() -> AddressHasher:
    return AddressHasher.from_secret(b"test secret, not the installation's")


@pytest.fixture
def workspaces(db: Database) -> tuple[NewWorkspace, NewWorkspace]:
    with db.system() as session:
        return create_workspace(session, "Acme"), create_workspace(session, "Globex")


@dataclass(frozen=True)
class Seeded:
    ada: int
    bob: int
    other_workspace_ada: int


def seed(db: Database, ws: int, other_ws: int) -> Seeded:
    """Ada with history in every place personal data can live; Bob as a bystander."""
    with db.tenant(ws) as s:
        ada, _ = actions.upsert_contact(
            s,
            {
                "email": ADA_OLD,
                "first_name": FIRST,
                "last_name": LAST,
                "phone": PHONE,
                "job_title": "Analyst",
                "country": "GB",
            },
            source="api",
        )
        actions.update_contact(s, ada.id, {"email": ADA}, source="api")
        bob, _ = actions.upsert_contact(
            s, {"email": "bob@analytical.example", "first_name": "Bob"}, source="api"
        )
        news = lists.create_list(s, {"name": "News"})
        events_list = lists.create_list(s, {"name": "Events", "double_opt_in": True})
        consent = lists.ConsentInput("form", ip="198.51.100.7", text=f"Yes, {FIRST}, mail me")
        lists.subscribe(s, news.id, ada.id, consent)
        lists.unsubscribe(s, news.id, ada.id, source="form")
        lists.subscribe(s, news.id, ada.id, consent)
        lists.subscribe(s, events_list.id, ada.id, consent)
        lists.subscribe(s, news.id, bob.id, lists.ConsentInput("import"))
        s.add_all(
            [
                Event(
                    contact_id=ada.id,
                    anonymous_id="anon-ada",
                    type="track",
                    name="Viewed pricing",
                    properties={"plan": "pro", "name": f"{FIRST} {LAST}"},
                    context={"ip": "198.51.100.7"},
                ),
                Event(
                    contact_id=None,
                    anonymous_id="anon-ada",
                    type="page",
                    name="Home",
                    properties={"referrer": "search", "visitor": LAST},
                ),
                Event(
                    contact_id=None,
                    anonymous_id="anon-form",
                    type="track",
                    name="Form submitted",
                    properties={"email": ADA, "phone": PHONE, "first": FIRST},
                ),
                Identity(anonymous_id="anon-ada", contact_id=ada.id, source="identify"),
                Event(
                    contact_id=bob.id,
                    anonymous_id="anon-bob",
                    type="track",
                    name="Invited colleague",
                    properties={"invitee": ADA.lower(), "note": f"invited {ADA}"},
                ),
            ]
        )
        s.add(
            OutboxMessage(
                contact_id=ada.id,
                email=ADA,
                kind="transactional",
                data={"first_name": FIRST},
                raw=f"To: {FIRST} {LAST} <{ADA}>\r\nSubject: Receipt\r\n\r\nHi\r\n".encode(),
                mail_from="bounces@acme.example",
                status="sent",
                last_reply="250 2.0.0 Ok",
            )
        )
        s.add(Suppression(kind="address", value=ADA.lower(), reason="unsubscribed"))
        s.add(Suppression(kind="domain", value="spam.example", reason="manual"))
        s.add(
            BounceRecord(
                contact_id=ada.id,
                email=ADA.lower(),
                domain=ADA.lower().rsplit("@", 1)[1],
                source="smtp",
                kind="bounce",
                reason="mailboxfull",
                hard=False,
                diagnostic=f"552 {ADA}: mailbox full",
                verdict="soft_counted",
            )
        )
        s.add(
            SuppressionEvent(
                action="lifted",
                entry_kind="address",
                value=ADA.lower(),
                reason="bounced",
                actor="cli",
            )
        )
        british = store.create_segment(
            s,
            store.SegmentInput("British", {"field": "contact.country", "op": "eq", "value": "GB"}),
            refresh=False,
        )
        membership.refresh(s, british.id)  # Ada's stay, and her segment.entered event
        launch = Campaign(key="launch", name="Launch")
        welcome = Workflow(key="welcome", name="Welcome")
        s.add_all([launch, welcome])
        s.flush()
        now = clock.utcnow()
        s.add_all(
            [
                CampaignRecipient(
                    campaign_id=launch.id,
                    contact_id=ada.id,
                    email=ADA.lower(),
                    domain=ADA.lower().rsplit("@", 1)[1],
                    source_kind="segment",
                    source_id=british.id,
                ),
                CampaignAttribution(
                    campaign_id=launch.id,
                    campaign_key="launch",
                    contact_id=ada.id,
                    event_id=1,
                    goal_event="Order Completed",
                    touch="click",
                    touch_event_id=1,
                    touch_at=now,
                    converted_at=now,
                    revenue=120.0,
                ),
                Enrollment(
                    workflow_id=welcome.id,
                    version=1,
                    contact_id=ada.id,
                    state={"data": {"first_name": FIRST}},
                ),
                ContactEngagement(contact_id=ada.id, score=3.5),
                AnalyticsFirstSeen(
                    campaign_key="launch",
                    contact_id=ada.id,
                    kind="open_human",
                    event_id=1,
                    seen_at=now,
                ),
            ]
        )
        seeded_ada, seeded_bob = ada.id, bob.id
    with db.system() as s:
        s.add(
            Job(
                task="send_welcome",
                payload={"to": ADA, "name": FIRST},
                workspace_id=ws,
                status="done",
            )
        )
        s.add(Job(task="send_welcome", payload={"to": "bob@analytical.example"}, workspace_id=ws))
        s.add(
            CapturedMessage(
                workspace_id=ws,
                mail_from="news@acme.example",
                rcpt_to=[ADA],
                subject=f"Welcome, {FIRST}",
                raw=f"To: {FIRST} {LAST} <{ADA}>\r\nSubject: Welcome\r\n\r\nHi\r\n".encode(),
            )
        )
        s.add(
            InboundMessage(
                workspace_id=ws,
                source="smtp",
                kind="bounce",
                addresses=[ADA.lower()],
                raw=f"Final-Recipient: rfc822; {ADA}\r\n".encode(),
            )
        )
    with db.tenant(other_ws) as s:
        twin, _ = actions.upsert_contact(s, {"email": ADA, "first_name": FIRST}, source="api")
        twin_id = twin.id
    return Seeded(seeded_ada, seeded_bob, twin_id)


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def find_anywhere(db: Database, workspace_id: int, needles: tuple[str, ...]) -> list[str]:
    """Every table.column in the workspace (and unowned rows) holding any needle, any case."""
    found: list[str] = []
    lowered = [n.lower() for n in needles]
    with db.system() as s:
        for table in Base.metadata.sorted_tables:
            stmt = select(table)
            if "workspace_id" in table.columns:
                stmt = stmt.where(
                    (table.c.workspace_id == workspace_id) | table.c.workspace_id.is_(None)
                )
            for row in s.execute(stmt).mappings():
                for column, value in row.items():
                    text = text_of(value).lower()
                    found += [
                        f"{table.name}.{column}: {needle!r}" for needle in lowered if needle in text
                    ]
    return found
