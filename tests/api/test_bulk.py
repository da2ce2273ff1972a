"""POST /api/contacts/bulk: a thousand rows per call, per-row results, idempotent repeats."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from postwise.storage.database import Database
from postwise.storage.tables import Consent, Contact, ListMembership
from postwise.workspaces.actions import NewWorkspace
from tests.api.conftest import AppFactory, ClientFactory
from tests.api.support import assert_problem, snapshot


def _rows(n: int) -> list[dict[str, object]]:
    return [
        {
            "email": f"person{i}@company{i % 97}.com",
            "first_name": f"First{i}",
            "last_name": "Last",
            "job_title": "Engineer",
            "seniority": "senior",
            "country": "DE",
            "attributes": {"seats": i, "plan": "pro" if i % 2 else "free"},
        }
        for i in range(n)
    ]


def _declare(api: TestClient) -> None:
    for name, kind in (("seats", "number"), ("plan", "string")):
        api.post("/api/attributes", json={"entity": "contact", "name": name, "type": kind})


def test_thousand_contacts_in_one_call_then_the_same_call_changes_nothing(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    _declare(api)
    rows = _rows(1000)
    first = api.post("/api/contacts/bulk", json={"contacts": rows, "list": "Customers"})
    assert first.status_code == 200, first.text[:500]
    body = first.json()
    assert body["counts"] == {"created": 1000, "updated": 0, "unchanged": 0, "rejected": 0}
    assert [r["index"] for r in body["results"]] == list(range(1000))
    assert all(r["id"] and r["errors"] == [] for r in body["results"])
    with db.tenant(workspace.workspace_id) as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 1000
        assert s.scalar(select(func.count()).select_from(ListMembership)) == 1000
        assert set(s.scalars(select(Consent.source))) == {"api"}

    before = snapshot(db, workspace.workspace_id)
    second = api.post("/api/contacts/bulk", json={"contacts": rows, "list": body["list_id"]})
    assert second.json()["counts"] == {"created": 0, "updated": 0, "unchanged": 1000, "rejected": 0}
    assert [r["id"] for r in second.json()["results"]] == [r["id"] for r in body["results"]]
    assert snapshot(db, workspace.workspace_id) == before

    rows[7]["job_title"] = "CTO"
    third = api.post("/api/contacts/bulk", json={"contacts": rows})
    assert third.json()["counts"] == {"created": 0, "updated": 1, "unchanged": 999, "rejected": 0}
    assert third.json()["results"][7]["status"] == "updated"


def test_bad_rows_are_rejected_one_by_one_with_field_and_code(api: TestClient) -> None:
    _declare(api)
    rows: list[dict[str, object]] = [
        {"email": "good@initech.com"},
        {"email": "not-an-address"},
        {"email": "typed@initech.com", "attributes": {"seats": "lots"}},
        {"email": "unknown@initech.com", "favourite_colour": "green"},
        {"email": 42},
        {"email": "good@initech.com", "first_name": "Later wins"},
    ]
    response = api.post("/api/contacts/bulk", json={"contacts": rows})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [
        "created", "rejected", "rejected", "rejected", "rejected", "created"
    ]  # fmt: skip
    assert results[0]["id"] == results[5]["id"]
    assert [(e["field"], e["code"]) for r in results[1:5] for e in r["errors"]] == [
        ("email", "invalid_email"),
        ("attributes.seats", "invalid_attribute"),
        ("favourite_colour", "unknown_field"),
        ("email", "invalid_type"),
    ]
    assert all(e["message"] for r in results[1:5] for e in r["errors"])
    assert response.json()["counts"]["rejected"] == 4
    assert api.get("/api/contacts/by-email/good@initech.com").json()["first_name"] == "Later wins"


def test_over_the_row_limit_is_refused_before_anything_is_written(
    make_app: AppFactory, make_client: ClientFactory, workspace: NewWorkspace, db: Database
) -> None:
    api = make_client(make_app(bulk_upsert_max=10), workspace.api_key)
    before = snapshot(db, workspace.workspace_id)
    response = api.post("/api/contacts/bulk", json={"contacts": _rows(11)})
    body = assert_problem(response, 413, "too_many_contacts", "contacts")
    assert "at most 10" in body["detail"]
    assert api.post("/api/contacts/bulk", json={"contacts": []}).status_code == 422
    assert snapshot(db, workspace.workspace_id) == before
    assert api.post("/api/contacts/bulk", json={"contacts": _rows(10)}).status_code == 200


def test_an_unknown_list_id_fails_the_call_and_stores_nothing(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    before = snapshot(db, workspace.workspace_id)
    response = api.post("/api/contacts/bulk", json={"contacts": _rows(3), "list": 999})
    assert_problem(response, 404, "not_found")
    assert snapshot(db, workspace.workspace_id) == before


def test_new_contacts_get_their_own_ids_company_status_and_timeline(
    api: TestClient, app: object, db: Database, make_client: ClientFactory
) -> None:
    # The same addresses already live in another workspace: ids must be this one's.
    from postwise.workspaces.actions import create_workspace

    with db.system() as s:
        other = create_workspace(s, "Other")
    rows: list[dict[str, object]] = [
        {"email": "ann@initech.com", "external_id": "crm-1"},
        {"email": "bob@gmail.com", "first_name": "Bob"},
        {"email": "cy@initech.com", "external_id": "crm-1"},
    ]
    other_ids = [
        r["id"]
        for r in make_client(app, other.api_key)  # type: ignore[arg-type]
        .post("/api/contacts/bulk", json={"contacts": rows[:2]})
        .json()["results"]
    ]

    body = api.post("/api/contacts/bulk", json={"contacts": rows}).json()
    assert [r["status"] for r in body["results"]] == ["created", "created", "rejected"]
    assert body["results"][2]["errors"][0]["field"] == "external_id"
    assert body["results"][2]["errors"][0]["code"] == "external_id_taken"
    ann, bob = (api.get(f"/api/contacts/{r['id']}").json() for r in body["results"][:2])
    assert {ann["id"], bob["id"]}.isdisjoint(other_ids)
    assert (ann["email"], ann["external_id"], ann["status"]) == (
        "ann@initech.com",
        "crm-1",
        "subscribed",
    )
    assert ann["company_id"] is not None
    assert (bob["first_name"], bob["company_id"]) == ("Bob", None)
    timeline = api.get(f"/api/contacts/{ann['id']}/timeline").json()["data"]
    assert [(e["kind"], e["change"], e["source"]) for e in timeline] == [
        ("change", "created", "api")
    ]
