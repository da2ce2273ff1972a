"""CORS for the Segment-compatible ``/v1/`` API, so customers' web pages can post to it.

Only ``/v1/`` paths: the management API under ``/api/`` takes secret keys and must never
be callable from a browser on another site. The tracking API authenticates by write key
(in the body or as Basic user name), never by cookie, so any origin may call it and no
credentials are allowed: ``Access-Control-Allow-Origin: *`` is exactly right. A preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) is answered here without reaching a
route; other responses get the allow-origin header added.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1/"
ALLOW_METHODS = "POST, OPTIONS"
# Segment's clients send these; Authorization carries the write key as Basic auth.
ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding"
PREFLIGHT_MAX_AGE = "86400"


class TrackingCors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        if b"origin" not in headers:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        (b"access-control-allow-origin", b"*"),
                        (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                        (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                        (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
                        (b"vary", b"Origin"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = "*"
                # Lets a page read Retry-After from a 429 and back off.
                response_headers["Access-Control-Expose-Headers"] = "Retry-After"
            await send(message)

        await self.app(scope, receive, send_with_origin)


def install(app: FastAPI) -> None:
    app.add_middleware(TrackingCors)
