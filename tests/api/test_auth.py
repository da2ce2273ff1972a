"""Keys and scopes on every route under /api/: no key, a bad or revoked key, a key of the
wrong kind, a key without the scope. Each is refused as problem+json before anything runs."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI

from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace
from tests.api.conftest import ClientFactory
from tests.api.support import assert_problem, issue_key, snapshot
from tests.api.test_isolation import api_routes


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    """Each /api/ operation with its path filled in; auth is checked before any id is used."""
    return [
        (method, re.sub(r"\{\w+\}", "1", route.path_format)) for method, route in api_routes(app)
    ]


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "unauthenticated"),
        ("Bearer pw_sk_not-a-key", "invalid_api_key"),
        ("Basic dXNlcjpwYXNz", "malformed_authorization"),
    ],
)
def test_every_route_refuses_requests_without_a_valid_key(
    app: FastAPI,
    db: Database,
    workspace: NewWorkspace,
    make_client: ClientFactory,
    header: str | None,
    code: str,
) -> None:
    client = make_client(app, None)
    if header:
        client.headers["Authorization"] = header
    before = snapshot(db, workspace.workspace_id)
    for method, path in _operations(app):
        body = assert_problem(client.request(method, path), 401, code)
        assert body["detail"], (method, path)
    assert snapshot(db, workspace.workspace_id) == before


def test_revoked_and_tracking_keys_are_refused(
    app: FastAPI, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    revoked = make_client(app, issue_key(db, workspace.workspace_id, ["admin"], revoked=True))
    assert_problem(revoked.get("/api/contacts"), 401, "invalid_api_key")
    tracking = make_client(app, workspace.write_key)
    assert_problem(tracking.get("/api/contacts"), 401, "wrong_key_kind")


def test_every_route_needs_its_scope(
    app: FastAPI, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    """A key holding only 'track' (no /api/ route needs it) is refused everywhere."""
    client = make_client(app, issue_key(db, workspace.workspace_id, ["track"]))
    before = snapshot(db, workspace.workspace_id)
    for method, path in _operations(app):
        body = assert_problem(client.request(method, path), 403, "missing_scope", "scope")
        assert "lacks the '" in body["detail"], (method, path)
    assert snapshot(db, workspace.workspace_id) == before


def test_read_scope_reads_but_does_not_write(
    app: FastAPI, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    reader = make_client(app, issue_key(db, workspace.workspace_id, ["contacts:read"]))
    assert reader.get("/api/contacts").status_code == 200
    assert reader.get("/api/attributes").status_code == 200
    body = assert_problem(
        reader.post("/api/contacts", json={"email": "a@initech.com"}), 403, "missing_scope"
    )
    assert "contacts:write" in body["detail"]
    assert_problem(reader.get("/api/companies"), 403, "missing_scope")
    assert_problem(reader.get("/api/lists"), 403, "missing_scope")
    companies_only = make_client(app, issue_key(db, workspace.workspace_id, ["companies:read"]))
    assert companies_only.get("/api/companies").status_code == 200
    # A company's contacts are contacts: companies:read alone does not show them.
    assert_problem(companies_only.get("/api/companies/1/contacts"), 403, "missing_scope")
