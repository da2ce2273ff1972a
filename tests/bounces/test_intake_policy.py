"""Suppression policy and filter-block detection, through ``intake.record_parsed``.

The reports are ``ParsedMessage`` values as the parser hands them over, tied to real
outbox rows by real VERP tokens; both databases (``db`` fixture).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from postwise.bounces import filterblock, intake, policy, records
from postwise.bounces.report import Kind, ParsedMessage, RecipientOutcome
from postwise.core import clock
from postwise.storage.database import Database
from postwise.storage.tables import (
    BounceAlert,
    BounceRecord,
    Contact,
    DomainBlock,
    Event,
    InboundMessage,
    ListMembership,
    OutboxMessage,
    Suppression,
    SuppressionEvent,
)
from tests.bounces.scenario import audience, clicked, context, hard, minutes_after, verp


def test_a_lone_unknown_user_at_a_free_mail_domain_is_suppressed(db: Database) -> None:
    people = audience(db, ["lost.person@gmail.com", "other@gmail.com"])
    ctx = context(db)
    email = "lost.person@gmail.com"
    result = intake.record_parsed(
        ctx,
        hard(email),
        raw=b"dsn",
        source="smtp",
        envelope=intake.Envelope("", (verp(people.outbox[email]),)),
    )
    assert result.workspace_id == people.workspace_id
    assert result.outbox_id == people.outbox[email]
    assert result.verdicts == [policy.SUPPRESSED]
    with db.tenant(people.workspace_id) as s:
        record = s.scalars(select(BounceRecord)).one()
        assert (record.email, record.domain, record.campaign_key) == (email, "gmail.com", "launch")
        assert record.contact_id == people.contacts[email]
        assert record.evidence["tied_by"] == "verp"
        entry = s.scalars(select(Suppression)).one()
        assert (entry.kind, entry.value, entry.reason) == ("address", email, "bounced")
        audit = s.scalars(select(SuppressionEvent)).one()
        assert (audit.action, audit.actor) == ("added", policy.ACTOR)
        assert audit.evidence["bounce_record_id"] == record.id
        assert audit.evidence["previous_status"] == "subscribed"
        assert s.get(Contact, people.contacts[email]).status == "bounced"  # type: ignore[union-attr]
        event = s.scalars(select(Event).where(Event.name == "Email Bounced")).one()
        assert event.contact_id == people.contacts[email]
        assert event.properties["outbox_id"] == people.outbox[email]
        assert event.properties["campaign_key"] == "launch"
        assert event.properties["hard"] is True and event.properties["status"] == "5.1.1"
        assert event.properties["reason"] == "userunknown"
        assert s.scalar(select(func.count()).select_from(DomainBlock)) == 0


def test_two_hundred_at_one_company_forty_percent_unknown_in_five_minutes(db: Database) -> None:
    """The B2B case: the company's gateway, not its people, refuses the campaign."""
    emails = [f"person{i:03d}@bigcorp.example" for i in range(200)]
    people = audience(db, emails)
    ctx = context(db)  # defaults: >= 10 and >= 20 % within 10 minutes; 30 days engagement
    start = clock.utcnow()
    bounced = emails[:80]
    clickers = bounced[50:60]  # opened last week and clicked, as humans
    for email in clickers:
        clicked(
            db,
            people.workspace_id,
            people.contacts[email],
            start - timedelta(days=6),
            machine=False,
        )
    scanned = bounced[0]  # only a link scanner ever "clicked": proves nothing
    clicked(
        db, people.workspace_id, people.contacts[scanned], start - timedelta(days=2), machine=True
    )

    verdicts = []
    for i, email in enumerate(bounced):
        result = intake.record_parsed(
            ctx,
            hard(email),
            raw=b"dsn",
            source="smtp",
            envelope=intake.Envelope("", (verp(people.outbox[email]),)),
            now=minutes_after(start, i * 5 / len(bounced)),
        )
        verdicts.extend(result.verdicts)

    with db.tenant(people.workspace_id) as s:
        # Nobody is suppressed, everybody is still subscribed to the list.
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0
        statuses = set(s.scalars(select(Contact.status)))
        assert statuses == {"subscribed"}
        members = set(s.scalars(select(ListMembership.status)))
        assert members == {"subscribed"}
        kept = list(s.scalars(select(BounceRecord.verdict)))
        assert kept == [policy.KEPT_FILTER_BLOCK] * 80
        # What was suppressed before the burst showed was lifted, and the lifting audited.
        added = s.scalars(select(SuppressionEvent).where(SuppressionEvent.action == "added")).all()
        lifted = s.scalars(
            select(SuppressionEvent).where(SuppressionEvent.action == "lifted")
        ).all()
        assert len(added) == 39  # until the 40th bounce (20 % of 200) showed the burst
        assert {e.value for e in added} == {e.value for e in lifted}
        assert all(e.actor == policy.ACTOR and "filter block" in e.note for e in lifted)
        # Clickers were kept for their engagement even before the burst was seen.
        for email in clickers:
            record = s.scalars(select(BounceRecord).where(BounceRecord.email == email)).one()
            assert "engagement" in record.evidence["signals"]
            assert email not in {e.value for e in added}
        # The domain is marked with the evidence, and slowed.
        block = s.scalars(select(DomainBlock)).one()
        assert (block.domain, block.status, block.campaign_key) == (
            "bigcorp.example",
            "active",
            "launch",
        )
        assert block.evidence["burst"]["hard_bounces"] >= 40
        assert block.evidence["burst"]["recipients"] == 200
        assert block.evidence["engaged"] == 10
        assert block.per_minute == 6.0 and block.slow_until is not None
        # One alert, saying what was seen and what to do.
        alert = s.scalars(select(BounceAlert)).one()
        assert alert.kind == "filter_block" and alert.domain == "bigcorp.example"
        for words in ("bigcorp.example", "hard bounces", "reputation", "allowlist", "slowed"):
            assert words in alert.message
        summary = records.summary_by_domain(s)
        assert summary[0].domain == "bigcorp.example" and summary[0].blocked
        assert summary[0].hard == 80 and summary[0].kept_filter_block == 80
    with db.system() as s:
        assert filterblock.paced_domains(s) == {"bigcorp.example": 6.0}
    # The segments' view: 80 bounces, once each.
    with db.tenant(people.workspace_id) as s:
        events = s.scalars(select(Event).where(Event.name == "Email Bounced")).all()
        assert len(events) == 80
        assert {e.properties["verdict"] for e in events} <= {"kept_filter_block", "suppressed"}


