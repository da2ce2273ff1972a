"""The request-body size guard: an oversized body is refused before it is read.

A pure ASGI middleware, so it runs before FastAPI buffers and parses the body. A
declared ``Content-Length`` over the limit is answered at once; a chunked body (no
length) is counted as it arrives and refused as soon as it passes the limit. Either way
the answer is a 413 problem with code ``payload_too_large`` and nothing reaches a route.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postwise.api.problems import problem


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        # Chunked: hold the body until it is complete (the route would buffer it anyway).
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "Payload too large",
            "payload_too_large",
            f"the request body is over {self.max_bytes} bytes; send less per request "
            "(bulk upserts: split the rows over several calls)",
        )
        await response(scope, receive, send)


def install(app: FastAPI, max_bytes: int) -> None:
    app.add_middleware(BodySizeLimit, max_bytes=max_bytes)
