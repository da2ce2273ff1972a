"""Unsubscribing from a link in a message: one-click (RFC 8058) and the preference center.

The link carries a signed token (``postwise.tracking.tokens``, kind ``UNSUBSCRIBE``:
workspace, contact, list or 0, outbox row), so it needs no login, cookie or CSRF token
and cannot be forged for someone else. Every action here is idempotent and takes effect
in the caller's transaction, before the response: the contact's membership or status
changes, and their pending outbox rows are suppressed at once, so no message already in
line is handed to a transport afterwards (``outbox.still_ours`` sees it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.contacts import actions, lists
from postwise.core import clock
from postwise.core.errors import NotFound
from postwise.delivery import outbox
from postwise.delivery import preferences as choices
from postwise.segments import changes as segment_changes
from postwise.storage.tables import Event, ListMembership, MailingList, OutboxMessage
from postwise.storage.tenancy import workspace_of
from postwise.tracking.tokens import TokenKind, TokenSigner

SOURCE = "system"


@dataclass(frozen=True)
class Ref:
    workspace_id: int
    contact_id: int
    list_id: int | None
    outbox_id: int


def decode(signer: TokenSigner, token: str) -> Ref:
    """The token's contents, or NotFound for anything we did not sign (no detail leaks)."""
    values = signer.verify(TokenKind.UNSUBSCRIBE, token)
    if values is None or len(values) != 4 or values[0] == 0 or values[1] == 0:
        raise NotFound("this unsubscribe link is not valid", code="invalid_token", field="token")
    workspace_id, contact_id, list_id, outbox_id = values
    return Ref(workspace_id, contact_id, list_id or None, outbox_id)


def _event(session: Session, ref: Ref, list_id: int | None) -> None:
    key = f"unsubscribe:{ref.outbox_id}:{ref.contact_id}:{list_id or 'all'}"
    exists = session.scalar(
        select(Event.id).where(Event.workspace_id == ref.workspace_id, Event.message_id == key)
    )
    if exists is None:
        now = clock.utcnow()
        # The message's campaign and workflow, so "unsubscribed from campaign X" is a
        # segment (docs/segments.md); the row may be gone (outbox retention).
        message = session.execute(
            select(OutboxMessage.campaign_key, OutboxMessage.workflow_key).where(
                OutboxMessage.id == ref.outbox_id
            )
        ).first()
        keys_of = {}
        if message is not None:
            keys_of = {
                k: v
                for k, v in (("campaign_key", message[0]), ("workflow_key", message[1]))
                if v is not None
            }
        session.add(
            Event(
                workspace_id=ref.workspace_id,
                contact_id=ref.contact_id,
                type="email",
                name="Unsubscribed",
                properties={"outbox_id": ref.outbox_id, "list_id": list_id, **keys_of},
                message_id=key,
                occurred_at=now,
                received_at=now,
            )
        )
        keys = [segment_changes.event_key("Unsubscribed")]
        segment_changes.note(session, [ref.contact_id], keys, workspace_id=ref.workspace_id)


def one_click(session: Session, ref: Ref) -> None:
    """The RFC 8058 POST: leave the message's list, or everything for mail without a list.

    ``session`` must be bound to ``ref.workspace_id``. A contact erased since the mail
    went out is already unmailable: nothing to do, and no error (the POST is idempotent).
    """
    if workspace_of(session) != ref.workspace_id:
        raise NotFound("this unsubscribe link is not valid", code="invalid_token", field="token")
    try:
        actions.get_contact(session, ref.contact_id)
    except NotFound:
        return
    membership = session.get(ListMembership, (ref.list_id, ref.contact_id)) if ref.list_id else None
    if membership is not None:
        lists.unsubscribe(session, ref.list_id, ref.contact_id, source=SOURCE)  # type: ignore[arg-type]
        outbox.suppress_pending_for_contact(
            session, ref.contact_id, marketing_only=True, list_id=ref.list_id
        )
        _event(session, ref, ref.list_id)
        return
    unsubscribe_all(session, ref)


def unsubscribe_all(session: Session, ref: Ref) -> None:
    contact = actions.get_contact(session, ref.contact_id)
    if contact.status in ("subscribed", "pending"):
        actions.set_status(
            session, ref.contact_id, "unsubscribed", source=SOURCE, reason="unsubscribe link"
        )
    outbox.suppress_pending_for_contact(session, ref.contact_id, marketing_only=True)
    _event(session, ref, None)


@dataclass(frozen=True)
class ListChoice:
    list_id: int
    name: str
    subscribed: bool


@dataclass(frozen=True)
class TopicChoice:
    key: str
    name: str
    subscribed: bool


@dataclass(frozen=True)
class Preferences:
    email: str
    globally_unsubscribed: bool
    lists: list[ListChoice]
    topics: list[TopicChoice]
    frequency: str


def preferences(session: Session, ref: Ref) -> Preferences:
    contact = actions.get_contact(session, ref.contact_id)
    rows = session.execute(
        select(MailingList.id, MailingList.name, ListMembership.status)
        .join(ListMembership, ListMembership.list_id == MailingList.id)
        .where(ListMembership.contact_id == ref.contact_id)
        .order_by(MailingList.name)
    ).all()
    off = choices.topics_off(contact.attributes)
    return Preferences(
        contact.email,
        contact.status == "unsubscribed",
        [ListChoice(lid, name, status == "subscribed") for lid, name, status in rows],
        [
            TopicChoice(key, name, key not in off)
            for key, name in sorted(choices.workspace_topics(session).items(), key=lambda t: t[1])
        ],
        choices.frequency(contact.attributes),
    )


def save_preferences(
    session: Session,
    ref: Ref,
    keep_list_ids: Iterable[int],
    *,
    unsubscribe_everything: bool,
    keep_topics: Iterable[str] | None = None,
    frequency: str | None = None,
) -> Preferences:
    """Leave every list of the contact not in ``keep_list_ids``; never subscribes anyone
    (re-joining a list needs fresh consent, which a link cannot give). Topics are
    preferences, not consent: a topic left earlier can be ticked again here. With
    ``keep_topics``/``frequency`` None the stored choices stay as they are."""
    keep = set(keep_list_ids)
    if keep_topics is not None or frequency is not None:
        contact = actions.get_contact(session, ref.contact_id)
        current = preferences(session, ref)
        choices.save_choices(
            session,
            contact,
            topics_kept=(
                keep_topics
                if keep_topics is not None
                else [t.key for t in current.topics if t.subscribed]
            ),
            frequency_choice=frequency if frequency is not None else current.frequency,
        )
    for choice in preferences(session, ref).lists:
        if choice.subscribed and (unsubscribe_everything or choice.list_id not in keep):
            lists.unsubscribe(session, choice.list_id, ref.contact_id, source=SOURCE)
            outbox.suppress_pending_for_contact(
                session, ref.contact_id, marketing_only=True, list_id=choice.list_id
            )
            _event(session, ref, choice.list_id)
    if unsubscribe_everything:
        unsubscribe_all(session, ref)
    return preferences(session, ref)
