"""/api/attributes: declared attributes; values are checked against them on every write."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.support import assert_problem


def test_define_list_get_patch(api: TestClient) -> None:
    created = api.post(
        "/api/attributes",
        json={"entity": "contact", "name": "seats", "type": "number", "description": "Licences"},
    )
    assert created.status_code == 201, created.text
    attribute = created.json()
    assert (attribute["entity"], attribute["type"]) == ("contact", "number")
    api.post("/api/attributes", json={"entity": "company", "name": "tier", "type": "string"})
    assert_problem(
        api.post("/api/attributes", json={"entity": "contact", "name": "seats", "type": "date"}),
        409,
        "attribute_exists",
        "name",
    )
    assert_problem(
        api.post("/api/attributes", json={"entity": "contact", "name": "Bad Name", "type": "date"}),
        400,
        "invalid_name",
        "name",
    )
    everything = api.get("/api/attributes").json()["data"]
    assert [a["name"] for a in everything] == ["seats", "tier"]
    only = api.get("/api/attributes", params={"entity": "company"}).json()["data"]
    assert [a["name"] for a in only] == ["tier"]
    named = api.get("/api/attributes", params={"q": "EAT"}).json()["data"]
    assert [a["name"] for a in named] == ["seats"]
    page = api.get("/api/attributes", params={"limit": 1}).json()
    rest = api.get("/api/attributes", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [a["name"] for a in page["data"] + rest["data"]] == ["seats", "tier"]
    assert rest["next_cursor"] is None
    patched = api.patch(f"/api/attributes/{attribute['id']}", json={"description": "Seats"})
    assert patched.json()["description"] == "Seats"
    assert api.get(f"/api/attributes/{attribute['id']}").json()["description"] == "Seats"
    assert_problem(
        api.patch(
            f"/api/attributes/{attribute['id']}", json={"description": "x", "type": "string"}
        ),
        422,
        "invalid_request",
        "type",
    )


def test_values_are_typed_and_deleting_a_definition_blocks_writes_only(api: TestClient) -> None:
    seats = api.post(
        "/api/attributes", json={"entity": "contact", "name": "seats", "type": "number"}
    ).json()
    stored = api.post(
        "/api/contacts", json={"email": "a@initech.com", "attributes": {"seats": "1,200"}}
    )
    assert stored.json()["attributes"] == {"seats": 1200}
    contact_id = stored.json()["id"]
    assert_problem(
        api.patch(f"/api/contacts/{contact_id}", json={"attributes": {"seats": "many"}}),
        400,
        "invalid_attribute",
        "attributes.seats",
    )

    assert api.delete(f"/api/attributes/{seats['id']}").status_code == 204
    assert_problem(api.get(f"/api/attributes/{seats['id']}"), 404, "not_found")
    assert api.get(f"/api/contacts/{contact_id}").json()["attributes"] == {"seats": 1200}
    assert_problem(
        api.patch(f"/api/contacts/{contact_id}", json={"attributes": {"seats": 3}}),
        400,
        "unknown_attribute",
        "attributes.seats",
    )
    api.post("/api/attributes", json={"entity": "contact", "name": "seats", "type": "number"})
    again = api.patch(f"/api/contacts/{contact_id}", json={"attributes": {"seats": 3}})
    assert again.json()["attributes"] == {"seats": 3}
