"""What a contact chose in the preference center: topics they left and how often they
want marketing mail (docs/delivery.md, "Preference center").

Topics are the workspace's (``Workspace.settings["topics"]``: key -> display name), so
adding one needs no migration. A contact's choices live in two contact attributes,
``email_topics_off`` (topic keys they left) and ``email_frequency`` (``all``, ``weekly``
or ``monthly``): attributes merge on update, so an API upsert never wipes them, and
segments can read them like any other attribute. Both are honoured at send time by the
deliverer's screen (``blocked_by_choice``), not at queue time, so a choice made after a
campaign was queued still holds for its unsent rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from postwise.core import clock
from postwise.core.errors import Conflict, NotFound, ValidationFailed
from postwise.segments import changes as segment_changes
from postwise.storage.tables import Contact, ContactChange, OutboxMessage, Workspace
from postwise.storage.tenancy import workspace_of

TOPICS_SETTING = "topics"
TOPICS_OFF = "email_topics_off"
FREQUENCY = "email_frequency"
# A message's topic rides in its row's data under this key (no column, no migration).
TOPIC_KEY = "_topic"
# At most one marketing message per window; "all" has no cap.
FREQUENCIES: dict[str, timedelta | None] = {
    "all": None,
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=30),
}
FREQUENCY_LABELS = {
    "all": "Every email",
    "weekly": "At most one a week",
    "monthly": "At most one a month",
}
_TOPIC_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def workspace_topics(session: Session) -> dict[str, str]:
    workspace = session.get(Workspace, workspace_of(session))
    raw = (workspace.settings or {}).get(TOPICS_SETTING) if workspace is not None else None
    return {str(k): str(v) for k, v in (raw or {}).items()}


def define_topics(session: Session, topics: Mapping[str, str]) -> dict[str, str]:
    """Replace the workspace's topics. Contacts' opt-outs of a removed topic stay stored
    (harmless: no message carries the key), so re-adding it restores their choice."""
    for key, name in topics.items():
        if not _TOPIC_KEY_RE.match(key):
            raise ValidationFailed(
                "a topic key is 1-64 of a-z, 0-9, '_' and '-'", code="invalid_topic", field="topics"
            )
        if not name.strip() or len(name) > 200:
            raise ValidationFailed("a topic needs a name of up to 200 characters", field="topics")
    workspace = session.get(Workspace, workspace_of(session))
    assert workspace is not None
    workspace.settings = {**(workspace.settings or {}), TOPICS_SETTING: dict(topics)}
    return dict(topics)


def _check_topic(key: str, name: str) -> None:
    if not _TOPIC_KEY_RE.match(key):
        raise ValidationFailed(
            "a topic key is 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit",
            code="invalid_topic",
            field="key",
        )
    if not name.strip() or len(name) > 200:
        raise ValidationFailed(
            "a topic needs a name of 1-200 characters", code="invalid_topic_name", field="name"
        )


def _locked_workspace(session: Session) -> Workspace:
    """The workspace row, locked: two writers of its topics must not lose each other's."""
    workspace = session.get(Workspace, workspace_of(session), with_for_update=True)
    assert workspace is not None
    return workspace


def _store_topics(workspace: Workspace, topics: Mapping[str, str]) -> None:
    workspace.settings = {**(workspace.settings or {}), TOPICS_SETTING: dict(topics)}


def get_topic(session: Session, key: str) -> tuple[str, str]:
    topics = workspace_topics(session)
    if key not in topics:
        raise NotFound(f"topic {key!r} does not exist", field="key")
    return key, topics[key]


def create_topic(session: Session, key: str, name: str) -> tuple[str, str]:
    """Add one topic; 409 ``topic_exists`` if the key is taken (rename with ``rename_topic``)."""
    _check_topic(key, name)
    workspace = _locked_workspace(session)
    topics = workspace_topics(session)
    if key in topics:
        raise Conflict(f"topic {key!r} already exists", code="topic_exists", field="key")
    _store_topics(workspace, {**topics, key: name.strip()})
    return key, name.strip()


def rename_topic(session: Session, key: str, name: str) -> tuple[str, str]:
    """Change a topic's display name; its key (what messages and opt-outs name) stays."""
    workspace = _locked_workspace(session)
    topics = workspace_topics(session)
    if key not in topics:
        raise NotFound(f"topic {key!r} does not exist", field="key")
    _check_topic(key, name)
    _store_topics(workspace, {**topics, key: name.strip()})
    return key, name.strip()


