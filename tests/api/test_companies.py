"""/api/companies: create, upsert, read with contact count, patch, delete, search, pages."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.support import assert_problem


def test_create_links_existing_contacts_and_counts_them(api: TestClient) -> None:
    api.post("/api/contacts/bulk", json={"contacts": [{"email": "a@initech.com"}]})
    company = api.get("/api/companies").json()["data"][0]  # made by the contact's domain
    api.delete(f"/api/companies/{company['id']}")
    created = api.post(
        "/api/companies",
        json={"domain": "https://www.Initech.com/about", "name": "Initech", "employee_count": 120},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["domain"], body["size_band"], body["contact_count"]) == (
        "initech.com",
        "51-200",
        1,
    )
    assert_problem(
        api.post("/api/companies", json={"domain": "initech.com"}), 409, "company_exists", "domain"
    )
    members = api.get(f"/api/companies/{body['id']}/contacts").json()
    assert [c["email"] for c in members["data"]] == ["a@initech.com"]


def test_upsert_patch_get_delete(api: TestClient) -> None:
    first = api.put("/api/companies", json={"domain": "globex.com", "industry": "Energy"})
    assert first.status_code == 201
    again = api.put("/api/companies", json={"domain": "globex.com", "country": "us"})
    assert again.status_code == 200
    assert (again.json()["industry"], again.json()["country"]) == ("Energy", "US")
    company_id = again.json()["id"]
    patched = api.patch(
        f"/api/companies/{company_id}", json={"name": "Globex", "size_band": "1-10"}
    )
    assert patched.status_code == 200, patched.text
    fetched = api.get(f"/api/companies/{company_id}").json()
    assert (fetched["name"], fetched["size_band"], fetched["contact_count"]) == (
        "Globex",
        "1-10",
        0,
    )
    assert_problem(
        api.patch(f"/api/companies/{company_id}", json={"size_band": "huge"}),
        400,
        "invalid_size_band",
        "size_band",
    )
    assert api.delete(f"/api/companies/{company_id}").status_code == 204
    assert_problem(api.get(f"/api/companies/{company_id}"), 404, "not_found")
    assert_problem(api.get(f"/api/companies/{company_id}/contacts"), 404, "not_found")


def test_deleting_a_company_keeps_its_contacts(api: TestClient) -> None:
    api.post("/api/contacts", json={"email": "k@hooli.com"})
    company_id = api.get("/api/contacts/by-email/k@hooli.com").json()["company_id"]
    api.delete(f"/api/companies/{company_id}")
    assert api.get("/api/contacts/by-email/k@hooli.com").json()["company_id"] is None


def test_search_filters_and_pages(api: TestClient) -> None:
    for i, (industry, country) in enumerate(
        [("Software", "DE"), ("Software", "US"), ("Retail", "DE"), ("Software", "DE")]
    ):
        api.post(
            "/api/companies",
            json={"domain": f"c{i}.example.com", "name": f"Company {i}", "industry": industry,
                  "country": country, "employee_count": 10 ** i},
        )  # fmt: skip

    def domains(**params: object) -> list[str]:
        response = api.get("/api/companies", params=params)
        assert response.status_code == 200, response.text
        return [c["domain"] for c in response.json()["data"]]

    assert domains(industry="Software", country="de") == ["c0.example.com", "c3.example.com"]
    assert domains(size_band="51-200") == ["c2.example.com"]
    assert domains(q="company 2") == ["c2.example.com"]
    first = api.get("/api/companies", params={"limit": 3}).json()
    second = api.get("/api/companies", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert len(first["data"]) == 3 and len(second["data"]) == 1
    assert second["next_cursor"] is None
