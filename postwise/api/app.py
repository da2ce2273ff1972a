"""The FastAPI application factory; routers are added here, one module per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from postwise import __version__
from postwise.api import cors, limits, observability, problems
from postwise.core.settings import Settings, get_settings
from postwise.storage.database import Database


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs what routes registered in ``app.state.closers`` when the server stops (e.g.
    tracking's event-loop database connections, which must close on their own loop)."""
    yield
    closers: list[Callable[[], Awaitable[None]]] = app.state.closers
    while closers:
        await closers.pop()()


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Postwise",
        version=__version__,
        description="Self-hosted B2B email platform. Management API under /api/, "
        "Segment-compatible tracking under /v1/.",
        lifespan=_lifespan,
    )
    app.state.closers = []
    app.state.settings = settings
    app.state.db = db or Database(settings.resolved_database_url())
    problems.install(app)
    limits.install(app, settings.max_request_bytes)
    observability.install(app)
    cors.install(app)
    from postwise.api.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app
