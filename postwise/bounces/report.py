"""What the parser makes of one inbound message: the contract between parsing and intake.

Parsing (``bounces/parser.py``) turns raw bytes into a ``ParsedMessage`` and never raises;
intake (``bounces/intake.py``) stores it, ties it to the outbox and applies the policy.
Keeping this shape in its own module lets either side change without the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    BOUNCE = "bounce"  # a delivery failure (or delay) for one or more recipients
    COMPLAINT = "complaint"  # an ARF feedback report (RFC 5965)
    AUTOREPLY = "autoreply"  # vacation / out-of-office (RFC 3834): not a bounce
    DELIVERED = "delivered"  # a success DSN (Action: delivered/relayed/expanded)
    NOT_BOUNCE = "not_bounce"  # an ordinary message
    UNPARSED = "unparsed"  # could not be read at all; ``unparsed_reason`` says why


@dataclass(frozen=True)
class RecipientOutcome:
    """One recipient's fate as the message reports it."""

    recipient: str | None  # lowercased address; None when the message does not say
    reason: str  # taxonomy value, as the corpus labels: userunknown, mailboxfull, ...
    hard: bool  # permanent, address-level: suppress (unless a filter block is suspected)
    status: str | None = None  # RFC 3463 enhanced code, e.g. "5.1.1"
    reply_code: int | None = None  # SMTP reply code, e.g. 550
    action: str | None = None  # DSN Action: failed | delayed | delivered | relayed | expanded
    diagnostic: str | None = None  # Diagnostic-Code or the MTA's sentence, whitespace collapsed
    remote_mta: str | None = None
    feedback_type: str | None = None  # complaints: abuse | opt-out | auth-failure | fraud | ...
    filter_wording: bool = False  # the diagnostic speaks of spam filters, reputation, policy


@dataclass(frozen=True)
class ParsedMessage:
    kind: Kind
    recipients: tuple[RecipientOutcome, ...] = ()
    original_message_id: str | None = None  # Message-ID of the returned original, if present
    original_return_path: str | None = None  # e.g. the VERP address bounces+TOKEN@domain
    original_headers: dict[str, str] = field(default_factory=dict)  # X-Postwise-* etc.
    reporting_mta: str | None = None
    subject: str | None = None
    from_address: str | None = None
    unparsed_reason: str | None = None  # set when kind is UNPARSED or parts were unreadable
