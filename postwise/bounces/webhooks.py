"""Bounce and complaint webhooks of mail providers: Amazon SES (through SNS) and SendGrid.

Each provider posts to a URL holding a ``TokenKind.WEBHOOK`` token that names the
workspace (``webhook_token``): the token is the credential, since neither provider can
send an API key. On top of it:

- **SES/SNS**: every SNS message is signed; ``verify_sns`` rebuilds the canonical string
  (per message type), fetches the signing certificate only from an ``https`` URL on an
  ``amazonaws.com`` host (cached), and checks the RSA signature: SHA1 for
  ``SignatureVersion`` 1, SHA256 for 2. A ``SubscriptionConfirmation`` is confirmed by
  fetching its ``SubscribeURL`` under the same host rule.
- **SendGrid**: with a verification key configured (``POSTWISE_BOUNCE_SENDGRID_PUBLIC_KEY``)
  the ECDSA signature over timestamp + body is checked (``verify_sendgrid``).

Events are normalized, through the same classifier as DSNs, into ``ParsedMessage`` values
and recorded by ``intake.record_parsed``; the provider's event id is the dedupe key, so a
retried webhook lands once. The tables below hold the providers' vocabularies, not code
paths. See docs/bounces.md (intake: webhooks).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from postwise.bounces import intake, tying
from postwise.bounces.classifier import classify
from postwise.bounces.report import Kind, ParsedMessage, RecipientOutcome
from postwise.core.errors import AuthenticationFailed, NotFound, ValidationFailed
from postwise.storage.tables import Workspace
from postwise.tracking.tokens import TokenKind, TokenSigner

Fetch = Callable[[str], bytes]
_REPLY_CODE = re.compile(r"\b([245]\d\d)\b")
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")

# --- the webhook URL's token -----------------------------------------------------------


def webhook_token(signer: TokenSigner, workspace_id: int) -> str:
    return signer.sign(TokenKind.WEBHOOK, workspace_id)


def workspace_of_token(signer: TokenSigner, token: str) -> int:
    values = signer.verify(TokenKind.WEBHOOK, token)
    if values is None or len(values) != 1 or values[0] == 0:
        raise NotFound("this webhook URL is not valid", code="invalid_token", field="token")
    return values[0]


def workspace_for(ctx: intake.Context, token: str) -> int:
    """The workspace a webhook URL names, if it still exists."""
    workspace_id = workspace_of_token(ctx.signer, token)
    with ctx.db.system() as session:
        if session.get(Workspace, workspace_id) is None:
            raise NotFound("this webhook URL is not valid", code="invalid_token", field="token")
    return workspace_id


# --- SNS signatures --------------------------------------------------------------------

_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNATURE_HASHES: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}


def amazon_url(url: str) -> str:
    """``url`` if it is https on an amazonaws.com host; anything else is refused, so a
    forged message cannot make us fetch (or trust) a certificate from elsewhere."""
    parts = urlsplit(url or "")
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not host.endswith(".amazonaws.com") or parts.username:
        raise AuthenticationFailed(
            "SNS URLs must be https on an amazonaws.com host", code="invalid_sns_url"
        )
    return url


def canonical_sns(message: Mapping[str, Any]) -> bytes:
    fields = _SIGNED_FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise ValidationFailed(f"unknown SNS message type {message.get('Type')!r}", field="Type")
    out = []
    for name in fields:
        if name == "Subject" and message.get(name) is None:
            continue  # Subject is signed only when present
        value = message.get(name)
        if not isinstance(value, str):
            raise AuthenticationFailed(f"SNS message lacks {name}", code="invalid_sns_signature")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def fetch_https(url: str) -> bytes:
    """GET over https with a timeout; the default certificate and confirmation fetcher."""
    with urllib.request.urlopen(amazon_url(url), timeout=10) as response:
        return bytes(response.read(65536))


@lru_cache(maxsize=32)
def _cached_certificate(url: str, fetch: Fetch) -> x509.Certificate:
    return x509.load_pem_x509_certificate(fetch(url))


def verify_sns(message: Mapping[str, Any], fetch: Fetch = fetch_https) -> None:
    """Raise ``AuthenticationFailed`` unless SNS signed ``message``."""
    version = str(message.get("SignatureVersion", ""))
    algorithm = _SIGNATURE_HASHES.get(version)
    if algorithm is None:
        raise AuthenticationFailed(
            f"unsupported SNS SignatureVersion {version!r}", code="invalid_sns_signature"
        )
    url = amazon_url(str(message.get("SigningCertURL", "")))
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        certificate = _cached_certificate(url, fetch)
    except (binascii.Error, ValueError) as exc:
        raise AuthenticationFailed(
            "SNS signature or certificate unreadable", code="invalid_sns_signature"
        ) from exc
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise AuthenticationFailed("SNS certificate is not RSA", code="invalid_sns_signature")
    try:
        key.verify(signature, canonical_sns(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise AuthenticationFailed(
            "SNS signature does not match", code="invalid_sns_signature"
        ) from exc


# --- SES notifications -----------------------------------------------------------------

# SES bounce sub-types that say what happened when no diagnostic does.
SES_SUBTYPE_REASON = {
    "NoEmail": "userunknown",
    "Suppressed": "userunknown",  # SES's list of addresses that recently bounced as invalid
    "OnAccountSuppressionList": "userunknown",
    "MailboxFull": "mailboxfull",
    "MessageTooLarge": "mesgtoobig",
    "ContentRejected": "filtered",
    "AttachmentRejected": "filtered",
}


def _reply_code(text: str) -> int | None:
    match = _REPLY_CODE.search(text)
    return int(match.group(1)) if match else None


def _outcome(
    recipient: str | None,
    *,
    status: str | None,
    diagnostic: str,
    action: str | None,
    fixed_reason: str | None = None,
    hard: bool | None = None,
) -> RecipientOutcome:
    diagnostic = " ".join(diagnostic.split())
    if diagnostic.lower().startswith("smtp;"):
        diagnostic = diagnostic[5:].strip()
    if status is None:
        found = _STATUS.search(diagnostic)
        status = found.group(1) if found else None
    reply_code = _reply_code(diagnostic)
    verdict = classify(
        status=status,
        reply_code=reply_code,
        diagnostic=diagnostic,
        action=action,
        fixed_reason=None if diagnostic else fixed_reason,
    )
    return RecipientOutcome(
        (recipient or "").strip().lower() or None,
        verdict.reason,
        verdict.hard if hard is None else hard and verdict.hard,
        status=status,
        reply_code=reply_code,
        action=action,
        diagnostic=diagnostic or None,
        filter_wording=verdict.filter_wording,
    )


@dataclass(frozen=True)
class Normalized:
    parsed: ParsedMessage
    message_id: str | None  # the original Message-ID, to tie to the outbox
    addresses: tuple[str, ...]  # envelope sender(s) that may carry the VERP token
    dedupe_key: str


def _ses_message_id(mail: Mapping[str, Any]) -> str | None:
    common = mail.get("commonHeaders") or {}
    if isinstance(common, dict) and common.get("messageId"):
        return str(common["messageId"])
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
            return str(header.get("value"))
    return None


def normalize_ses(note: Mapping[str, Any], sns_message_id: str) -> Normalized | None:
    """An SES bounce or complaint notification (``notificationType`` or the event
    publishing ``eventType``); None for kinds that are not bounces (deliveries, sends)."""
    kind = str(note.get("notificationType") or note.get("eventType") or "")
    mail = note.get("mail") or {}
    recipients: list[RecipientOutcome] = []
    if kind == "Bounce":
        bounce = note.get("bounce") or {}
        permanent = bounce.get("bounceType") == "Permanent"
        subtype = str(bounce.get("bounceSubType") or "")
        for rcpt in bounce.get("bouncedRecipients") or []:
            if not isinstance(rcpt, dict):
                continue
            recipients.append(
                _outcome(
                    str(rcpt.get("emailAddress") or ""),
                    status=str(rcpt["status"]) if rcpt.get("status") else None,
                    diagnostic=str(rcpt.get("diagnosticCode") or ""),
                    action=str(rcpt.get("action") or "failed").lower(),
                    fixed_reason=SES_SUBTYPE_REASON.get(subtype, "undefined"),
                    hard=None if permanent else False,
                )
            )
        parsed = ParsedMessage(Kind.BOUNCE, tuple(recipients), subject="SES bounce")
    elif kind == "Complaint":
        complaint = note.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        for rcpt in complaint.get("complainedRecipients") or []:
            if isinstance(rcpt, dict):
                address = str(rcpt.get("emailAddress") or "").strip().lower() or None
                recipients.append(
                    RecipientOutcome(address, "feedback", False, feedback_type=feedback)
                )
        parsed = ParsedMessage(Kind.COMPLAINT, tuple(recipients), subject="SES complaint")
    else:
        return None
    source = str(mail.get("source") or "")
    return Normalized(parsed, _ses_message_id(mail), (source,), f"ses:{sns_message_id}")


@dataclass(frozen=True)
class SnsOutcome:
    action: str  # confirmed | recorded | ignored | duplicate
    result: intake.Result | None = None


def handle_sns(
    ctx: intake.Context,
    workspace_id: int,
    body: bytes,
    *,
    fetch: Fetch = fetch_https,
) -> SnsOutcome:
    """One SNS POST for the workspace: verify, confirm a subscription, or record."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("the body is not an SNS JSON message", field="body") from exc
    if not isinstance(message, dict):
        raise ValidationFailed("the body is not an SNS JSON message", field="body")
    verify_sns(message, fetch)
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        fetch(amazon_url(str(message.get("SubscribeURL", ""))))
        return SnsOutcome("confirmed")
    if kind != "Notification":
        return SnsOutcome("ignored")
    try:
        note = json.loads(str(message.get("Message", "")))
    except ValueError:
        note = None
    normalized = (
        normalize_ses(note, str(message.get("MessageId"))) if isinstance(note, dict) else None
    )
    if normalized is None:
        return SnsOutcome("ignored")
    result = _record(ctx, workspace_id, normalized, body, "ses")
    return SnsOutcome("duplicate" if result.duplicate else "recorded", result)


