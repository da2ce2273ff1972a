"""Webhook secrets over HTTP on both backends: a value is shown once (create, rotate),
lists carry names only, the workflows sign with what is stored, and another workspace
can neither see, rotate nor overwrite a secret."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.workflows import store
from postwise.workspaces.actions import create_api_key, create_workspace

BASE = "/api/workflows/webhook-secrets"


def _workspace(db: Database, name: str, scopes: list[str]) -> tuple[int, dict[str, str]]:
    with db.system() as s:
        ws = create_workspace(s, name).workspace_id
        key = create_api_key(s, ws, scopes).key
    return ws, {"Authorization": f"Bearer {key}"}


def _stored(db: Database, ws: int) -> dict[str, str]:
    with db.tenant(ws) as s:
        return store.webhook_secrets(s)


def test_secrets_are_shown_once_listed_by_name_and_kept_per_workspace(
    db: Database, tmp_path: Path
) -> None:
    ours_ws, ours = _workspace(db, "Acme", ["admin"])
    theirs_ws, theirs = _workspace(db, "Other", ["admin"])
    _, reader = _workspace(db, "Reader", ["segments:read"])
    with TestClient(create_app(Settings(data_dir=tmp_path), db)) as client:
        r = client.post(BASE, json={"name": "sales"}, headers=ours)
        assert r.status_code == 201, r.text
        first = r.json()["secret"]
        assert r.json()["name"] == "sales" and len(first) >= 40
        assert _stored(db, ours_ws) == {"sales": first}  # stored as workflows read it

        again = client.post(BASE, json={"name": "sales"}, headers=ours)
        assert again.status_code == 409 and again.json()["code"] == "webhook_secret_exists"
        bad = client.post(BASE, json={"name": "no spaces"}, headers=ours)
        assert bad.status_code == 400 and bad.json()["field"] == "name"

        listed = client.get(BASE, headers=ours).json()["data"]
        assert [s["name"] for s in listed] == ["sales"] and listed[0]["updated_at"]
        assert first not in client.get(BASE, headers=ours).text

        rotated = client.post(f"{BASE}/sales/rotate", headers=ours)
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()["secret"]
        assert second != first and _stored(db, ours_ws) == {"sales": second}
        missing = client.post(f"{BASE}/nope/rotate", headers=ours)
        assert missing.status_code == 404 and missing.json()["code"] == "webhook_secret_not_found"

        # Another workspace: sees nothing, cannot rotate ours, its own "sales" is its own.
        assert client.get(BASE, headers=theirs).json()["data"] == []
        assert client.post(f"{BASE}/sales/rotate", headers=theirs).status_code == 404
        r = client.post(BASE, json={"name": "sales"}, headers=theirs)
        assert r.status_code == 201 and r.json()["secret"] != second
        assert _stored(db, ours_ws) == {"sales": second}
        assert _stored(db, theirs_ws) == {"sales": r.json()["secret"]}

        # Managing secrets needs the send scope.
        assert client.get(BASE, headers=reader).status_code == 403
        assert client.post(BASE, json={"name": "x"}, headers=reader).status_code == 403
