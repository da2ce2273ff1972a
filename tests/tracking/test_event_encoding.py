"""Events are encoded by orjson: the 32 KB limit matches the exact size of the call as sent,
the NUL check reads that encoding, and the rows the store sends to PostgreSQL (the calls
themselves, serialized) decode to the parsed calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from postwise.tracking import events as tracking_events
from postwise.tracking.events import BadBatch, parse_batch
from postwise.tracking.limits import MAX_EVENT_BYTES

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


def exact_size(raw: dict[str, Any]) -> int:
    return len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())


@st.composite
def calls(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["track", "page", "identify", "group", "alias"]))
    raw: dict[str, Any] = {"type": kind, "userId": draw(st.text("abc123", min_size=1))}
    body = draw(st.dictionaries(st.text("kpq", min_size=1, max_size=3), text, max_size=4))
    # Sizes around the limit: one big value, ASCII or not.
    filler = draw(st.sampled_from(["x", "é", "漢", "\u2028"]))
    near = MAX_EVENT_BYTES // len(filler.encode())
    body["pad"] = filler * draw(st.one_of(st.integers(0, 50), st.integers(near - 300, near + 20)))
    if kind == "track":
        raw.update(event=draw(text.filter(lambda t: 0 < len(t.strip()) < 100)), properties=body)
    elif kind == "page":
        raw.update(name=draw(text), properties=body)
    elif kind in ("identify", "group"):
        raw["traits"] = body
        if kind == "group":
            raw["groupId"] = "acme"
    else:
        raw.update(previousId="anon-1", note=body)  # alias: an unknown key carries the bulk
    if draw(st.booleans()):
        raw["context"] = {"page": {"url": "https://a.example/?utm_source=n"}, "x": draw(text)}
    return raw


@settings(max_examples=150, deadline=None)
@given(calls())
def test_the_size_limit_matches_the_exact_size_of_the_call(raw: dict[str, Any]) -> None:
    event("over the limit" if exact_size(raw) > MAX_EVENT_BYTES else "within the limit")
    if exact_size(raw) > MAX_EVENT_BYTES:
        with pytest.raises(BadBatch) as caught:
            parse_batch({"batch": [raw]}, received_at=NOW, ip="192.0.2.1")
        assert [p.code for p in caught.value.problems] == ["event_too_large"]
        return
    [call] = parse_batch({"batch": [raw]}, received_at=NOW, ip="192.0.2.1")
    assert call.context["ip"] == "192.0.2.1"


@settings(max_examples=60, deadline=None)
@given(st.lists(calls(), min_size=1, max_size=5))
def test_the_rows_sent_decode_to_the_parsed_calls(raws: list[dict[str, Any]]) -> None:
    for raw in raws:
        raw.get("properties", raw.get("traits", raw.get("note", {}))).pop("pad", None)
    parsed = parse_batch({"batch": raws, "sentAt": NOW.isoformat()}, received_at=NOW)
    decoded = json.loads(orjson.dumps(parsed))
    assert [r["properties"] for r in decoded] == [c.properties for c in parsed]
    assert [r["context"] for r in decoded] == [c.context for c in parsed]
    assert [(r["name"], r["user_id"], r["occurred_at"]) for r in decoded] == [
        (c.name, c.user_id, c.occurred_at.isoformat()) for c in parsed
    ]
    assert [datetime.fromisoformat(r["sent_at"]) for r in decoded] == [NOW] * len(parsed)


@pytest.mark.parametrize("where", ["properties", "context", "event", "unknown"])
def test_a_nul_anywhere_in_the_call_is_refused(where: str) -> None:
    raw: dict[str, Any] = {"type": "track", "userId": "u1", "event": "Signed Up"}
    if where == "unknown":
        raw["integrations"] = {"All": "a\x00b"}
    elif where == "event":
        raw["event"] = "Signed\x00Up"
    else:
        raw[where] = {"k": "a\x00b"}
    with pytest.raises(BadBatch) as caught:
        parse_batch({"batch": [raw]}, received_at=NOW)
    assert caught.value.problems[0].code == "invalid_character"


def test_an_escaped_backslash_before_u0000_is_not_a_nul() -> None:
    [call] = parse_batch(
        {"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"p": "\\u0000"}}]},
        received_at=NOW,
    )
    assert call.properties == {"p": "\\u0000"}
    assert tracking_events._NUL.search(orjson.dumps(call.properties)) is None
