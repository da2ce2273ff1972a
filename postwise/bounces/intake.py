"""Where every bounce and complaint enters: one path for all the ways they arrive.

The inbound SMTP listener, IMAP polling, maildir reading and ``POST /api/bounces/raw``
hand raw bytes to ``ingest``; the SES and SendGrid webhooks hand already-normalized
outcomes to ``record_parsed``; the deliverer hands SMTP-time rejections to
``record_send_time``. All of them end the same way:

1. the message is kept in ``inbound_messages`` (cut at ``raw_limit`` bytes; a
   ``dedupe_key`` makes a provider's retry or a re-read file land once), parsed or
   marked unparsed with the reason: bad input never stops intake;
2. it is tied to the outbox row it answers (``tying.py``), which names the workspace,
   contact and campaign;
3. each reported recipient of a bounce or complaint becomes a ``bounce_records`` row,
   the policy (``policy.py``, ``filterblock.py``) decides and acts, and an ``Email
   Bounced`` / ``Email Complained`` event lands on the contact's timeline.

Steps 1 and 3 happen in one transaction of the message's workspace. See docs/bounces.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from postwise.bounces import policy, tying
from postwise.bounces.report import Kind, ParsedMessage, RecipientOutcome
from postwise.contacts.actions import find_contact_by_email
from postwise.core import clock
from postwise.core.settings import Settings
from postwise.delivery.outbox import Claimed
from postwise.delivery.transports.base import RecipientResult
from postwise.privacy.hashing import AddressHasher
from postwise.privacy.suppression import ERASED, suppressed_among
from postwise.segments import changes as segment_changes
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, Event, InboundMessage, OutboxMessage
from postwise.storage.tenancy import workspace_of
from postwise.tracking.tokens import TokenSigner

log = structlog.get_logger(__name__)

SOURCES = ("smtp", "imap", "maildir", "http", "ses", "sendgrid", "send_time")
RECORDED_KINDS = {Kind.BOUNCE: "bounce", Kind.COMPLAINT: "complaint"}
BOUNCED_EVENT = "Email Bounced"
COMPLAINED_EVENT = "Email Complained"
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")

Parse = Callable[[bytes], ParsedMessage]


def _default_parse(raw: bytes) -> ParsedMessage:
    from postwise.bounces.parser import parse_message

    return parse_message(raw)


@dataclass(frozen=True)
class Context:
    """What intake needs, built once per process from settings."""

    db: Database
    signer: TokenSigner
    hasher: AddressHasher
    thresholds: policy.Thresholds = field(default_factory=policy.Thresholds)
    raw_limit: int = 262144
    parse: Parse = _default_parse

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> Context:
        secret = settings.resolved_secret_key()
        return cls(
            db=db,
            signer=TokenSigner(secret),
            hasher=AddressHasher.from_secret(secret),
            thresholds=policy.Thresholds.from_settings(settings),
            raw_limit=settings.bounce_raw_limit,
        )


@dataclass(frozen=True)
class Envelope:
    """The SMTP envelope the message came with, when it came by SMTP (or was kept)."""

    mail_from: str | None = None
    rcpt_to: tuple[str, ...] = ()


@dataclass
class Result:
    inbound_id: int | None
    kind: str
    workspace_id: int | None
    outbox_id: int | None = None
    record_ids: list[int] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    duplicate: bool = False
    unparsed_reason: str | None = None


def safe_parse(parse: Parse, raw: bytes) -> ParsedMessage:
    """The parser's answer; a parser bug becomes an unparsed message, never a lost one."""
    try:
        return parse(raw)
    except Exception as exc:  # the contract says it never raises; intake must not trust it
        log.exception("bounces.parser_error")
        return ParsedMessage(Kind.UNPARSED, unparsed_reason=f"parser error: {exc!r}"[:500])


