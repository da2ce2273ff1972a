"""Endpoints for load balancers and Prometheus; unauthenticated, they reveal no tenant data."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from postwise.api.dependencies import get_db
from postwise.api.problems import PROBLEM_JSON, problem
from postwise.storage.database import Database

router = APIRouter(tags=["operations"])
log = structlog.get_logger(__name__)


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"


def _ping(db: Database) -> None:
    # A bare DBAPI cursor: through SQLAlchemy the SQLite engine would open its
    # transaction with BEGIN IMMEDIATE and make the probe wait behind every writer.
    with db.engine.connect() as connection:
        cursor = connection.connection.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        finally:
            cursor.close()


@router.get(
    "/healthz",
    summary="Liveness and database reachability",
    response_model=Health,
    responses={503: {"description": "The database does not answer", "content": {PROBLEM_JSON: {}}}},
)
def healthz(db: Annotated[Database, Depends(get_db)]) -> Any:
    try:
        _ping(db)
    except Exception as exc:  # whatever the cause, the instance cannot serve
        log.warning("health check failed", error=type(exc).__name__, detail=str(exc)[:200])
        return problem(
            503,
            "Service unavailable",
            "database_unavailable",
            "the database does not answer; check that it is running and POSTWISE_DATABASE_URL",
        )
    return Health()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
