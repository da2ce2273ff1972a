"""Errors as RFC 9457 ``application/problem+json`` with a stable ``code`` and the field at fault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from postwise.core.errors import FieldError, PostwiseError

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger(__name__)


def problem(
    status: int,
    title: str,
    code: str,
    detail: str,
    field: str | None = None,
    errors: list[FieldError] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://postwise.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "field": field,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _field_error(error: Mapping[str, Any]) -> FieldError:
    """One Pydantic error as a FieldError; errors about the body as a whole say how to fix it."""
    loc = tuple(error.get("loc", ()))
    kind = str(error.get("type", "invalid"))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "malformed")
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        return FieldError("body", kind, f"the body is not valid JSON: {reason}{where}")
    if loc == ("body",) and kind in ("model_attributes_type", "dict_type"):
        return FieldError(
            "body", kind, "the body must be a JSON object, sent as Content-Type: application/json"
        )
    if loc == ("body",) and kind == "missing":
        return FieldError("body", kind, "a JSON body is required")
    return FieldError(_location(loc), kind, str(error.get("msg", "")))


def install(app: FastAPI) -> None:
    @app.exception_handler(PostwiseError)
    async def _postwise(_request: Request, exc: PostwiseError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.code, exc.message, exc.field, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_field_error(e) for e in exc.errors()]
        first = errors[0] if errors else FieldError(None, "invalid", "invalid request")
        detail = f"{first.field}: {first.message}" if first.field else first.message
        if len(errors) > 1:
            detail = f"{len(errors)} problems; first: {detail}"
        return problem(422, "Invalid request", "invalid_request", detail, first.field, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, str(exc.detail), code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", error=type(exc).__name__)
        return problem(500, "Internal error", "internal_error", "something went wrong on our side")
