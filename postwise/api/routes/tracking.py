"""``/v1``: the Segment-spec tracking API (docs/tracking.md).

Segment's wire format, not the management API's: errors are ``{"code", "message"}`` JSON
(plus ``errors`` naming each bad event of a batch), success is ``{"success": true}``,
and the write key comes as the HTTP Basic user name or as ``writeKey`` in the body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from postwise.api.lone_writer import LoneWriter
from postwise.core.clock import utcnow
from postwise.core.errors import AuthenticationFailed, PayloadTooLarge, PostwiseError
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.tracking import ingest
from postwise.tracking.events import BadBatch, Call, parse_batch
from postwise.tracking.limits import MAX_BATCH_BYTES, RateLimiter, gunzip_bounded
from postwise.workspaces.actions import authenticate

router = APIRouter(prefix="/v1", tags=["tracking"])

SUCCESS = {"success": True}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (or a duplicate of a stored messageId).",
          "content": {"application/json": {"example": SUCCESS}}},
    400: {"description": "Malformed JSON or bad events; `errors` names each by index."},
    401: {"description": "Missing, unknown or revoked write key."},
    413: {"description": "Over 32 KB per event or 500 KB per batch."},
    429: {"description": "Over the write key's rate; retry after `Retry-After` seconds."},
}  # fmt: skip


class _TooManyEvents(PostwiseError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"this write key is over its rate limit; retry in {math.ceil(retry_after)} s"
        )
        self.retry_after = max(1, math.ceil(retry_after))


def _error(exc: PostwiseError) -> JSONResponse:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, BadBatch):
        body["errors"] = [p.as_dict() for p in exc.problems]
    elif exc.field:
        body["field"] = exc.field
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, _TooManyEvents) else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _limiter(request: Request) -> RateLimiter:
    state = request.app.state
    limiter: RateLimiter | None = getattr(state, "tracking_limiter", None)
    if limiter is None:
        settings: Settings = state.settings
        limiter = RateLimiter(settings.tracking_rate_per_second, settings.tracking_rate_burst)
        state.tracking_limiter = limiter
    return limiter


# Batches written at once per process: fewer than the database pool's connections, so a
# burst waits here instead of opening (and closing) overflow connections for each batch.
STORE_CONCURRENCY = 8


def _store_limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "tracking_store_limiter", None)
    if limiter is None:
        limiter = state.tracking_store_limiter = anyio.CapacityLimiter(STORE_CONCURRENCY)
    return limiter


def _basic_user(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationFailed(
            "send the write key as the HTTP Basic user name with an empty password",
            code="malformed_authorization",
        )
    try:
        user, _, _password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationFailed(
            "the Basic credentials are not valid base64 of 'KEY:'", code="malformed_authorization"
        ) from None
    return user


async def _payload(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(
            f"the body is over {MAX_BATCH_BYTES} bytes; send fewer events per batch",
            code="batch_too_large",
        )
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        body = gunzip_bounded(body)
    elif encoding not in ("", "identity"):
        raise PostwiseError(
            f"Content-Encoding {encoding!r} is not supported; use gzip or none",
            code="unsupported_encoding",
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "not valid UTF-8" in str(exc):
            raise PostwiseError("the body is not UTF-8 text", code="invalid_json") from None
        raise PostwiseError(f"the body is not valid JSON: {exc}", code="invalid_json") from None


def _store_calls(db: Database, workspace_id: int, calls: list[Call], received_at: Any) -> None:
    with db.tenant(workspace_id) as session:
        ingest.ingest(session, calls, received_at=received_at)


def _store_encoded(
    db: Database, workspace_id: int, batch: ingest.Encoded, received_at: Any
) -> None:
    with db.engine.begin() as connection:
        ingest.ingest_events(connection, workspace_id, batch, received_at=received_at)


def _storing(
    db: Database,
    workspace_id: int,
    payload: Any,
    received_at: Any,
    ip: str | None,
    kind: str | None,
) -> Callable[[], None] | ingest.Encoded:
    """Check the body and return the write to run in a thread, or, for a lone batch
    (``ingest.alone``), its encoded rows for ``LoneWriter`` (``api/lone_writer.py``) on
    the event loop. A batch without identity calls on PostgreSQL is encoded here, so the
    parsed objects are freed before the database wait (``ingest.Encoded``)."""
    calls = parse_batch(payload, received_at=received_at, ip=ip, kind=kind)
    if ingest.needs_session(calls, db.dialect):
        return partial(_store_calls, db, workspace_id, calls, received_at)
    encoded = ingest.encode(calls)
    if ingest.alone(workspace_id, encoded):
        return encoded
    return partial(_store_encoded, db, workspace_id, encoded, received_at)


def _lone_writer(request: Request) -> LoneWriter:
    """The app's writer, made on first use; the lifespan closes its connections."""
    state = request.app.state
    writer: LoneWriter | None = getattr(state, "tracking_lone_writer", None)
    if writer is not None and writer.loop is not asyncio.get_running_loop():
        writer.abandon()  # a new loop (a test client outside ``with``): its connections stay
        writer = None
    if writer is None:
        db: Database = state.db
        writer = state.tracking_lone_writer = LoneWriter(db.url, STORE_CONCURRENCY)
        state.closers.append(writer.close)
    return writer


