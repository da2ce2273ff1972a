"""/api/contacts: create, upsert, read, patch, delete, search with every filter, pages."""

from __future__ import annotations

from datetime import timedelta
from typing import get_args

from fastapi.testclient import TestClient

from postwise.api.schemas.contacts import ContactStatus
from postwise.contacts.fields import CONTACT_STATUSES
from postwise.core.clock import utcnow
from tests.api.support import assert_problem


def test_status_filter_matches_the_domain_statuses() -> None:
    assert get_args(ContactStatus) == CONTACT_STATUSES


def test_create_read_patch_delete(api: TestClient) -> None:
    api.post("/api/attributes", json={"entity": "contact", "name": "plan", "type": "string"})
    created = api.post(
        "/api/contacts",
        json={
            "email": "Ada@Initech.COM",
            "first_name": "Ada",
            "country": "de",
            "attributes": {"plan": "pro"},
        },
    )
    assert created.status_code == 201, created.text
    contact = created.json()
    assert contact["email"] == "Ada@initech.com"
    assert contact["country"] == "DE"
    assert contact["attributes"] == {"plan": "pro"}
    assert contact["company_id"] is not None

    detail = api.get(f"/api/contacts/{contact['id']}").json()
    assert detail["company"]["domain"] == "initech.com"
    assert detail["lists"] == [] and detail["latest_events"] == []
    assert api.get("/api/contacts/by-email/Ada@INITECH.com").json()["id"] == contact["id"]

    patched = api.patch(
        f"/api/contacts/{contact['id']}",
        json={"last_name": "Lovelace", "unset_attributes": ["plan"]},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["last_name"] == "Lovelace"
    assert patched.json()["first_name"] == "Ada"
    assert patched.json()["attributes"] == {}

    kinds = [e["change"] for e in api.get(f"/api/contacts/{contact['id']}/timeline").json()["data"]]
    assert kinds.count("updated") == 2 and kinds[-1] == "created"

    assert api.delete(f"/api/contacts/{contact['id']}").status_code == 204
    assert_problem(api.get(f"/api/contacts/{contact['id']}"), 404, "not_found")
    assert_problem(api.get("/api/contacts/by-email/Ada@initech.com"), 404, "not_found", "email")


def test_create_twice_is_a_conflict_but_put_upserts(api: TestClient) -> None:
    assert api.post("/api/contacts", json={"email": "bob@initech.com"}).status_code == 201
    assert_problem(
        api.post("/api/contacts", json={"email": "bob@INITECH.com"}),
        409,
        "contact_exists",
        "email",
    )
    first = api.put("/api/contacts", json={"email": "carl@initech.com", "job_title": "CTO"})
    assert first.status_code == 201
    again = api.put("/api/contacts", json={"email": "carl@initech.com", "job_title": "CEO"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["job_title"] == "CEO"


def test_patch_email_onto_another_contact_conflicts(api: TestClient) -> None:
    a = api.post("/api/contacts", json={"email": "a@initech.com"}).json()
    api.post("/api/contacts", json={"email": "b@initech.com"})
    assert_problem(
        api.patch(f"/api/contacts/{a['id']}", json={"email": "b@initech.com"}),
        409,
        "contact_exists",
        "email",
    )


def test_unsubscribed_contact_cannot_be_resubscribed_by_an_update(api: TestClient) -> None:
    contact = api.post(
        "/api/contacts", json={"email": "gone@initech.com", "status": "unsubscribed"}
    ).json()
    assert_problem(
        api.patch(f"/api/contacts/{contact['id']}", json={"status": "subscribed"}),
        400,
        "status_locked",
        "status",
    )


def test_search_filters(api: TestClient) -> None:
    rows = [
        {"email": "ann@initech.com", "first_name": "Ann"},
        {"email": "ben@initech.com", "last_name": "Annick"},
        {"email": "cy@globex.com", "status": "bounced"},
        {"email": "dee@gmail.com"},
    ]
    result = api.post("/api/contacts/bulk", json={"contacts": rows, "list": "Customers"}).json()
    ids = [r["id"] for r in result["results"]]
    list_id = result["list_id"]
    api.delete(f"/api/lists/{list_id}/members/{ids[1]}")

    def emails(**params: object) -> list[str]:
        response = api.get("/api/contacts", params=params)
        assert response.status_code == 200, response.text
        return [c["email"] for c in response.json()["data"]]

    assert emails() == [r["email"] for r in rows]
    assert emails(q="ann") == ["ann@initech.com", "ben@initech.com"]
    assert emails(status="bounced") == ["cy@globex.com"]
    assert emails(email_domain="GMAIL.com") == ["dee@gmail.com"]
    company_id = api.get("/api/contacts/by-email/ann@initech.com").json()["company_id"]
    assert emails(company_id=company_id) == ["ann@initech.com", "ben@initech.com"]
    assert emails(list_id=list_id) == ["ann@initech.com", "cy@globex.com", "dee@gmail.com"]
    assert emails(updated_since=(utcnow() + timedelta(hours=1)).isoformat()) == []
    assert len(emails(updated_since=(utcnow() - timedelta(hours=1)).isoformat())) == 4
    assert_problem(api.get("/api/contacts", params={"status": "gone"}), 422, "invalid_request")


def test_cursor_pagination_walks_every_contact_once(api: TestClient) -> None:
    rows = [{"email": f"p{i:03}@initech.com"} for i in range(23)]
    api.post("/api/contacts/bulk", json={"contacts": rows})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, object] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/contacts", params=params).json()
        seen += [c["email"] for c in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["email"] for r in rows]
    assert pages == 5
    assert_problem(
        api.get("/api/contacts", params={"cursor": "not-a-cursor"}), 400, "invalid_cursor", "cursor"
    )


def test_timeline_shows_subscriptions(api: TestClient) -> None:
    contact = api.post("/api/contacts", json={"email": "tim@initech.com"}).json()
    news = api.post("/api/lists", json={"name": "News"}).json()
    api.put(f"/api/lists/{news['id']}/members/{contact['id']}", json={"source": "form"})
    entries = api.get(f"/api/contacts/{contact['id']}/timeline", params={"limit": 1}).json()
    assert [(e["kind"], e["change"], e["source"]) for e in entries["data"]] == [
        ("change", "subscribed", "form")
    ]
    detail = api.get(f"/api/contacts/{contact['id']}").json()
    assert [(m["list"], m["status"], m["consent"]["source"]) for m in detail["lists"]] == [
        ("News", "subscribed", "form")
    ]