def delete_topic(session: Session, key: str) -> None:
    """Remove a topic. Queued messages naming it still honour opt-outs stored under it
    (the screen reads the contact's attribute, not the topic list); new sends naming it
    are refused with ``unknown_topic``."""
    workspace = _locked_workspace(session)
    topics = workspace_topics(session)
    if key not in topics:
        raise NotFound(f"topic {key!r} does not exist", field="key")
    _store_topics(workspace, {k: v for k, v in topics.items() if k != key})


def check_topic(session: Session, topic: str | None) -> None:
    if topic is not None and topic not in workspace_topics(session):
        raise ValidationFailed(f"unknown topic {topic!r}", code="unknown_topic", field="topic")


def topics_off(attributes: Mapping[str, Any]) -> set[str]:
    value = attributes.get(TOPICS_OFF)
    return {str(v) for v in value} if isinstance(value, list) else set()


def frequency(attributes: Mapping[str, Any]) -> str:
    value = attributes.get(FREQUENCY)
    return value if isinstance(value, str) and value in FREQUENCIES else "all"


def save_choices(
    session: Session, contact: Contact, *, topics_kept: Iterable[str], frequency_choice: str
) -> None:
    """Store the topics the contact left (every workspace topic not kept) and the cap."""
    if frequency_choice not in FREQUENCIES:
        raise ValidationFailed(
            f"frequency must be one of {', '.join(FREQUENCIES)}",
            code="invalid_frequency",
            field="frequency",
        )
    defined = workspace_topics(session)
    kept = set(topics_kept)
    # Opt-outs of topics no longer defined are kept as they were.
    off = sorted((topics_off(contact.attributes) - defined.keys()) | (defined.keys() - kept))
    new = {TOPICS_OFF: off, FREQUENCY: frequency_choice}
    old = {k: contact.attributes.get(k) for k in new}
    if old == new:
        return
    now = clock.utcnow()
    contact.attributes = {**contact.attributes, **new}
    contact.updated_at = now
    session.add(
        ContactChange(
            workspace_id=contact.workspace_id,
            contact_id=contact.id,
            at=now,
            kind="updated",
            source="system",
            changes={"attributes": [old, new]},
        )
    )
    changes = {"attributes": [old, new]}
    segment_changes.note(session, [contact.id], segment_changes.contact_keys(changes))


class _Row(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def contact_id(self) -> int | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


def blocked_by_choice(
    session: Session, rows: Sequence[_Row], now: datetime | None = None
) -> dict[int, str]:
    """Marketing rows (of one workspace) the contact's choices stop: ``topic`` when the
    message's topic is one they left, ``frequency`` when a marketing message was sent to
    them within their window (or an earlier row of this batch already takes the slot)."""
    marketing = [r for r in rows if r.kind == "marketing" and r.contact_id is not None]
    if not marketing:
        return {}
    contact_ids = {r.contact_id for r in marketing}
    attributes = {
        int(cid): attrs or {}
        for cid, attrs in session.execute(
            select(Contact.id, Contact.attributes).where(Contact.id.in_(contact_ids))
        )
    }
    windows = {
        cid: window
        for cid, attrs in attributes.items()
        if (window := FREQUENCIES[frequency(attrs)]) is not None
    }
    now = now or clock.utcnow()
    last_sent: dict[int, datetime] = {}
    if windows:
        longest = max(windows.values())
        last_sent = {
            int(cid): at
            for cid, at in session.execute(
                select(OutboxMessage.contact_id, func.max(OutboxMessage.sent_at))
                .where(
                    OutboxMessage.contact_id.in_(windows),
                    OutboxMessage.kind == "marketing",
                    OutboxMessage.status == "sent",
                    OutboxMessage.sent_at >= now - longest,
                )
                .group_by(OutboxMessage.contact_id)
            )
            if cid is not None and at is not None
        }
    blocked: dict[int, str] = {}
    for row in marketing:
        cid = int(row.contact_id)  # type: ignore[arg-type]
        attrs = attributes.get(cid, {})
        topic = row.data.get(TOPIC_KEY)
        if topic is not None and topic in topics_off(attrs):
            blocked[row.id] = "topic"
            continue
        window = windows.get(cid)
        if window is None:
            continue
        last = last_sent.get(cid)
        if last is not None and clock.as_utc(last) > now - window:
            blocked[row.id] = "frequency"
        else:
            last_sent[cid] = now  # this row takes the slot
    return blocked
