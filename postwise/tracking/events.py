"""Segment-spec calls, checked and put in their stored shape (docs/tracking.md).

``parse_batch`` is pure: it checks every call of a batch, collects every problem with the
index of the call at fault, and either raises ``BadBatch`` naming them all or returns the
calls ready to store. Nothing is stored for a batch with one bad call.

Stored naming convention (what segments query): ``type`` is the call type; ``name`` is
the event name for ``track``, ``"Page Viewed"`` for ``page`` and ``"Screen Viewed"`` for
``screen`` (the page or screen name goes in ``properties.name``), and ``"Identify"``,
``"Group"``, ``"Alias"`` for the other three.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from postwise.core.errors import ValidationFailed
from postwise.tracking.limits import MAX_EVENT_BYTES

TYPES = ("identify", "track", "page", "screen", "group", "alias")
FIXED_NAMES = {
    "page": "Page Viewed",
    "screen": "Screen Viewed",
    "identify": "Identify",
    "group": "Group",
    "alias": "Alias",
}
MAX_ID = 255  # the width of the id and name columns
# A client clock may be wrong, but a correction beyond this is a broken sentAt, not skew.
MAX_SKEW = timedelta(days=365)
# utm_* query parameter -> context.campaign key (Segment's names).
UTM_KEYS = {
    "utm_source": "source", "utm_medium": "medium", "utm_campaign": "name",
    "utm_term": "term", "utm_content": "content",
}  # fmt: skip
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash


@dataclass(frozen=True)
class EventError:
    """One problem with one call of a batch; ``index`` is its position in ``batch``."""

    index: int
    field: str | None
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }


class BadBatch(ValidationFailed):
    """Some calls of a batch are invalid; nothing of the batch is stored."""

    def __init__(self, problems: list[EventError]) -> None:
        first = problems[0]
        where = f"batch[{first.index}]"
        head = f"{where}: {first.message}"
        message = head if len(problems) == 1 else f"{len(problems)} bad events; first {head}"
        super().__init__(message, code=first.code, field=first.field)
        self.problems = problems


@dataclass(slots=True)
class Call:
    """One call in its stored shape, plus what identity resolution needs.

    On PostgreSQL the store sends the calls themselves, serialized by orjson, as the
    batch's rows: the field names are the ``events`` columns (docs/tracking.md).
    """

    index: int
    type: str
    name: str
    user_id: str | None
    anonymous_id: str | None
    message_id: str | None
    properties: dict[str, Any]  # track/page/screen properties; identify/group traits
    context: dict[str, Any]
    occurred_at: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    group_id: str | None = None
    previous_id: str | None = None
    # Set by the store (``ingest.py``): the contact an identity call reached, and the
    # email a userId stands for (the statement resolves the contact from it).
    contact_id: int | None = None
    user_email: str | None = None


class _Problems:
    def __init__(self) -> None:
        self.found: list[EventError] = []
        self.index = 0

    def add(self, field: str | None, code: str, message: str) -> None:
        self.found.append(EventError(self.index, field, code, message))


def _identifier(raw: Mapping[str, Any], key: str, problems: _Problems) -> str | None:
    """Ids may be strings or numbers (clients send both); stored as text."""
    value = raw.get(key)
    if value is None:
        return None
    if value.__class__ is str:  # the usual case, checked in the fewest steps
        text = value.strip()
        if len(text) <= MAX_ID and "\x00" not in text:
            return text or None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.add(key, "invalid_type", f"{key} must be a string")
        return None
    text = str(value).strip()
    if len(text) > MAX_ID:
        problems.add(key, "too_long", f"{key} is longer than {MAX_ID} characters")
        return None
    if "\x00" in text:
        problems.add(key, "invalid_character", f"{key} contains a NUL character")
        return None
    return text or None


def _object(raw: Mapping[str, Any], key: str, problems: _Problems) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(key, "invalid_type", f"{key} must be an object")
        return {}
    return value


def parse_time(value: Any, key: str, problems: _Problems) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(key, "invalid_type", f"{key} must be an ISO 8601 date-time string")
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        problems.add(key, "invalid_timestamp", f"{key} {value[:40]!r} is not an ISO 8601 date-time")
        return None
    zone = parsed.tzinfo
    if zone is UTC:
        return parsed
    return parsed.replace(tzinfo=UTC) if zone is None else parsed.astimezone(UTC)


def _campaign_from_url(context: dict[str, Any]) -> None:
    """``context.campaign`` from the page URL's utm_* parameters, as analytics.js does."""
    page = context.get("page")
    url = page.get("url") if isinstance(page, dict) else None
    if not isinstance(url, str) or "utm_" not in url:
        return
    campaign = {
        UTM_KEYS[key]: values[0]
        for key, values in parse_qs(urlsplit(url).query).items()
        if key in UTM_KEYS and values
    }
    if campaign:
        context["campaign"] = campaign


