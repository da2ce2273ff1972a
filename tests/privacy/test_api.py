"""The privacy API: scope, workspace isolation, suppressions, export, erasure, readmission."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from postwise.api.app import create_app
from postwise.contacts import actions
from postwise.core.settings import Settings
from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace, create_api_key
from tests.privacy.conftest import ADA, NEEDLES, find_anywhere, seed

SECRET = "api-test-secret"


@pytest.fixture
def client(db: Database, tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = Settings(environment="test", data_dir=tmp_path, secret_key=SecretStr(SECRET))
    with TestClient(create_app(settings, db)) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_suppressions_are_added_checked_listed_and_lifted(
    client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    key = auth(workspaces[0].api_key)
    added = client.post(
        "/api/suppressions", json={"domain": "Corp.Example", "reason": "spamtrap"}, headers=key
    )
    assert added.status_code == 201, added.text
    assert added.json()["kind"] == "domain" and added.json()["value"] == "corp.example"
    address = client.post("/api/suppressions", json={"email": "Ann@Else.example"}, headers=key)
    assert address.json()["value"] == "ann@else.example"

    check = client.get(
        "/api/suppressions/check", params={"email": "x@eu.corp.example"}, headers=key
    )
    assert check.json() == {
        "email": "x@eu.corp.example",
        "suppressed": True,
        "kind": "domain",
        "reason": "spamtrap",
        "suppression_id": added.json()["id"],
    }
    page = client.get("/api/suppressions", params={"kind": "address", "limit": 1}, headers=key)
    assert [r["value"] for r in page.json()["data"]] == ["ann@else.example"]
    assert page.json()["next_cursor"] is None

    gone = client.delete(f"/api/suppressions/{added.json()['id']}", headers=key)
    assert gone.status_code == 204
    check = client.get(
        "/api/suppressions/check", params={"email": "x@eu.corp.example"}, headers=key
    )
    assert check.json()["suppressed"] is False

    both = client.post(
        "/api/suppressions", json={"email": "a@b.example", "domain": "b.example"}, headers=key
    )
    assert both.status_code == 400 and both.json()["code"] == "email_or_domain"
    erased = client.post(
        "/api/suppressions", json={"email": "a@b.example", "reason": "erased"}, headers=key
    )
    assert erased.status_code == 422
    bad = client.get("/api/suppressions/check", params={"email": "nope"}, headers=key)
    assert bad.status_code == 400 and bad.json()["field"] == "email"


def test_the_privacy_scope_is_required(
    db: Database, client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    with db.system() as s:
        narrow = create_api_key(s, workspaces[0].workspace_id, ["contacts:read"]).key
        privacy = create_api_key(s, workspaces[0].workspace_id, ["privacy"]).key
    denied = client.get("/api/suppressions", headers=auth(narrow))
    assert denied.status_code == 403 and denied.json()["code"] == "missing_scope"
    assert client.get("/api/suppressions", headers=auth(privacy)).status_code == 200
    assert client.get("/api/suppressions").status_code == 401


def test_export_is_a_json_attachment(
    db: Database, client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    a, b = workspaces
    seeded = seed(db, a.workspace_id, b.workspace_id)
    response = client.get(f"/api/contacts/{seeded.ada}/export", headers=auth(a.api_key))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="contact-{seeded.ada}-export.json"'
    )
    body = response.json()
    assert body["contact"]["email"] == ADA and len(body["records"]["consents"]) == 3


def test_erasure_through_the_api_leaves_only_the_hash(
    db: Database, client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    a, b = workspaces
    seeded = seed(db, a.workspace_id, b.workspace_id)
    key = auth(a.api_key)
    response = client.post(f"/api/contacts/{seeded.ada}/erase", headers=key)
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["contact_ids"] == [seeded.ada]
    assert receipt["requested_by"].startswith("api_key:")
    assert all(n.lower() not in response.text.lower() for n in NEEDLES)
    assert find_anywhere(db, a.workspace_id, NEEDLES) == []

    check = client.get("/api/suppressions/check", params={"email": ADA}, headers=key)
    assert check.json()["suppressed"] is True and check.json()["kind"] == "address_hash"
    hash_id = check.json()["suppression_id"]
    refused = client.delete(f"/api/suppressions/{hash_id}", headers=key)
    assert refused.status_code == 409 and refused.json()["code"] == "erasure_suppression"
    assert client.get(f"/api/contacts/{seeded.ada}/export", headers=key).status_code == 404

    audit = client.get("/api/privacy/erasures", headers=key).json()
    assert [e["former_contact_ids"] for e in audit] == [[seeded.ada]]

    # They sign up again: allowed, but mail stays off until they consent afresh.
    with db.tenant(a.workspace_id) as s:
        again, _ = actions.upsert_contact(s, {"email": ADA}, source="form")
    still = client.get("/api/suppressions/check", params={"email": ADA}, headers=key)
    assert still.json()["suppressed"] is True
    readmitted = client.post(
        f"/api/contacts/{again.id}/readmit",
        json={"source": "form", "text": "Yes, send me the newsletter", "ip": "192.0.2.4"},
        headers=key,
    )
    assert readmitted.status_code == 200, readmitted.text
    assert [x["reason"] for x in readmitted.json()["lifted"]] == ["erased"]
    free = client.get("/api/suppressions/check", params={"email": ADA}, headers=key)
    assert free.json()["suppressed"] is False


def test_erasure_by_email(
    db: Database, client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    a, b = workspaces
    seeded = seed(db, a.workspace_id, b.workspace_id)
    response = client.post(
        "/api/privacy/erase", json={"email": ADA.upper()}, headers=auth(a.api_key)
    )
    assert response.status_code == 200
    assert response.json()["contact_ids"] == [seeded.ada]
    assert find_anywhere(db, a.workspace_id, NEEDLES) == []
    invalid = client.post("/api/privacy/erase", json={"email": "nope"}, headers=auth(a.api_key))
    assert invalid.status_code == 400


def test_one_workspace_cannot_touch_another(
    db: Database, client: TestClient, workspaces: tuple[NewWorkspace, NewWorkspace]
) -> None:
    a, b = workspaces
    seeded = seed(db, a.workspace_id, b.workspace_id)
    theirs = auth(b.api_key)
    assert client.get(f"/api/contacts/{seeded.ada}/export", headers=theirs).status_code == 404
    assert client.post(f"/api/contacts/{seeded.ada}/erase", headers=theirs).status_code == 404
    own = client.post("/api/suppressions", json={"email": "x@a.example"}, headers=auth(a.api_key))
    assert client.delete(f"/api/suppressions/{own.json()['id']}", headers=theirs).status_code == 404
    listed = client.get("/api/suppressions", headers=theirs).json()["data"]
    assert listed == []
    with db.tenant(a.workspace_id) as s:
        assert actions.get_contact(s, seeded.ada).email == ADA
