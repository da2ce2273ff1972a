"""What operators see of each HTTP request: a request id, one log line and two metrics.

A pure ASGI middleware rather than ``BaseHTTPMiddleware`` so that streamed responses
pass through untouched and the request id bound here reaches handlers run in the
thread pool (Starlette copies the context into it).

Metric labels use the route *template* (``/api/contacts/{contact_id}``), never the
raw path, and unknown methods fold into ``OTHER``: a scanner probing random URLs must
not grow the number of time series.
"""

from __future__ import annotations

import re
import time
import uuid

import structlog
from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_QUIET_ROUTES = frozenset({"/healthz", "/metrics"})  # probed every few seconds

REQUESTS = Counter(
    "postwise_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "postwise_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
)
log = structlog.get_logger("postwise.http")


def _request_id(scope: Scope) -> str:
    """The caller's id if it is a sane token (so traces join up across proxies), else new."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = _route_template(scope)
                REQUESTS.labels(method, route, str(status)).inc()
                LATENCY.labels(method, route).observe(elapsed)
                emit = log.debug if route in _QUIET_ROUTES else log.info
                emit(
                    "http request",
                    method=method,
                    path=scope["path"],  # never the query string: it may carry addresses
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 1),
                )


def install(app: FastAPI) -> None:
    app.add_middleware(ObservabilityMiddleware)
