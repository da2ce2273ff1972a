"""Request-scoped pieces: the database, the authenticated principal and its tenant session.

No ``from __future__ import annotations`` here: FastAPI must evaluate the annotations of
the dependencies built inside the factories below, which close over ``scope``.
"""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from postwise.core.errors import AuthenticationFailed, PermissionDenied
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.workspaces.actions import Principal, authenticate
from postwise.workspaces.scopes import Scope, grants


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.headers.get("x-api-key"):
        return request.headers["x-api-key"].strip()
    if header:
        raise AuthenticationFailed(
            "the Authorization header must be 'Bearer KEY'", code="malformed_authorization"
        )
    raise AuthenticationFailed("no API key given: send it as 'Authorization: Bearer KEY'")


def get_principal(request: Request, db: Annotated[Database, Depends(get_db)]) -> Principal:
    key = _bearer(request)
    with db.system() as session:
        return authenticate(session, key, kind="secret")


def require(scope: Scope) -> Callable[..., Principal]:
    """Dependency factory: the principal, if its key carries ``scope`` (or admin)."""

    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not grants(principal.scopes, scope):
            raise PermissionDenied(
                f"this API key lacks the '{scope.value}' scope", code="missing_scope", field="scope"
            )
        return principal

    return dependency


def tenant_session(principal: Principal, db: Database) -> Iterator[Session]:
    with db.tenant(principal.workspace_id) as session:
        yield session


def scoped_session(scope: Scope) -> Callable[..., Iterator[Session]]:
    """Dependency factory: a session bound to the caller's workspace, after the scope check."""

    def dependency(
        principal: Annotated[Principal, Depends(require(scope))],
        db: Annotated[Database, Depends(get_db)],
    ) -> Iterator[Session]:
        yield from tenant_session(principal, db)

    return dependency