class _WriteKeys:
    """Write key -> workspace, remembered for ``TTL`` seconds: a batch costs no key query.

    A revoked key therefore keeps working on /v1 for up to ``TTL`` seconds per process.
    """

    TTL = 10.0

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, float]] = {}

    def cached(self, key: str) -> int | None:
        found = self._known.get(key)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def lookup(self, db: Database, key: str) -> int:
        with db.system() as session:
            workspace_id = authenticate(session, key, kind="write").workspace_id
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[key] = (workspace_id, time.monotonic() + self.TTL)
        return workspace_id


def _write_keys(request: Request) -> _WriteKeys:
    keys: _WriteKeys | None = getattr(request.app.state, "tracking_write_keys", None)
    if keys is None:
        keys = request.app.state.tracking_write_keys = _WriteKeys()
    return keys


async def _handle(request: Request, kind: str | None) -> JSONResponse:
    received_at = utcnow()
    try:
        key = _basic_user(request)
        payload = await _payload(request)
        if not key and isinstance(payload, dict) and isinstance(payload.get("writeKey"), str):
            key = payload["writeKey"]
        if not key:
            raise AuthenticationFailed(
                "no write key: send it as the HTTP Basic user name or as writeKey in the body",
                code="missing_write_key",
            )
        db: Database = request.app.state.db
        keys = _write_keys(request)
        workspace_id = keys.cached(key)
        if workspace_id is None:
            workspace_id = await run_in_threadpool(keys.lookup, db, key)
        items = payload.get("batch") if kind is None and isinstance(payload, dict) else [payload]
        cost = len(items) if isinstance(items, list) else 1
        wait = _limiter(request).take(key, max(cost, 1))
        if wait:
            raise _TooManyEvents(wait)
        ip = request.client.host if request.client else None
        store = _storing(db, workspace_id, payload, received_at, ip, kind)
        del payload, items  # the body's objects go now, before the database wait
        if isinstance(store, ingest.Encoded):
            if store.rows:
                params = {"workspace_id": workspace_id, "received_at": received_at}
                params["rows"] = store.rows
                await _lone_writer(request).insert(params)
        else:
            await anyio.to_thread.run_sync(store, limiter=_store_limiter(request))
    except PostwiseError as exc:
        return _error(exc)
    return JSONResponse(SUCCESS)


@router.post("/batch", summary="Send many calls at once", responses=_RESPONSES)
async def batch(request: Request) -> JSONResponse:
    """`{"batch": [call, ...], "sentAt": ...}`; each call carries its own `type`."""
    return await _handle(request, None)


@router.post("/identify", summary="Identify a person", responses=_RESPONSES)
async def identify(request: Request) -> JSONResponse:
    return await _handle(request, "identify")


@router.post("/track", summary="Record an event", responses=_RESPONSES)
async def track(request: Request) -> JSONResponse:
    return await _handle(request, "track")


@router.post("/page", summary="Record a page view", responses=_RESPONSES)
async def page(request: Request) -> JSONResponse:
    return await _handle(request, "page")


@router.post("/screen", summary="Record a screen view", responses=_RESPONSES)
async def screen(request: Request) -> JSONResponse:
    return await _handle(request, "screen")


@router.post("/group", summary="Put a person in a company", responses=_RESPONSES)
async def group(request: Request) -> JSONResponse:
    return await _handle(request, "group")


@router.post("/alias", summary="Merge two ids of one person", responses=_RESPONSES)
async def alias(request: Request) -> JSONResponse:
    return await _handle(request, "alias")