def _record(
    ctx: intake.Context, workspace_id: int, item: Normalized, raw: bytes, source: str
) -> intake.Result:
    with ctx.db.system() as session:
        sent = tying.find_sent(
            session,
            ctx.signer,
            addresses=item.addresses,
            message_id=item.message_id,
            workspace_id=workspace_id,
        )
    return intake.record_parsed(
        ctx,
        item.parsed,
        raw=raw,
        source=source,
        workspace_id=workspace_id,
        dedupe_key=item.dedupe_key,
        sent=sent,
    )


# --- SendGrid --------------------------------------------------------------------------

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
# ``dropped`` reasons: SendGrid did not even try, because of its own lists.
SENDGRID_DROPPED = {
    "bounced address": ("userunknown", True),
    "invalid": ("userunknown", True),
    "invalid smtpapi header": ("undefined", False),
    "spam reporting address": ("rejected", False),
    "spam content": ("spamdetected", False),
    "unsubscribed address": ("rejected", False),
}


def load_sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid shows the key as base64 DER; a PEM block works too."""
    text = text.strip()
    try:
        key = (
            load_pem_public_key(text.encode())
            if text.startswith("-----")
            else load_der_public_key(base64.b64decode(text))
        )
    except (ValueError, binascii.Error) as exc:
        raise ValidationFailed(
            "POSTWISE_BOUNCE_SENDGRID_PUBLIC_KEY is not a public key", field="public_key"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValidationFailed("the SendGrid key must be an ECDSA key", field="public_key")
    return key


def verify_sendgrid(
    key: ec.EllipticCurvePublicKey, body: bytes, signature: str | None, timestamp: str | None
) -> None:
    if not signature or not timestamp:
        raise AuthenticationFailed(
            f"the {SENDGRID_SIGNATURE} and {SENDGRID_TIMESTAMP} headers are required",
            code="invalid_sendgrid_signature",
        )
    try:
        key.verify(
            base64.b64decode(signature),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise AuthenticationFailed(
            "SendGrid signature does not match", code="invalid_sendgrid_signature"
        ) from exc


def normalize_sendgrid(event: Mapping[str, Any]) -> Normalized | None:
    """One SendGrid event: ``bounce``, ``dropped`` or ``spamreport``; others are None."""
    name = str(event.get("event") or "")
    email = str(event.get("email") or "").strip().lower() or None
    reason = str(event.get("reason") or event.get("response") or "")
    status = str(event["status"]) if event.get("status") else None
    if name == "bounce":
        outcome = _outcome(email, status=status, diagnostic=reason, action="failed")
        if event.get("type") == "blocked":  # a temporary block by the receiving server
            outcome = RecipientOutcome(
                outcome.recipient,
                outcome.reason,
                False,
                status=outcome.status,
                reply_code=outcome.reply_code,
                action="failed",
                diagnostic=outcome.diagnostic,
                filter_wording=outcome.filter_wording,
            )
        parsed = ParsedMessage(Kind.BOUNCE, (outcome,), subject="SendGrid bounce")
    elif name == "dropped":
        fixed, hard = SENDGRID_DROPPED.get(reason.strip().lower(), ("undefined", False))
        outcome = RecipientOutcome(email, fixed, hard, action="failed", diagnostic=reason or None)
        parsed = ParsedMessage(Kind.BOUNCE, (outcome,), subject="SendGrid dropped")
    elif name == "spamreport":
        outcome = RecipientOutcome(email, "feedback", False, feedback_type="abuse")
        parsed = ParsedMessage(Kind.COMPLAINT, (outcome,), subject="SendGrid spam report")
    else:
        return None
    event_id = str(event.get("sg_event_id") or "")
    if not event_id:
        event_id = f"{event.get('sg_message_id')}:{name}:{email}:{event.get('timestamp')}"
    message_id = event.get("smtp-id")
    return Normalized(
        parsed, str(message_id) if message_id else None, (), f"sendgrid:{event_id}"[:255]
    )


@dataclass
class SendgridOutcome:
    recorded: int = 0
    duplicates: int = 0
    ignored: int = 0


def handle_sendgrid(
    ctx: intake.Context,
    workspace_id: int,
    body: bytes,
    *,
    key: ec.EllipticCurvePublicKey | None = None,
    signature: str | None = None,
    timestamp: str | None = None,
) -> SendgridOutcome:
    """One SendGrid POST (a JSON array of events) for the workspace."""
    if key is not None:
        verify_sendgrid(key, body, signature, timestamp)
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("the body is not a JSON array of events", field="body") from exc
    if not isinstance(events, list):
        raise ValidationFailed("the body is not a JSON array of events", field="body")
    out = SendgridOutcome()
    for event in events[:10000]:
        item = normalize_sendgrid(event) if isinstance(event, dict) else None
        if item is None:
            out.ignored += 1
            continue
        raw = json.dumps(event, sort_keys=True).encode()
        result = _record(ctx, workspace_id, item, raw, "sendgrid")
        if result.duplicate:
            out.duplicates += 1
        else:
            out.recorded += 1
    return out
