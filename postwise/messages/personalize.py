"""Stage 1: the render context for one contact, and their unsubscribe links."""

from __future__ import annotations

from postwise.messages.pipeline import Draft
from postwise.tracking.tokens import TokenKind


def personalize(draft: Draft) -> Draft:
    sender, delivery, recipient = draft.sender, draft.delivery, draft.recipient
    token = draft.tokens.sign(
        TokenKind.UNSUBSCRIBE,
        delivery.workspace_id,
        recipient.contact_id or 0,
        delivery.list_id or 0,
        delivery.message_id,
    )
    base = sender.base_url.rstrip("/")
    draft.unsubscribe_url = f"{base}/u/{token}"
    draft.unsubscribe_mailto = f"mailto:unsubscribe+{token}@{sender.bounce_domain}"
    contact = dict(recipient.fields)
    contact.setdefault("email", recipient.email)
    draft.context = {
        "contact": contact,
        "company": dict(recipient.company) if recipient.company else {},
        "data": dict(delivery.data),
        "workspace": {"name": sender.workspace_name},
        "sender": {
            "name": sender.from_name,
            "email": sender.from_address,
            "postal_address": sender.postal_address,
        },
        "unsubscribe_url": draft.unsubscribe_url,
        "preferences_url": f"{base}/u/{token}?preferences=1",
        "message": {"kind": delivery.kind, "campaign": delivery.campaign or ""},
    }
    return draft