def ingest(
    ctx: Context,
    raw: bytes,
    *,
    source: str,
    envelope: Envelope = Envelope(),
    workspace_id: int | None = None,
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> Result:
    """Parse, keep, tie and act on one raw message (see the module docstring)."""
    parsed = safe_parse(ctx.parse, raw)
    return record_parsed(
        ctx,
        parsed,
        raw=raw,
        source=source,
        envelope=envelope,
        workspace_id=workspace_id,
        dedupe_key=dedupe_key,
        now=now,
    )


def _clean(text: str | None, limit: int) -> str | None:
    """PostgreSQL refuses NUL in text and enforces lengths; mail may carry either."""
    return None if text is None else text.replace("\x00", "")[:limit]


def _address(value: str | None) -> str | None:
    match = _ADDRESS.search((value or "").replace("\x00", ""))
    return match.group(0).strip(".,;").lower()[:320] if match else None


def _tie(ctx: Context, parsed: ParsedMessage, envelope: Envelope, workspace_id: int | None) -> Any:
    addresses = [*envelope.rcpt_to, parsed.original_return_path]
    addresses += [v for k, v in parsed.original_headers.items() if k.lower() == "return-path"]
    with ctx.db.system() as session:
        return tying.find_sent(
            session,
            ctx.signer,
            addresses=addresses,
            message_id=parsed.original_message_id,
            workspace_id=workspace_id,
        )


def record_parsed(
    ctx: Context,
    parsed: ParsedMessage,
    *,
    raw: bytes,
    source: str,
    envelope: Envelope = Envelope(),
    workspace_id: int | None = None,
    dedupe_key: str | None = None,
    now: datetime | None = None,
    sent: tying.Sent | None = None,
) -> Result:
    """Keep ``parsed`` (and its ``raw`` form) and act on it. ``workspace_id`` is set when
    the caller already knows the workspace (an API key, a webhook URL); ``sent`` when
    the caller already tied it (a webhook that names the message)."""
    if source not in SOURCES:
        raise ValueError(f"unknown bounce source {source!r}")
    now = now or clock.utcnow()
    if sent is None:
        sent = _tie(ctx, parsed, envelope, workspace_id)
    ws = sent.workspace_id if sent is not None else workspace_id
    addresses = sorted(
        {a for a in (_address(o.recipient) for o in parsed.recipients) if a}
        | ({sent.email.lower()} if sent is not None else set())
    )
    inbound = InboundMessage(
        workspace_id=ws,
        source=source,
        kind=parsed.kind.value,
        parsed=parsed.kind is not Kind.UNPARSED,
        unparsed_reason=_clean(parsed.unparsed_reason, 500),
        mail_from=_clean(envelope.mail_from, 320),
        rcpt_to=[_clean(r, 320) or "" for r in envelope.rcpt_to][:50],
        addresses=addresses[:1000],
        subject=_clean(parsed.subject, 1000),
        raw=raw[: ctx.raw_limit],
        raw_size=len(raw),
        dedupe_key=_clean(dedupe_key, 255),
        received_at=now,
    )
    result = Result(None, parsed.kind.value, ws, sent.outbox_id if sent else None)
    result.unparsed_reason = inbound.unparsed_reason
    if ws is None:
        with ctx.db.system() as session:
            if not _keep(session, inbound):
                result.duplicate = True
                return result
            result.inbound_id = inbound.id
        return result
    with ctx.db.tenant(ws) as session:
        erased = _erased_among(session, ctx, addresses)
        if erased:
            _forget(inbound, erased)
        if not _keep(session, inbound):
            result.duplicate = True
            return result
        result.inbound_id = inbound.id
        kind = RECORDED_KINDS.get(parsed.kind)
        if kind is None:
            return result
        outcomes = parsed.recipients or (
            (RecipientOutcome(None, "unknown", False),) if sent is not None else ()
        )
        for outcome in outcomes:
            if erased and _outcome_address(outcome, sent) in erased:
                continue  # nothing to act on: the erasure hash already suppresses them
            record = _record(session, ctx, outcome, kind, sent, source, inbound, now)
            if record is not None:
                result.record_ids.append(record.id)
                result.verdicts.append(record.verdict)
    return result


def _erased_among(session: Session, ctx: Context, addresses: Sequence[str]) -> set[str]:
    """Addresses of people erased from this workspace: only their keyed hash remains."""
    found = suppressed_among(session, addresses, hasher=ctx.hasher)
    return {address for address, reason in found.items() if reason == ERASED}


def _forget(inbound: InboundMessage, erased: set[str]) -> None:
    """A bounce about an erased person must not bring their address back: keep the fact
    that a message arrived, drop what it says (raw bytes, subject, their address)."""
    inbound.raw = b""
    inbound.subject = None
    inbound.addresses = [a for a in inbound.addresses if a not in erased]
    inbound.unparsed_reason = "about an erased person: content not kept"


def _outcome_address(outcome: RecipientOutcome, sent: tying.Sent | None) -> str | None:
    reported = _address(outcome.recipient)
    return reported or (sent.email.lower() if sent is not None else None)


def _keep(session: Session, inbound: InboundMessage) -> bool:
    """Insert; False when the dedupe key was seen before (nothing else is done then)."""
    if inbound.dedupe_key is not None:
        seen = session.scalar(
            select(InboundMessage.id).where(InboundMessage.dedupe_key == inbound.dedupe_key)
        )
        if seen is not None:
            return False
    try:
        with session.begin_nested():
            session.add(inbound)
    except IntegrityError:
        return False
    return True


def _record(
    session: Session,
    ctx: Context,
    outcome: RecipientOutcome,
    kind: str,
    sent: tying.Sent | None,
    source: str,
    inbound: InboundMessage | None,
    now: datetime,
    *,
    dedupe_key: str | None = None,
) -> BounceRecord | None:
    """One recipient's record, the policy's verdict on it, and its event."""
    reported = _address(outcome.recipient)
    tied = sent is not None and (reported is None or reported == sent.email.lower())
    email = reported or (sent.email.lower() if sent is not None else None)
    if email is None:
        return None  # nobody to act on; the inbound message keeps what was said
    contact_id = sent.contact_id if tied and sent is not None else None
    if contact_id is None:
        contact = find_contact_by_email(session, email)
        contact_id = contact.id if contact is not None else None
    evidence: dict[str, Any] = {}
    if sent is not None:
        evidence["tied_by"] = sent.how
        if not tied:
            evidence["sent_to"] = sent.email
    if outcome.action:
        evidence["action"] = _clean(outcome.action, 32)
    if outcome.remote_mta:
        evidence["remote_mta"] = _clean(outcome.remote_mta, 255)
    record = BounceRecord(
        inbound_id=inbound.id if inbound is not None else None,
        outbox_id=sent.outbox_id if tied and sent is not None else None,
        contact_id=contact_id,
        email=email[:320],
        domain=email.rsplit("@", 1)[-1][:255],
        campaign_key=sent.campaign_key if sent is not None else None,
        source=source,
        kind=kind,
        reason=_clean(outcome.reason, 32) or "unknown",
        hard=bool(outcome.hard) if kind == "bounce" else False,
        status=_clean(outcome.status, 16),
        reply_code=outcome.reply_code,
        diagnostic=_clean(outcome.diagnostic, 4000),
        feedback_type=_clean(outcome.feedback_type, 32),
        filter_wording=outcome.filter_wording,
        verdict=policy.IGNORED,
        evidence=evidence,
        dedupe_key=_clean(dedupe_key, 255),
        occurred_at=now,
        created_at=now,
    )
    session.add(record)
    session.flush()
    policy.apply(
        session,
        record,
        hasher=ctx.hasher,
        thresholds=ctx.thresholds,
        now=now,
        action=outcome.action,
    )
    if not (kind == "bounce" and record.verdict == policy.IGNORED):
        _event(session, record, now)
    if record.campaign_key is not None:
        # A campaign past its complaint or hard-bounce limit pauses itself (docs/campaigns.md).
        from postwise.campaigns import guardrails

        guardrails.evaluate(session, record.campaign_key)
    return record


def _event(session: Session, record: BounceRecord, now: datetime) -> None:
    """``Email Bounced`` / ``Email Complained`` like the outbox's own events: one per
    message (``message_id`` key shared with the send-time bounce), so segments count
    each message once however many reports arrive."""
    name, suffix = (
        (COMPLAINED_EVENT, "complained")
        if record.kind == "complaint"
        else (BOUNCED_EVENT, "bounced")
    )
    key = (
        f"outbox:{record.outbox_id}:{suffix}"
        if record.outbox_id is not None
        else f"bounce:{record.id}:{suffix}"
    )
    properties = {
        "outbox_id": record.outbox_id,
        "campaign_key": record.campaign_key,
        "email": record.email,
        "reason": record.reason,
        "hard": record.hard,
        "status": record.status,
        "verdict": record.verdict,
        "source": record.source,
        "bounce_record_id": record.id,
    }
    if record.kind == "complaint":
        properties["feedback_type"] = record.feedback_type
    values = {
        "workspace_id": workspace_of(session),
        "contact_id": record.contact_id,
        "type": "email",
        "name": name,
        "properties": properties,
        "context": {},
        "message_id": key,
        "occurred_at": now,
        "received_at": now,
    }
    table: Any = Event.__table__
    insert_fn: Any = (
        postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    )
    session.connection().execute(
        insert_fn(table)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=["workspace_id", "message_id"],
            index_where=table.c.message_id.is_not(None),
        )
    )
    segment_changes.note(session, [record.contact_id], [segment_changes.event_key(name)])


