"""Keys: shown once, stored hashed, scoped, revocable, and confined to their workspace."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from postwise.api.app import create_app
from postwise.core.settings import Settings, get_settings
from postwise.storage.database import Database
from postwise.storage.tables import ApiKey
from postwise.workspaces.actions import create_workspace, hash_key


@pytest.fixture
def client(db: Database, tmp_path) -> TestClient:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, database_url=db.url)
    return TestClient(create_app(settings, db))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_stored_hashed_and_scoped(db: Database, client: TestClient) -> None:
    with db.system() as s:
        ws = create_workspace(s, "A")
    response = client.post(
        "/api/api-keys", json={"scopes": ["contacts:read"]}, headers=auth(ws.api_key)
    )
    assert response.status_code == 201
    created = response.json()
    narrow = created["key"]
    with db.system() as s:
        stored = s.scalars(select(ApiKey.key_hash)).all()
    assert hash_key(narrow) in stored
    assert narrow not in stored
    assert client.get("/api/whoami", headers=auth(narrow)).json()["scopes"] == ["contacts:read"]
    denied = client.get("/api/api-keys", headers=auth(narrow))
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.json()["code"] == "missing_scope"
    assert (
        client.post("/api/api-keys", json={"scopes": ["nope"]}, headers=auth(ws.api_key)).json()[
            "field"
        ]
        == "scopes"
    )


def test_revoked_and_unknown_keys_get_401(db: Database, client: TestClient) -> None:
    with db.system() as s:
        ws = create_workspace(s, "A")
    key = client.post("/api/api-keys", json={"scopes": ["admin"]}, headers=auth(ws.api_key)).json()
    assert client.delete(f"/api/api-keys/{key['id']}", headers=auth(ws.api_key)).status_code == 204
    for bad in (key["key"], "pw_sk_made_up", ""):
        response = client.get("/api/workspace", headers=auth(bad) if bad else {})
        assert response.status_code == 401
        assert response.json()["code"] in ("invalid_api_key", "unauthenticated")
    assert client.get("/api/workspace", headers={"Authorization": "Basic abc"}).status_code == 401


def test_write_key_is_not_a_management_key(db: Database, client: TestClient) -> None:
    with db.system() as s:
        ws = create_workspace(s, "A")
    response = client.get("/api/whoami", headers=auth(ws.write_key))
    assert response.status_code == 401
    assert response.json()["code"] == "wrong_key_kind"


def test_a_workspace_cannot_list_or_revoke_another_workspaces_keys(
    db: Database, client: TestClient
) -> None:
    with db.system() as s:
        a, b = create_workspace(s, "A"), create_workspace(s, "B")
    b_keys = client.get("/api/api-keys", headers=auth(b.api_key)).json()
    listed = client.get("/api/api-keys", headers=auth(a.api_key)).json()
    assert {k["id"] for k in listed}.isdisjoint({k["id"] for k in b_keys})
    for key in b_keys:
        assert (
            client.delete(f"/api/api-keys/{key['id']}", headers=auth(a.api_key)).status_code == 404
        )
    assert client.get("/api/workspace", headers=auth(b.api_key)).status_code == 200


def test_cli_creates_workspace_and_keys(
    db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from postwise.cli.main import app

    monkeypatch.setenv("POSTWISE_DATABASE_URL", db.url)
    monkeypatch.setenv("POSTWISE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    created = runner.invoke(app, ["workspace", "create", "Acme", "--json"])
    assert created.exit_code == 0, created.output
    info = json.loads(created.stdout)
    assert set(info) >= {"workspace_id", "api_key", "write_key"}
    key = runner.invoke(
        app, ["apikey", "create", "-w", str(info["workspace_id"]), "-s", "contacts:read", "--json"]
    )
    assert key.exit_code == 0, key.output
    key_id = json.loads(key.stdout)["id"]
    bad = runner.invoke(app, ["apikey", "create", "-w", str(info["workspace_id"]), "-s", "bogus"])
    assert bad.exit_code == 2
    assert "unknown scope 'bogus'" in bad.output
    assert runner.invoke(app, ["apikey", "revoke", str(key_id)]).exit_code == 0
    assert runner.invoke(app, ["apikey", "revoke", "999999"]).exit_code == 2
    get_settings.cache_clear()
