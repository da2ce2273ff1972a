"""Helpers shared by the API tests: keys, problem checks and workspace snapshots."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from postwise.storage.database import Database
from postwise.storage.tables import Base
from postwise.workspaces.actions import create_api_key, revoke_api_key

# Using a key may stamp it; that is not a change to the workspace's data.
_VOLATILE = {"last_used_at"}


def issue_key(db: Database, workspace_id: int, scopes: list[str], *, revoked: bool = False) -> str:
    with db.system() as s:
        issued = create_api_key(s, workspace_id, scopes, name="test key")
        if revoked:
            revoke_api_key(s, issued.id)
        return issued.key


def snapshot(db: Database, workspace_id: int) -> dict[str, list[str]]:
    """Every row of every table that carries ``workspace_id`` (tables added later too)."""
    rows: dict[str, list[str]] = {}
    with db.system() as s:
        for table in Base.metadata.sorted_tables:
            if "workspace_id" not in table.c:
                continue
            columns = [c for c in table.c if c.name not in _VOLATILE]
            found = s.execute(select(*columns).where(table.c.workspace_id == workspace_id))
            rows[table.name] = sorted(repr(tuple(r)) for r in found)
    return rows


ANY_FIELD = object()


def assert_problem(
    response: httpx.Response, status: int, code: str, field: object = ANY_FIELD
) -> dict[str, Any]:
    """The response is problem+json with this status and code (and field, when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["detail"] and body["title"] and body["type"].endswith(code)
    if field is not ANY_FIELD:
        assert body["field"] == field, body
    return body
