"""Building blocks for intake tests: a workspace with contacts, sent outbox rows carrying
real VERP tokens, and RFC 3464 reports about them, as a relay would write them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update

from postwise.bounces import intake, policy
from postwise.bounces.report import Kind, ParsedMessage, RecipientOutcome
from postwise.contacts.actions import upsert_contacts
from postwise.contacts.lists import ConsentInput, create_list, subscribe
from postwise.core import clock
from postwise.delivery import outbox
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage
from postwise.tracking.tokens import TokenKind, TokenSigner
from postwise.workspaces.actions import create_workspace

SECRET = b"intake-test-secret"
BOUNCE_DOMAIN = "bounce.sender.example"
SIGNER = TokenSigner(SECRET)


def context(db: Database, **thresholds: float) -> intake.Context:
    return intake.Context(
        db=db,
        signer=SIGNER,
        hasher=AddressHasher.from_secret(SECRET),
        thresholds=policy.Thresholds(**thresholds),  # type: ignore[arg-type]
    )


def verp(outbox_id: int) -> str:
    return f"bounces+{SIGNER.sign(TokenKind.BOUNCE, outbox_id)}@{BOUNCE_DOMAIN}"


def message_id(outbox_id: int) -> str:
    return f"<{SIGNER.sign(TokenKind.BOUNCE, outbox_id)}.{outbox_id}@sender.example>"


@dataclass
class Audience:
    workspace_id: int
    list_id: int
    contacts: dict[str, int] = field(default_factory=dict)  # email -> contact id
    outbox: dict[str, int] = field(default_factory=dict)  # email -> outbox id


def audience(
    db: Database, emails: list[str], *, campaign: str = "launch", name: str = "Acme"
) -> Audience:
    """A workspace whose contacts are all on one list and were each sent ``campaign``."""
    with db.system() as s:
        ws = create_workspace(s, name).workspace_id
    with db.tenant(ws) as s:
        results = upsert_contacts(s, [{"email": e} for e in emails], source="api")
        news = create_list(s, {"name": "News"})
        out = Audience(ws, news.id)
        for email, result in zip(emails, results, strict=True):
            assert result.contact_id is not None
            out.contacts[email] = result.contact_id
            subscribe(s, news.id, result.contact_id, ConsentInput("api"), confirmed=True)
        ids = outbox.enqueue(
            s,
            [
                outbox.NewMessage(
                    email=e,
                    kind="marketing",
                    contact_id=out.contacts[e],
                    list_id=news.id,
                    campaign_key=campaign,
                )
                for e in emails
            ],
        )
        for email, outbox_id in zip(emails, ids, strict=True):
            out.outbox[email] = outbox_id
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outbox_id)
                .values(status="sent", message_id=message_id(outbox_id), sent_at=clock.utcnow())
            )
    return out


def clicked(db: Database, ws: int, contact_id: int, at: datetime, *, machine: bool) -> None:
    with db.tenant(ws) as s:
        s.add(
            Event(
                contact_id=contact_id,
                type="email",
                name="Email Clicked",
                properties={"machine": machine, "url": "https://sender.example/x"},
                occurred_at=at,
            )
        )


def hard(recipient: str | None, status: str = "5.1.1", **kw: object) -> ParsedMessage:
    diagnostic = kw.pop("diagnostic", f"550 {status} <{recipient}>: Recipient address rejected")
    return ParsedMessage(
        Kind.BOUNCE,
        (
            RecipientOutcome(
                recipient,
                str(kw.pop("reason", "userunknown")),
                bool(kw.pop("is_hard", True)),
                status=status,
                reply_code=550,
                action=str(kw.pop("action", "failed")),
                diagnostic=str(diagnostic),
                filter_wording=bool(kw.pop("filter_wording", False)),
            ),
        ),
    )


def dsn(
    recipient: str,
    *,
    status: str = "5.1.1",
    diagnostic: str = "550 5.1.1 The email account that you tried to reach does not exist",
    original_message_id: str | None = None,
    return_path: str | None = None,
    action: str = "failed",
) -> bytes:
    """An RFC 3464 multipart/report, the way Postfix writes one."""
    original = "From: news@sender.example\r\nTo: " + recipient + "\r\nSubject: Launch\r\n"
    if return_path:
        original = f"Return-Path: <{return_path}>\r\n" + original
    if original_message_id:
        original += f"Message-ID: {original_message_id}\r\n"
    return (
        "From: MAILER-DAEMON@mx.corp.example (Mail Delivery System)\r\n"
        "To: " + (return_path or "news@sender.example") + "\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Tue, 24 Nov 2026 08:00:00 +0000\r\n"
        "Message-ID: <dsn-1@mx.corp.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n"
        "\r\n"
        f"<{recipient}>: host mx.corp.example said: {diagnostic}\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.corp.example\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.corp.example\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"{original}"
        "\r\n"
        "--b1--\r\n"
    ).encode()


def minutes_after(start: datetime, minutes: float) -> datetime:
    return start + timedelta(minutes=minutes)