# --- rejections at send time ---------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """What the deliverer knows of a message refused (or given up on) at send time."""

    outbox_id: int
    contact_id: int | None
    email: str
    campaign_key: str | None
    code: int | None
    enhanced_code: str | None
    reply: str
    reason: str  # the outbox's: rejected | expired


def send_time_dsn(rejection: Rejection, now: datetime | None = None) -> bytes:
    """The SMTP reply as the RFC 3464 report a relay would have sent, so one parser and
    classifier read both (the code and wording tables live in one place)."""
    status = rejection.enhanced_code or ("5.0.0" if (rejection.code or 500) >= 500 else "4.0.0")
    if rejection.reason == "expired" and status.startswith("4"):
        status = "4.4.7"  # delivery time expired (RFC 3463)
    action = "failed"
    diagnostic = " ".join(rejection.reply.split())[:900] or "no answer"
    date = formatdate((now or clock.utcnow()).timestamp(), usegmt=True)
    boundary = "postwise-send-time"
    text = (
        f"From: Mail Delivery System <mailer-daemon@postwise.invalid>\r\n"
        f"To: postwise@postwise.invalid\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {date}\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
        f"\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"The receiving server refused the message at send time.\r\n\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; postwise.invalid\r\n\r\n"
        f"Final-Recipient: rfc822; {rejection.email}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        f"--{boundary}--\r\n"
    )
    return text.encode("utf-8", "replace")


