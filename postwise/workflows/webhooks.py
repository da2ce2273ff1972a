"""What a workflow webhook call sends and when it is retried: pure, so the runtime's
delivery job and a receiver's verification share one definition.

Signing follows the Standard Webhooks scheme (standardwebhooks.com), which receivers
already have libraries for: headers ``webhook-id`` (the command's idempotency key, so a
retried or replayed call carries the same id and the receiver can drop duplicates),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` =
``v1,`` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")).

Retries: attempt ``n`` (1-based) of ``max_attempts`` follows the previous one after
``backoff * 2**(n-2)`` seconds, capped at ``MAX_DELAY``; a 2xx answer ends it, anything
else (error status, timeout, refused connection) schedules the next attempt, and after
the last the call is recorded as failed. The journey never waits for a webhook.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from postwise.workflows.engine import CallWebhookCommand

MAX_DELAY = 6 * 3600
TOLERANCE = 5 * 60  # how old a timestamp a receiver accepts


def payload(cmd: CallWebhookCommand, envelope: Mapping[str, Any]) -> bytes:
    """The request body: the runtime's ``envelope`` (workflow, enrollment, contact) with
    the step's own ``body`` under ``data``; compact, keys sorted, so it is byte-stable."""
    doc = {**envelope, "id": cmd.key, "step": cmd.step, "data": dict(cmd.body)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def verify(secret: bytes, sent: Mapping[str, str], body: bytes, now: int) -> bool:
    """A receiver's check: a signature made with ``secret`` over exactly ``body``, and a
    timestamp within ``TOLERANCE`` of ``now`` (replays of old calls fail)."""
    try:
        message_id = sent["webhook-id"]
        timestamp = int(sent["webhook-timestamp"])
        given = sent["webhook-signature"].split(" ")
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > TOLERANCE:
        return False
    expected = signature(secret, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in given)


def retry_delays(cmd: CallWebhookCommand) -> list[int]:
    """Seconds between consecutive attempts (``max_attempts - 1`` of them)."""
    return [min(cmd.backoff * 2**n, MAX_DELAY) for n in range(cmd.max_attempts - 1)]


def next_attempt(cmd: CallWebhookCommand, attempts_made: int, last: datetime) -> datetime | None:
    """When to try again after ``attempts_made`` failed attempts, the last at ``last``;
    ``None`` once every attempt is spent (record the call as failed)."""
    delays = retry_delays(cmd)
    if attempts_made >= cmd.max_attempts or attempts_made < 1:
        return None
    return last + timedelta(seconds=delays[attempts_made - 1])
