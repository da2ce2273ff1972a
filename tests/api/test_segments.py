"""``/api/segments``: saving, validation with paths, preview, members, CSV, refresh, history."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from postwise.contacts.actions import upsert_contacts
from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace, create_api_key
from tests.api.conftest import ClientFactory
from tests.segments.jobrun import run_due

SENIOR = {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]}


def _people(db: Database, ws: NewWorkspace, n: int = 30) -> None:
    rows: list[dict[str, Any]] = [
        {"email": f"p{i:02}@acme.example", "seniority": "vp" if i % 2 else "entry"}
        for i in range(n)
    ]
    rows[1]["first_name"] = "=HYPERLINK(1)"  # a formula a spreadsheet would run
    with db.tenant(ws.workspace_id) as s:
        upsert_contacts(s, rows, source="api")


def test_create_read_update_delete(api: TestClient, db: Database, workspace: NewWorkspace) -> None:
    _people(db, workspace, 4)
    created = api.post(
        "/api/segments", json={"name": "Seniors", "description": "VPs", "definition": SENIOR}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["version"], body["member_count"], body["status"]) == (1, 0, "active")
    assert "seniority" in body["summary"]
    run_due(db)  # the refresh job the save enqueued
    segment = api.get(f"/api/segments/{body['id']}").json()
    assert segment["member_count"] == 2 and segment["refreshed_at"] is not None
    assert [s["name"] for s in api.get("/api/segments").json()["data"]] == ["Seniors"]

    changed = api.patch(
        f"/api/segments/{body['id']}",
        json={"definition": {"field": "contact.seniority", "op": "eq", "value": "entry"}},
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    run_due(db)
    assert api.get(f"/api/segments/{body['id']}").json()["member_count"] == 2
    duplicate = api.post("/api/segments", json={"name": "Seniors", "definition": SENIOR})
    assert duplicate.status_code == 409
    assert api.delete(f"/api/segments/{body['id']}").status_code == 204
    assert api.get(f"/api/segments/{body['id']}").status_code == 404


def test_bad_definitions_are_422_naming_the_node(api: TestClient) -> None:
    bad = {"all": [SENIOR, {"any": [{"event": "Order Completed", "count": {"op": "gte"}}]}]}
    for path, body in (
        ("/api/segments/validate", {"definition": bad}),
        ("/api/segments/preview", {"definition": bad}),
        ("/api/segments", {"name": "Bad", "definition": bad}),
    ):
        response = api.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        problem = response.json()
        assert problem["code"] == "invalid_segment"
        assert problem["field"].startswith("all[1].any[0].count"), problem
    injection = {"field": "contact.first_name", "op": "eq", "value": "x'; DROP TABLE contacts;--"}
    ok = api.post("/api/segments/validate", json={"definition": injection})
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert api.post("/api/segments/preview", json={"definition": injection}).json()["count"] == 0
    assert api.get("/api/segments").status_code == 200


def test_preview_counts_samples_twenty_and_times_the_count(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    _people(db, workspace, 50)
    response = api.post("/api/segments/preview", json={"definition": SENIOR})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 25
    assert body["sample"] == [f"p{i:02}@acme.example" for i in range(1, 40, 2)]
    assert 0 <= body["seconds"] < 5


def test_members_pages_csv_refresh_and_history(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    _people(db, workspace, 30)
    segment_id = api.post("/api/segments", json={"name": "Seniors", "definition": SENIOR}).json()[
        "id"
    ]
    refreshed = api.post(f"/api/segments/{segment_id}/refresh").json()
    assert (refreshed["members"], refreshed["entered"], refreshed["exited"]) == (15, 15, 0)

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = api.get(f"/api/segments/{segment_id}/members", params=params).json()
        seen += [m["email"] for m in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{i:02}@acme.example" for i in range(1, 30, 2)]
    bad = api.get(f"/api/segments/{segment_id}/members", params={"cursor": "nonsense"})
    assert bad.status_code == 400

    exported = api.get(f"/api/segments/{segment_id}/members.csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["email"] for r in rows] == seen
    assert rows[0]["first_name"] == "'=HYPERLINK(1)"  # guarded like the contact export

    contact_id = api.get("/api/contacts", params={"q": "p01@"}).json()["data"][0]["id"]
    api.patch(f"/api/contacts/{contact_id}", json={"seniority": "entry"})
    run_due(db)  # the real-time re-evaluation of that update
    history = api.get(f"/api/contacts/{contact_id}/segments").json()["data"]
    assert [(h["segment"], h["exited_at"] is not None) for h in history] == [("Seniors", True)]
    assert api.get(f"/api/segments/{segment_id}").json()["member_count"] == 14


def test_scopes(
    app: FastAPI, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    with db.system() as s:
        reader = create_api_key(s, workspace.workspace_id, ["segments:read"]).key
        contacts_only = create_api_key(s, workspace.workspace_id, ["contacts:read"]).key
    as_reader = make_client(app, reader)
    assert as_reader.get("/api/segments").status_code == 200
    assert as_reader.post("/api/segments/preview", json={"definition": SENIOR}).status_code == 200
    refused = as_reader.post("/api/segments", json={"name": "x", "definition": SENIOR})
    assert refused.status_code == 403 and refused.json()["code"] == "missing_scope"
    assert make_client(app, contacts_only).get("/api/segments").status_code == 403