def record_send_time(
    session: Session, ctx: Context, rejection: Rejection, *, now: datetime | None = None
) -> BounceRecord | None:
    """The bounce record of an SMTP-time rejection, in the deliverer's own transaction
    (``session`` is bound to the message's workspace); ``outbox.mark_bounced`` already
    emitted the message's ``Email Bounced`` event, which this does not repeat."""
    now = now or clock.utcnow()
    raw = send_time_dsn(rejection, now)
    parsed = safe_parse(ctx.parse, raw)
    outcome = next(iter(parsed.recipients), None)
    if parsed.kind is not Kind.BOUNCE or outcome is None:
        status = rejection.enhanced_code
        outcome = RecipientOutcome(
            rejection.email,
            "expired" if rejection.reason == "expired" else "unknown",
            bool(status and status.startswith("5")),
            status=status,
            reply_code=rejection.code,
            diagnostic=rejection.reply[:4000],
        )
    if rejection.reason == "expired":
        outcome = RecipientOutcome(
            rejection.email,
            outcome.reason,
            False,  # never reached a verdict: counted as soft, not as an unknown user
            status=outcome.status,
            reply_code=rejection.code,
            diagnostic=outcome.diagnostic,
            action="failed",
            filter_wording=outcome.filter_wording,
        )
    else:
        outcome = RecipientOutcome(
            rejection.email,
            outcome.reason,
            outcome.hard,
            status=outcome.status or rejection.enhanced_code,
            reply_code=rejection.code if rejection.code is not None else outcome.reply_code,
            diagnostic=outcome.diagnostic or rejection.reply[:4000],
            action="failed",
            remote_mta=outcome.remote_mta,
            filter_wording=outcome.filter_wording,
        )
    sent = tying.Sent(
        rejection.outbox_id,
        workspace_of(session),
        rejection.contact_id,
        rejection.email,
        rejection.campaign_key,
        "send_time",
    )
    inbound = InboundMessage(
        workspace_id=workspace_of(session),
        source="send_time",
        kind=Kind.BOUNCE.value,
        parsed=True,
        addresses=[rejection.email.lower()],
        subject=f"SMTP {rejection.code or ''} at send time".strip(),
        raw=raw[: ctx.raw_limit],
        raw_size=len(raw),
        dedupe_key=f"send_time:{rejection.outbox_id}",
        received_at=now,
    )
    if not _keep(session, inbound):
        return None
    return _record(
        session,
        ctx,
        outcome,
        "bounce",
        sent,
        "send_time",
        inbound,
        now,
        dedupe_key=f"send_time:{rejection.outbox_id}",
    )


def records_of(session: Session, ids: Sequence[int]) -> list[BounceRecord]:
    return list(session.scalars(select(BounceRecord).where(BounceRecord.id.in_(ids))))


class SendTimeRecorder:
    """The deliverer's ``on_rejected`` hook: a refusal at send time becomes the same
    bounce record, classified by the same parser, as a DSN arriving later would."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __call__(
        self, session: Session, row: Claimed, answer: RecipientResult, reason: str
    ) -> None:
        campaign_key = session.scalar(
            select(OutboxMessage.campaign_key).where(OutboxMessage.id == row.id)
        )
        rejection = Rejection(
            outbox_id=row.id,
            contact_id=row.contact_id,
            email=row.email,
            campaign_key=campaign_key,
            code=answer.code,
            enhanced_code=answer.enhanced_code,
            reply=answer.full_reply,
            reason=reason,
        )
        record_send_time(session, self.ctx, rejection)
