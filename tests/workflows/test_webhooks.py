"""Workflow webhook signing (Standard Webhooks) and retry schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from postwise.workflows.engine import CallWebhookCommand
from postwise.workflows.webhooks import (
    MAX_DELAY,
    headers,
    next_attempt,
    payload,
    retry_delays,
    verify,
)

CMD = CallWebhookCommand(
    key="812:notify_sales:1",
    step="notify_sales",
    url="https://crm.example/h",
    secret="sales",
    body={"event": "lead.qualified"},
    max_attempts=5,
    backoff=30,
)


def test_payload_and_signature_follow_standard_webhooks() -> None:
    body = payload(CMD, {"workflow": "lead_nurture", "contact": {"id": 7, "email": "a@b.example"}})
    assert json.loads(body) == {
        "contact": {"email": "a@b.example", "id": 7},
        "data": {"event": "lead.qualified"},
        "id": "812:notify_sales:1",
        "step": "notify_sales",
        "workflow": "lead_nurture",
    }
    sent = headers(b"s3cret", CMD.key, 1_770_000_000, body)
    # Independently computed, as a receiver's library would.
    mac = hmac.new(b"s3cret", b"812:notify_sales:1.1770000000." + body, hashlib.sha256).digest()
    assert sent["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    assert sent["webhook-id"] == CMD.key and sent["webhook-timestamp"] == "1770000000"
    assert verify(b"s3cret", sent, body, 1_770_000_100)
    assert not verify(b"other", sent, body, 1_770_000_100)
    assert not verify(b"s3cret", sent, body + b" ", 1_770_000_100)
    assert not verify(b"s3cret", sent, body, 1_770_000_000 + 301)  # too old: a replay
    assert not verify(b"s3cret", {**sent, "webhook-timestamp": "soon"}, body, 1_770_000_000)
    rotated = {**sent, "webhook-signature": "v1,AAAA " + sent["webhook-signature"]}
    assert verify(b"s3cret", rotated, body, 1_770_000_000)


def test_retry_schedule() -> None:
    assert retry_delays(CMD) == [30, 60, 120, 240]
    last = datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert next_attempt(CMD, 1, last) == last + timedelta(seconds=30)
    assert next_attempt(CMD, 4, last) == last + timedelta(seconds=240)
    assert next_attempt(CMD, 5, last) is None
    slow = CallWebhookCommand("k", "s", "https://x/y", "s", {}, 20, 3600)
    assert max(retry_delays(slow)) == MAX_DELAY


@given(
    secret=st.binary(min_size=1, max_size=64),
    body=st.binary(max_size=200),
    ts=st.integers(0, 2**40),
)
def test_a_signature_verifies_only_its_own_body(secret: bytes, body: bytes, ts: int) -> None:
    sent = headers(secret, "id", ts, body)
    assert verify(secret, sent, body, ts)
    assert not verify(secret, sent, body + b"x", ts)
