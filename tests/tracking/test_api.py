"""/v1 through the HTTP stack: auth, bad input, limits, dedupe, clock skew, rate limit."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from postwise.storage.database import Database
from postwise.storage.tables import Contact, Event
from postwise.tracking.limits import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from postwise.workspaces.actions import NewWorkspace
from tests.tracking.conftest import Tracker, basic, events


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["message"]
    return body


def count(db: Database, workspace_id: int, model: Any = Event) -> int:
    with db.tenant(workspace_id) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_track_is_stored_with_its_context(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    body = {
        "userId": "u1",
        "event": "Trial Started",
        "properties": {"plan": "pro"},
        "context": {
            "userAgent": "Mozilla/5.0",
            "page": {"url": "https://acme.test/pricing"},
            "campaign": {"source": "newsletter", "medium": "email"},
        },
        "messageId": "m-1",
    }
    response = tracker.post("/v1/track", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    [event] = events(db, acme.workspace_id)
    assert (event.type, event.name, event.user_id) == ("track", "Trial Started", "u1")
    assert event.properties == {"plan": "pro"}
    assert event.context["campaign"] == {"source": "newsletter", "medium": "email"}
    assert event.context["userAgent"] == "Mozilla/5.0"
    assert event.context["ip"] == "testclient"  # the request's peer when context.ip is absent


def test_page_and_screen_follow_the_naming_convention(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    response = tracker.batch(
        {"type": "page", "anonymousId": "a1", "name": "Pricing", "properties": {"url": "/p"},
         "context": {"ip": "203.0.113.9"}},
        {"type": "screen", "anonymousId": "a1", "name": "Home"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    page, screen = events(db, acme.workspace_id)
    assert (page.type, page.name, page.properties["name"]) == ("page", "Page Viewed", "Pricing")
    assert page.context["ip"] == "203.0.113.9"
    assert (screen.type, screen.name, screen.properties) == (
        "screen",
        "Screen Viewed",
        {"name": "Home"},
    )


def test_utm_parameters_of_the_page_become_the_campaign(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    url = "https://acme.test/p?utm_source=linkedin&utm_medium=paid&utm_campaign=q4&x=1"
    response = tracker.batch(
        {"type": "page", "anonymousId": "a", "context": {"page": {"url": url}}},
        {"type": "page", "anonymousId": "a",
         "context": {"page": {"url": url}, "campaign": {"source": "given"}}},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    derived, given = events(db, acme.workspace_id)
    assert derived.context["campaign"] == {"source": "linkedin", "medium": "paid", "name": "q4"}
    assert given.context["campaign"] == {"source": "given"}


def test_write_key_in_the_body_and_gzip(
    client: TestClient, db: Database, acme: NewWorkspace
) -> None:
    raw = gzip.compress(
        json.dumps(
            {"writeKey": acme.write_key, "batch": [{"type": "track", "userId": "u", "event": "E"}]}
        ).encode()
    )
    response = client.post("/v1/batch", content=raw, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert [e.name for e in events(db, acme.workspace_id)] == ["E"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_write_key"),
        ({"Authorization": "Bearer pw_wk_x"}, "malformed_authorization"),
        ({"Authorization": "Basic !!!"}, "malformed_authorization"),
        (basic("pw_wk_unknown"), "invalid_api_key"),
    ],
)
def test_bad_or_missing_write_keys_are_401(
    client: TestClient, headers: dict[str, str], code: str, db: Database, acme: NewWorkspace
) -> None:
    call = {"userId": "u", "event": "E"}
    assert_error(client.post("/v1/track", json=call, headers=headers), 401, code)
    assert count(db, acme.workspace_id) == 0


def test_a_management_key_is_not_a_write_key(
    client: TestClient, db: Database, acme: NewWorkspace
) -> None:
    call = {"userId": "u", "event": "E"}
    response = client.post("/v1/track", json=call, headers=basic(acme.api_key))
    assert_error(response, 401, "wrong_key_kind")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'{"batch": {"type": "track"}}', "invalid_batch"),
        (b'{"batch": [], "sentAt": 5}', "invalid_timestamp"),
    ],
)
def test_malformed_bodies_are_400(tracker: Tracker, body: bytes, code: str) -> None:
    assert_error(tracker.post("/v1/batch", body), 400, code)


def test_a_batch_with_bad_events_names_each_and_stores_nothing(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    good_identify = {"type": "identify", "userId": "u1", "traits": {"email": "ann@corp.test"}}
    response = tracker.batch(
        good_identify,
        {"type": "track", "event": "No Id"},
        {"type": "track", "userId": {"id": 1}, "event": "E"},
        {"type": "track", "userId": "u", "event": "E", "properties": [1]},
        {"type": "page", "anonymousId": "a", "timestamp": "yesterday"},
        {"type": "bogus", "userId": "u"},
        {"type": "track", "userId": "u"},
        "not an object",
        {"type": "group", "userId": "u"},
        {"type": "alias", "previousId": "a"},
        {"type": "track", "userId": "u", "event": "Nul", "properties": {"x": "a\x00b"}},
        {"type": "track", "userId": "u", "event": "Fine", "properties": {"x": "\\u0000"}},
    )
    body = assert_error(response, 400, "missing_identity")
    found = {(e["index"], e["code"]) for e in body["errors"]}
    assert found == {
        (1, "missing_identity"),
        (2, "invalid_type"),
        (3, "invalid_type"),
        (4, "invalid_timestamp"),
        (5, "invalid_type"),
        (6, "missing_event"),
        (7, "invalid_type"),
        (8, "missing_group_id"),
        (9, "missing_identity"),
        (10, "invalid_character"),
    }
    assert "batch[1]" in body["message"]
    assert count(db, acme.workspace_id) == 0
    assert count(db, acme.workspace_id, Contact) == 0


def test_a_refused_identify_rolls_back_the_whole_batch(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    response = tracker.batch(
        {"type": "identify", "userId": "u1", "traits": {"email": "ann@corp.test"}},
        {"type": "track", "userId": "u1", "event": "E"},
        {"type": "identify", "userId": "u2",
         "traits": {"email": "bob@corp.test", "timezone": "Mars/Base"}},
    )  # fmt: skip
    body = assert_error(response, 400, "invalid_timezone")
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(2, "timezone")]
    assert count(db, acme.workspace_id) == 0
    assert count(db, acme.workspace_id, Contact) == 0


def test_oversized_events_and_batches(tracker: Tracker, db: Database, acme: NewWorkspace) -> None:
    big = {"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * MAX_EVENT_BYTES}}
    small = {"type": "track", "userId": "u", "event": "E"}
    body = assert_error(tracker.batch(small, big), 400, "event_too_large")
    assert [e["index"] for e in body["errors"]] == [1]
    filler = {"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 20_000}}
    too_many = [filler] * (MAX_BATCH_BYTES // 20_000 + 1)
    assert_error(tracker.batch(*too_many), 413, "batch_too_large")
    assert_error(tracker.batch(*too_many, compress=True), 413, "batch_too_large")
    assert count(db, acme.workspace_id) == 0


def test_gzip_bombs_and_broken_gzip_are_refused(tracker: Tracker) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (50 * 1024 * 1024) + b"]}")
    assert len(bomb) < MAX_BATCH_BYTES
    response = tracker.post("/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert_error(response, 413, "batch_too_large")
    broken = tracker.post("/v1/batch", b"not gzip", headers={"Content-Encoding": "gzip"})
    assert_error(broken, 400, "invalid_gzip")
    truncated = gzip.compress(b'{"batch": []}')[:-6]
    assert_error(
        tracker.post("/v1/batch", truncated, headers={"Content-Encoding": "gzip"}),
        400,
        "invalid_gzip",
    )
    assert_error(
        tracker.post("/v1/batch", b"{}", headers={"Content-Encoding": "br"}),
        400,
        "unsupported_encoding",
    )


def test_message_ids_are_stored_once(tracker: Tracker, db: Database, acme: NewWorkspace) -> None:
    call = {"type": "track", "userId": "u", "event": "E", "messageId": "dup"}
    assert tracker.batch(call, call).status_code == 200
    assert tracker.batch(call, {**call, "messageId": "other"}).status_code == 200
    assert tracker.post("/v1/track", call).status_code == 200
    assert sorted(e.message_id or "" for e in events(db, acme.workspace_id)) == ["dup", "other"]


def test_client_clock_skew_is_corrected(tracker: Tracker, db: Database, acme: NewWorkspace) -> None:
    # The client's clock is two hours behind; the event happened ten minutes before sending.
    client_now = datetime.now(UTC) - timedelta(hours=2)
    happened = client_now - timedelta(minutes=10)
    response = tracker.batch(
        {"type": "track", "userId": "u", "event": "Batch sentAt",
         "timestamp": happened.isoformat()},
        {"type": "track", "userId": "u", "event": "Own sentAt", "timestamp": happened.isoformat(),
         "sentAt": (client_now + timedelta(minutes=1)).isoformat()},
        {"type": "track", "userId": "u", "event": "No sentAt"},
        sentAt=client_now.isoformat(),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    by_name = {e.name: e for e in events(db, acme.workspace_id)}
    batch_sent = by_name["Batch sentAt"]
    assert batch_sent.occurred_at == batch_sent.received_at - timedelta(minutes=10)
    assert batch_sent.original_timestamp == happened
    assert batch_sent.sent_at == client_now
    own = by_name["Own sentAt"]
    assert own.occurred_at == own.received_at - timedelta(minutes=11)
    plain = by_name["No sentAt"]
    assert plain.occurred_at == plain.received_at


def test_rate_limit_is_per_write_key(
    make_app: Any, db: Database, acme: NewWorkspace, zebra: NewWorkspace
) -> None:
    app = make_app(tracking_rate_per_second=0.5, tracking_rate_burst=5)
    with TestClient(app) as client:
        a, z = Tracker(client, acme.write_key), Tracker(client, zebra.write_key)
        call = {"type": "track", "userId": "u", "event": "E"}
        assert a.batch(*[call] * 5).status_code == 200
        flood = a.batch(call)
        assert_error(flood, 429, "rate_limited")
        assert int(flood.headers["Retry-After"]) >= 1
        assert z.batch(*[call] * 5).status_code == 200  # another key is not starved
    assert count(db, acme.workspace_id) == 5
    assert count(db, zebra.workspace_id) == 5


def test_text_that_merely_reads_backslash_u0000_is_stored(
    tracker: Tracker, db: Database, acme: NewWorkspace
) -> None:
    call = {"userId": "u", "event": "E", "properties": {"note": "\\u0000", "emoji": "é✓"}}
    assert tracker.post("/v1/track", call).status_code == 200
    [event] = events(db, acme.workspace_id)
    assert event.properties == {"note": "\\u0000", "emoji": "é✓"}
