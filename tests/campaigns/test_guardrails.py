"""Guardrails fed by real bounce and complaint messages through the bounce intake: the
campaign pauses itself, its unsent rows are held, and an alert says why."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from postwise.bounces import intake
from postwise.campaigns import jobs, lifecycle, store
from postwise.core import clock
from postwise.core.settings import Settings
from postwise.delivery import outbox
from postwise.storage.database import Database
from postwise.storage.tables import BounceAlert, Campaign, OutboxMessage
from postwise.tracking.tokens import TokenKind, TokenSigner
from tests.bounces.scenario import dsn

from .conftest import base_campaign, drain, make_world


def _arf(recipient: str, message_id: str) -> bytes:
    return (
        "From: feedback@isp.example\r\nTo: abuse@send.example\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; "
        'boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nA complaint about mail from you.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: {recipient}\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: news@send.example\r\nTo: {recipient}\r\nSubject: Launch\r\n"
        f"Message-ID: {message_id}\r\n\r\nhi\r\n--F--\r\n"
    ).encode()


def _send_all_but_five(db: Database, ws: int, values: dict[str, object]) -> int:
    """Schedule, fan out and deliver, except the last five rows, due in an hour (a paced
    send): the campaign stays ``sending`` and the pause has something to hold."""
    with db.tenant(ws) as s:
        c = store.create_campaign(s, values)
        lifecycle.schedule(s, c.id)
        cid = c.id
        jobs.run_fanout_batch(s, cid)
        later = clock.utcnow() + timedelta(hours=1)
        last = list(s.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(5)))
        s.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(last)).values(next_attempt_at=later)
        )
    drain(db)
    return cid


def test_hard_bounces_then_complaints_past_the_limits_pause_the_campaign(
    db: Database, settings: Settings
) -> None:
    world = make_world(db, n=40)
    cid = _send_all_but_five(db, world.ws, base_campaign(world))
    with db.tenant(world.ws) as s:
        rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        sent = [(r.id, r.email, r.message_id) for r in rows if r.status == "sent"]
        assert store.get_campaign(s, cid).recipient_count == 27
    assert len(sent) == 22  # 1 hard bounce is 4.5%, 2 are 9.1%
    ctx = intake.Context.from_settings(settings, db)
    signer = TokenSigner(settings.resolved_secret_key())

    def bounce(outbox_id: int, email: str) -> None:
        verp = (
            f"bounces+{signer.sign(TokenKind.BOUNCE, outbox_id)}@{settings.delivery_bounce_domain}"
        )
        result = intake.ingest(
            ctx, dsn(email), source="smtp", envelope=intake.Envelope("", (verp,))
        )
        assert result.outbox_id == outbox_id

    bounce(*sent[0][:2])
    with db.tenant(world.ws) as s:
        assert store.get_campaign(s, cid).status == "sending"  # 1/22 = 4.5% <= 5%
        assert s.scalars(select(BounceAlert)).all() == []
    bounce(*sent[1][:2])
    with db.tenant(world.ws) as s:
        campaign = store.get_campaign(s, cid)
        assert campaign.status == "paused"
        assert campaign.paused_reason is not None and "hard bounces 9.09%" in campaign.paused_reason
        [alert] = s.scalars(select(BounceAlert)).all()
        assert alert.kind == "campaign_guardrail" and alert.campaign_key == "launch"
        assert alert.evidence["tripped"] == "hard_bounce_rate"
        assert alert.evidence["hard_bounces"] == 2 and alert.evidence["attempted"] == 22
        assert outbox.stats(s, world.ws)["held"] == 5
        lifecycle.resume(s, cid)
        assert outbox.stats(s, world.ws).get("held") is None
    # A complaint is judged against 0.3%: one in 22 trips it again.
    result = intake.ingest(ctx, _arf(sent[2][1], str(sent[2][2])), source="smtp")
    assert result.kind == "complaint" and result.outbox_id == sent[2][0]
    with db.tenant(world.ws) as s:
        campaign = store.get_campaign(s, cid)
        assert campaign.status == "paused"
        assert "complaints" in (campaign.paused_reason or "")
        alerts = s.scalars(select(BounceAlert).order_by(BounceAlert.id)).all()
        assert [a.evidence["tripped"] for a in alerts] == ["hard_bounce_rate", "complaint_rate"]


def test_below_the_minimum_sample_nothing_trips(db: Database, settings: Settings) -> None:
    world = make_world(db, n=40)
    cid = _send_all_but_five(db, world.ws, base_campaign(world, guardrails={"min_sample": 1000}))
    with db.tenant(world.ws) as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.status == "sent")).first()
        assert row is not None
        target = (row.email, str(row.message_id))
    ctx = intake.Context.from_settings(settings, db)
    intake.ingest(ctx, _arf(*target), source="smtp")
    with db.tenant(world.ws) as s:
        assert s.scalar(select(Campaign.status).where(Campaign.id == cid)) == "sending"
        assert s.scalars(select(BounceAlert)).all() == []