def test_a_small_share_of_a_big_company_is_not_a_burst(db: Database) -> None:
    emails = [f"p{i:03d}@hugecorp.example" for i in range(200)]
    people = audience(db, emails)
    ctx = context(db)
    start = clock.utcnow()
    for i, email in enumerate(emails[:12]):  # 12 of 200: 6 %, below the 20 % ratio
        intake.record_parsed(
            ctx,
            hard(email),
            raw=b"dsn",
            source="smtp",
            envelope=intake.Envelope("", (verp(people.outbox[email]),)),
            now=minutes_after(start, i * 0.2),
        )
    with db.tenant(people.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 12
        assert s.scalar(select(func.count()).select_from(DomainBlock)) == 0


def test_recent_human_engagement_keeps_a_lone_hard_bounce(db: Database) -> None:
    people = audience(db, ["reader@acme-corp.example", "scanned@acme-corp.example"])
    ctx = context(db)
    now = clock.utcnow()
    reader, scanned = "reader@acme-corp.example", "scanned@acme-corp.example"
    clicked(
        db, people.workspace_id, people.contacts[reader], now - timedelta(days=3), machine=False
    )
    clicked(
        db, people.workspace_id, people.contacts[scanned], now - timedelta(days=3), machine=True
    )
    verdicts = {}
    for email in (reader, scanned):
        result = intake.record_parsed(
            ctx,
            hard(email),
            raw=b"dsn",
            source="imap",
            envelope=intake.Envelope("", (verp(people.outbox[email]),)),
        )
        verdicts[email] = result.verdicts
    assert verdicts == {reader: [policy.KEPT_FILTER_BLOCK], scanned: [policy.SUPPRESSED]}
    with db.tenant(people.workspace_id) as s:
        assert [r.value for r in s.scalars(select(Suppression))] == [scanned]
        kept = s.scalars(select(BounceRecord).where(BounceRecord.email == reader)).one()
        assert kept.evidence["signals"] == ["engagement"]
        assert kept.evidence["engagement"]["event"] == "Email Clicked"
        # One engaged person may have left the company: no verdict on the whole domain.
        assert s.scalar(select(func.count()).select_from(DomainBlock)) == 0


def test_filter_wording_keeps_the_person_and_marks_the_domain(db: Database) -> None:
    email = "cfo@finance-corp.example"
    people = audience(db, [email])
    ctx = context(db)
    wording = "550 5.7.1 Message rejected due to content restrictions (spam score)"
    result = intake.record_parsed(
        ctx,
        hard(email, "5.7.1", reason="spamdetected", filter_wording=True, diagnostic=wording),
        raw=b"dsn",
        source="smtp",
        envelope=intake.Envelope("", (verp(people.outbox[email]),)),
    )
    assert result.verdicts == [policy.KEPT_FILTER_BLOCK]
    with db.tenant(people.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0
        alert = s.scalars(select(BounceAlert)).one()
        assert "spam, policy or reputation" in alert.message
        # Clearing the block makes a later unknown user count again.
        block = s.scalars(select(DomainBlock)).one()
        filterblock.clear_block(s, block.id, actor="api_key:1")
    with db.system() as s:
        assert filterblock.paced_domains(s) == {}
    result = intake.record_parsed(
        ctx,
        hard(email),
        raw=b"dsn2",
        source="smtp",
        envelope=intake.Envelope("", (verp(people.outbox[email]),)),
    )
    assert result.verdicts == [policy.SUPPRESSED]


def test_soft_bounces_suppress_after_the_threshold(db: Database) -> None:
    email = "full@mailbox.example"
    people = audience(db, [email])
    ctx = context(db, soft_limit=3, soft_days=7)
    full = hard(email, "4.2.2", reason="mailboxfull", is_hard=False)
    start = clock.utcnow() - timedelta(days=20)
    verdicts = []
    # One old soft bounce, outside the window, then three within a week.
    for day in (0, 15, 17, 19):
        result = intake.record_parsed(
            ctx,
            full,
            raw=b"dsn",
            source="maildir",
            envelope=intake.Envelope("", (verp(people.outbox[email]),)),
            now=start + timedelta(days=day),
        )
        verdicts.extend(result.verdicts)
    assert verdicts == [
        policy.SOFT_COUNTED,
        policy.SOFT_COUNTED,
        policy.SOFT_COUNTED,
        policy.SUPPRESSED,
    ]
    with db.tenant(people.workspace_id) as s:
        entry = s.scalars(select(Suppression)).one()
        assert entry.reason == "bounced"
        last = s.scalars(select(BounceRecord).order_by(BounceRecord.id.desc())).first()
        assert last is not None and last.evidence["soft_bounces"] == 3


def test_a_delay_notice_is_recorded_and_ignored(db: Database) -> None:
    email = "slow@corp.example"
    people = audience(db, [email])
    result = intake.record_parsed(
        context(db),
        hard(email, "4.4.1", reason="expired", is_hard=False, action="delayed"),
        raw=b"dsn",
        source="smtp",
        envelope=intake.Envelope("", (verp(people.outbox[email]),)),
    )
    assert result.verdicts == [policy.IGNORED]
    with db.tenant(people.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.type == "email")) == 0


def test_a_complaint_suppresses_and_unsubscribes_from_everything(db: Database) -> None:
    email = "angry@corp.example"
    people = audience(db, [email, "calm@corp.example"])
    ctx = context(db)
    with db.tenant(people.workspace_id) as s:
        from postwise.delivery import outbox

        [pending] = outbox.enqueue(
            s,
            [outbox.NewMessage(email=email, contact_id=people.contacts[email], kind="marketing")],
        )
    report = ParsedMessage(
        Kind.COMPLAINT,
        (RecipientOutcome(None, "complaint", False, feedback_type="abuse"),),
        original_message_id=None,
    )
    result = intake.record_parsed(
        ctx,
        report,
        raw=b"arf",
        source="imap",
        envelope=intake.Envelope(None, ()),
        sent=None,
    )
    assert result.record_ids == []  # untied and no address: nothing to act on
    result = intake.record_parsed(
        ctx,
        report,
        raw=b"arf",
        source="smtp",
        envelope=intake.Envelope("", (verp(people.outbox[email]),)),
    )
    assert result.verdicts == [policy.SUPPRESSED]
    with db.tenant(people.workspace_id) as s:
        entry = s.scalars(select(Suppression)).one()
        assert (entry.value, entry.reason) == (email, "complained")
        contact = s.get(Contact, people.contacts[email])
        assert contact is not None and contact.status == "complained"
        membership = s.get(ListMembership, (people.list_id, people.contacts[email]))
        assert membership is not None and membership.status == "unsubscribed"
        assert s.get(OutboxMessage, pending).status == "suppressed"  # type: ignore[union-attr]
        event = s.scalars(select(Event).where(Event.name == "Email Complained")).one()
        assert event.properties["feedback_type"] == "abuse"
        assert event.properties["outbox_id"] == people.outbox[email]
        calm = s.get(ListMembership, (people.list_id, people.contacts["calm@corp.example"]))
        assert calm is not None and calm.status == "subscribed"


def test_unknown_messages_are_kept_without_records_and_duplicates_land_once(
    db: Database,
) -> None:
    ctx = context(db)
    stray = intake.record_parsed(
        ctx, hard("who@nowhere.example"), raw=b"x" * 10, source="smtp", dedupe_key="k1"
    )
    assert stray.workspace_id is None and stray.record_ids == [] and stray.inbound_id
    again = intake.record_parsed(
        ctx, hard("who@nowhere.example"), raw=b"x", source="smtp", dedupe_key="k1"
    )
    assert again.duplicate and again.inbound_id is None
    unparsed = intake.ingest(
        intake.Context(ctx.db, ctx.signer, ctx.hasher, raw_limit=1024, parse=_exploding),
        b"y" * 5000,
        source="maildir",
    )
    assert unparsed.kind == "unparsed" and "parser error" in (unparsed.unparsed_reason or "")
    with db.system() as s:
        rows = s.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
        assert [(r.kind, r.parsed, r.raw_size, len(r.raw)) for r in rows] == [
            ("bounce", True, 10, 10),
            ("unparsed", False, 5000, 1024),
        ]


def _exploding(raw: bytes) -> ParsedMessage:
    raise UnicodeDecodeError("utf-8", raw, 0, 1, "boom")


def test_a_workspace_cannot_bounce_another_workspaces_mail(db: Database) -> None:
    email = "victim@corp.example"
    theirs = audience(db, [email], name="Theirs")
    mine = audience(db, ["me@mine.example"], name="Mine")
    result = intake.record_parsed(
        context(db),
        hard(email),
        raw=b"dsn",
        source="http",
        envelope=intake.Envelope("", (verp(theirs.outbox[email]),)),
        workspace_id=mine.workspace_id,
    )
    assert result.workspace_id == mine.workspace_id and result.outbox_id is None
    with db.tenant(theirs.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0
        assert s.scalar(select(func.count()).select_from(BounceRecord)) == 0
        contact = s.get(Contact, theirs.contacts[email])
        assert contact is not None and contact.status == "subscribed"


def test_a_plain_message_id_ties_by_lookup_within_the_workspace(db: Database) -> None:
    """Prebuilt messages keep their own Message-ID (no token): looked up in the outbox."""
    email = "ann@corp.example"
    people = audience(db, [email])
    with db.tenant(people.workspace_id) as s:
        row = s.get(OutboxMessage, people.outbox[email])
        assert row is not None
        row.message_id = "<plain-123@sender.example>"
    for given in ("<plain-123@sender.example>", "plain-123@sender.example"):
        parsed = ParsedMessage(
            Kind.BOUNCE,
            (RecipientOutcome(email, "userunknown", True, status="5.1.1"),),
            original_message_id=given,
        )
        result = intake.record_parsed(context(db), parsed, raw=b"", source="imap")
        assert result.outbox_id == people.outbox[email]
    other = audience(db, ["zed@else.example"], name="Other")
    parsed = ParsedMessage(
        Kind.BOUNCE,
        (RecipientOutcome(email, "userunknown", True),),
        original_message_id="<plain-123@sender.example>",
    )
    elsewhere = intake.record_parsed(
        context(db), parsed, raw=b"", source="http", workspace_id=other.workspace_id
    )
    assert elsewhere.outbox_id is None