def _occurred_at(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """The client's timestamp moved by the client clock's error (receivedAt - sentAt)."""
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    skew = received_at - sent_at
    if abs(skew) > MAX_SKEW:
        return timestamp
    return timestamp + skew


def _one(
    raw: Any,
    kind: str | None,
    batch_sent_at: datetime | None,
    received_at: datetime,
    ip: str | None,
    problems: _Problems,
) -> Call | None:
    if not isinstance(raw, dict):
        problems.add(None, "invalid_type", "each event must be a JSON object")
        return None
    before = len(problems.found)
    declared = raw.get("type")
    if kind is None:
        if declared not in TYPES:
            problems.add("type", "invalid_type", f"type must be one of: {', '.join(TYPES)}")
            return None
        kind = str(declared)
    user_id = _identifier(raw, "userId", problems)
    anonymous_id = _identifier(raw, "anonymousId", problems)
    given = len(problems.found) > before  # an id was sent but is unusable: said already
    message_id = _identifier(raw, "messageId", problems)
    if user_id is None and anonymous_id is None and kind != "alias" and not given:
        problems.add("userId", "missing_identity", "give userId or anonymousId (or both)")
    context = dict(_object(raw, "context", problems))
    timestamp = parse_time(raw.get("timestamp"), "timestamp", problems)
    original = parse_time(raw.get("originalTimestamp"), "originalTimestamp", problems)
    sent_at = parse_time(raw.get("sentAt"), "sentAt", problems) or batch_sent_at
    group_id = previous_id = None
    name = FIXED_NAMES.get(kind, "")
    if kind == "track":
        event = raw.get("event")
        name = event.strip() if isinstance(event, str) else ""
        if not name:
            problems.add("event", "missing_event", "a track call needs the event name in 'event'")
        elif len(name) > MAX_ID:
            problems.add("event", "too_long", f"event is longer than {MAX_ID} characters")
        properties = _object(raw, "properties", problems)
    elif kind in ("page", "screen"):
        properties = dict(_object(raw, "properties", problems))
        for key in ("name", "category"):
            value = raw.get(key)
            if value is not None and not isinstance(value, str):
                problems.add(key, "invalid_type", f"{key} must be a string")
            elif value:
                properties.setdefault(key, value)
    elif kind in ("identify", "group"):
        properties = _object(raw, "traits", problems)
        if kind == "group":
            group_id = _identifier(raw, "groupId", problems)
            if group_id is None:
                problems.add("groupId", "missing_group_id", "a group call needs groupId")
    else:  # alias
        previous_id = _identifier(raw, "previousId", problems)
        properties = {"previousId": previous_id} if previous_id else {}
        if previous_id is None:
            problems.add("previousId", "missing_previous_id", "an alias call needs previousId")
        if user_id is None:
            problems.add("userId", "missing_identity", "an alias call needs userId")
    if len(problems.found) > before:
        return None
    if ip and not context.get("ip"):
        context["ip"] = ip
    if "campaign" not in context:
        _campaign_from_url(context)
    # One encoding of the call as sent (orjson: compact UTF-8, about a microsecond) gives
    # both its exact size and the NUL check; what was added above (context.ip, the
    # campaign, a page's name) comes from the call itself or the request.
    try:
        sent = orjson.dumps(raw)
    except orjson.JSONEncodeError as exc:  # only from Python callers: a body decodes clean
        problems.add(None, "invalid_value", f"the event cannot be stored as JSON: {exc}")
        return None
    if len(sent) > MAX_EVENT_BYTES:
        problems.add(None, "event_too_large", f"the event is over {MAX_EVENT_BYTES} bytes")
        return None
    if b"\\u0000" in sent and _NUL.search(sent):  # PostgreSQL stores no NUL in text or jsonb
        problems.add(None, "invalid_character", "the event contains a NUL character (\\u0000)")
        return None
    return Call(
        index=problems.index,
        type=kind,
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        message_id=message_id,
        properties=properties,
        context=context,
        occurred_at=_occurred_at(timestamp or original, sent_at, received_at),
        original_timestamp=timestamp or original,
        sent_at=sent_at,
        group_id=group_id,
        previous_id=previous_id,
    )


def parse_batch(
    payload: Any, *, received_at: datetime, ip: str | None = None, kind: str | None = None
) -> list[Call]:
    """The calls of a ``/v1/batch`` body, or of one single call when ``kind`` is given."""
    problems = _Problems()
    if not isinstance(payload, dict):
        raise ValidationFailed("the body must be a JSON object", code="invalid_body")
    batch_sent_at = parse_time(payload.get("sentAt"), "sentAt", problems)
    if problems.found:
        raise ValidationFailed(problems.found[0].message, code="invalid_timestamp", field="sentAt")
    items: Sequence[Any]
    if kind is None:
        items = payload.get("batch")  # type: ignore[assignment]
        if not isinstance(items, list):
            raise ValidationFailed(
                "the body needs 'batch', a list of events", code="invalid_batch", field="batch"
            )
    else:
        items = [payload]
    calls: list[Call] = []
    for index, raw in enumerate(items):
        problems.index = index
        call = _one(raw, kind, batch_sent_at, received_at, ip, problems)
        if call is not None:
            calls.append(call)
    if problems.found:
        raise BadBatch(problems.found)
    return calls
