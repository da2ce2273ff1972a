"""Every router of the API, in the order they appear in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter

from postwise.api.routes import captured, operations, privacy

ROUTERS: list[APIRouter] = []
ROUTERS.append(privacy.router)
ROUTERS.append(operations.router)
ROUTERS.append(captured.router)
