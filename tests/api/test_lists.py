"""/api/lists and memberships: consent recorded, double opt-in, unsubscribe, pages."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.storage.database import Database
from postwise.storage.tables import Consent
from tests.api.support import assert_problem


def _contact(api: TestClient, email: str) -> int:
    response = api.put("/api/contacts", json={"email": email})
    assert response.status_code in (200, 201), response.text
    contact_id: int = response.json()["id"]
    return contact_id


def test_list_crud(api: TestClient) -> None:
    created = api.post("/api/lists", json={"name": "Product news", "description": "Monthly"})
    assert created.status_code == 201, created.text
    list_id = created.json()["id"]
    assert created.json()["counts"] == {"subscribed": 0, "unsubscribed": 0, "pending": 0}
    assert_problem(
        api.post("/api/lists", json={"name": "Product news"}), 409, "list_exists", "name"
    )
    renamed = api.patch(f"/api/lists/{list_id}", json={"name": "Release notes"})
    assert renamed.json()["name"] == "Release notes"
    assert renamed.json()["description"] == "Monthly"
    assert api.get(f"/api/lists/{list_id}").json()["name"] == "Release notes"
    assert_problem(api.patch(f"/api/lists/{list_id}", json={"name": " "}), 400, "invalid_name")
    assert api.delete(f"/api/lists/{list_id}").status_code == 204
    assert_problem(api.get(f"/api/lists/{list_id}"), 404, "not_found")


def test_lists_page_with_cursor(api: TestClient) -> None:
    for i in range(5):
        api.post("/api/lists", json={"name": f"L{i}"})
    first = api.get("/api/lists", params={"limit": 2}).json()
    names = [x["name"] for x in first["data"]]
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/api/lists", params={"limit": 2, "cursor": cursor}).json()
        names += [x["name"] for x in page["data"]]
        cursor = page["next_cursor"]
    assert names == [f"L{i}" for i in range(5)]
    api.post("/api/lists", json={"name": "100% Customers"})
    found = api.get("/api/lists", params={"q": "0%"}).json()["data"]
    assert [x["name"] for x in found] == ["100% Customers"]  # '%' is matched, not a wildcard
    assert [x["name"] for x in api.get("/api/lists", params={"q": "l3"}).json()["data"]] == ["L3"]


def test_subscribe_records_consent_and_double_opt_in_waits(api: TestClient, db: Database) -> None:
    list_id = api.post("/api/lists", json={"name": "Webinars", "double_opt_in": True}).json()["id"]
    ann = _contact(api, "ann@initech.com")
    put = api.put(
        f"/api/lists/{list_id}/members/{ann}",
        json={"source": "form", "ip": "203.0.113.9", "consent_text": "Yes, send me invites"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["status"] == "pending"
    with db.system() as s:
        consent = s.scalars(select(Consent).where(Consent.contact_id == ann)).one()
        assert (consent.source, consent.ip, consent.consent_text, consent.confirmed_at) == (
            "form", "203.0.113.9", "Yes, send me invites", None
        )  # fmt: skip
    confirmed = api.post(f"/api/lists/{list_id}/members/{ann}/confirm")
    assert confirmed.json()["status"] == "subscribed"

    ben = _contact(api, "ben@initech.com")
    added = api.post(
        f"/api/lists/{list_id}/members", json={"email": "ben@initech.com", "confirmed": True}
    )
    assert added.status_code == 200, added.text
    assert (added.json()["contact_id"], added.json()["status"]) == (ben, "subscribed")
    counts = api.get(f"/api/lists/{list_id}").json()["counts"]
    assert counts == {"subscribed": 2, "unsubscribed": 0, "pending": 0}


def test_unsubscribe_remove_and_member_pages(api: TestClient) -> None:
    list_id = api.post("/api/lists", json={"name": "News"}).json()["id"]
    ids = [_contact(api, f"m{i}@initech.com") for i in range(5)]
    for contact_id in ids:
        response = api.post(f"/api/lists/{list_id}/members", json={"contact_id": contact_id})
        assert response.status_code == 200, response.text
    gone = api.post(f"/api/lists/{list_id}/members/{ids[0]}/unsubscribe")
    assert gone.json()["status"] == "unsubscribed"
    assert api.get(f"/api/lists/{list_id}/members/{ids[0]}").json()["status"] == "unsubscribed"
    assert api.delete(f"/api/lists/{list_id}/members/{ids[1]}").status_code == 204
    assert_problem(api.get(f"/api/lists/{list_id}/members/{ids[1]}"), 404, "not_found")

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2, "status": "subscribed"}
        if cursor:
            params["cursor"] = cursor
        page = api.get(f"/api/lists/{list_id}/members", params=params).json()
        seen += [m["contact_id"] for m in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[2:]


def test_member_input_errors(api: TestClient) -> None:
    list_id = api.post("/api/lists", json={"name": "News"}).json()["id"]
    ann = _contact(api, "ann@initech.com")
    assert_problem(
        api.post(f"/api/lists/{list_id}/members", json={"email": "nobody@initech.com"}),
        404,
        "not_found",
        "email",
    )
    assert_problem(
        api.post(f"/api/lists/{list_id}/members", json={"source": "api"}), 422, "invalid_request"
    )
    assert_problem(
        api.put(f"/api/lists/{list_id}/members/{ann}", json={"source": "fax"}),
        400,
        "invalid_source",
        "source",
    )
    assert_problem(
        api.put(f"/api/lists/{list_id}/members/{ann}", json={"ip": "999.1.1.1"}),
        422,
        "invalid_request",
        "ip",
    )
    assert_problem(api.post(f"/api/lists/{list_id}/members/{ann}/confirm"), 404, "not_found")
