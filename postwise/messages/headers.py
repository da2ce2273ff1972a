"""Stage 5: the message headers, VERP return path and one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

import re
from email.utils import format_datetime

from postwise.messages import encoding
from postwise.messages.pipeline import Draft
from postwise.tracking.tokens import TokenKind

_FEEDBACK_FIELD = re.compile(r"[^A-Za-z0-9._-]+")
_HEADER_NAME = re.compile(r"[!-9;-~]{1,76}")


def _feedback_field(value: str) -> str:
    return _FEEDBACK_FIELD.sub("-", value)[:64] or "-"


def add_headers(draft: Draft) -> Draft:
    sender, delivery, recipient = draft.sender, draft.delivery, draft.recipient
    bounce = draft.tokens.sign(TokenKind.BOUNCE, delivery.message_id)
    domain = encoding.address(f"x@{sender.sending_domain}", field="sending_domain").split("@")[1]
    bounce_domain = encoding.address(f"x@{sender.bounce_domain}", field="bounce_domain").split("@")[
        1
    ]
    draft.message_id = f"<{bounce}.{delivery.message_id}@{domain}>"
    draft.mail_from = f"bounces+{bounce}@{bounce_domain}"
    draft.rcpt = encoding.address(recipient.email, field="email")
    subject = encoding.text_value("Subject", draft.subject)
    headers: list[tuple[str, str]] = [
        ("Date", format_datetime(draft.now)),
        ("From", encoding.mailbox(sender.from_name, sender.from_address, field="from_address")),
    ]
    if sender.reply_to:
        headers.append(("Reply-To", encoding.mailbox("", sender.reply_to, field="reply_to")))
    headers += [
        ("To", encoding.mailbox(recipient.name, recipient.email, field="email")),
        ("Subject", subject),
        ("Message-ID", draft.message_id),
        ("MIME-Version", "1.0"),
    ]
    feedback = ":".join(
        _feedback_field(part)
        for part in (
            delivery.campaign or "none",
            f"w{delivery.workspace_id}",
            delivery.kind,
            sender.sender_id,
        )
    )
    headers.append(("Feedback-ID", feedback))
    if delivery.kind == "marketing":
        list_id = sender.list_id or (
            f"<{'list' + str(delivery.list_id) if delivery.list_id else 'news'}"
            f".w{delivery.workspace_id}.{domain}>"
        )
        headers.append(("List-Id", encoding.fold("List-Id", encoding.clean(list_id))))
        headers.append(
            (
                "List-Unsubscribe",
                f"<{draft.unsubscribe_url}>,\r\n <{draft.unsubscribe_mailto}>",
            )
        )
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    for name, value in delivery.extra_headers:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        headers.append((name, encoding.text_value(name, value)))
    draft.headers = headers
    return draft
