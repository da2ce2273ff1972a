"""Bad input of every kind gets problem+json naming what was wrong, and stores nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace
from tests.api.conftest import AppFactory, ClientFactory
from tests.api.support import assert_problem, snapshot

JSON = {"content-type": "application/json"}

# (what, method, path, request keyword arguments, status, code, field)
# {contact} and {list} are filled with a stored contact and list.
CASES: list[tuple[str, str, str, dict[str, Any], int, str, str | None]] = [
    ("malformed email", "POST", "/api/contacts", {"json": {"email": "jane@@example.com"}},
     400, "invalid_email", "email"),
    ("malformed email on upsert", "PUT", "/api/contacts", {"json": {"email": "jane.example.com"}},
     400, "invalid_email", "email"),
    ("malformed email on patch", "PATCH", "/api/contacts/{contact}", {"json": {"email": "x@"}},
     400, "invalid_email", "email"),
    ("malformed email in path", "GET", "/api/contacts/by-email/nobody", {},
     400, "invalid_email", "email"),
    ("email of the wrong type", "POST", "/api/contacts", {"json": {"email": ["a@initech.com"]}},
     422, "invalid_request", "email"),
    ("unknown contact field", "POST", "/api/contacts",
     {"json": {"email": "a@initech.com", "favourite_colour": "red"}},
     422, "invalid_request", "favourite_colour"),
    ("unknown company field", "POST", "/api/companies", {"json": {"domain": "x.com", "ceo": "y"}},
     422, "invalid_request", "ceo"),
    ("unknown list field", "POST", "/api/lists", {"json": {"name": "N", "colour": "red"}},
     422, "invalid_request", "colour"),
    ("unknown membership field", "PUT", "/api/lists/{list}/members/{contact}",
     {"json": {"sauce": "api"}}, 422, "invalid_request", "sauce"),
    ("wrong attribute type", "PATCH", "/api/contacts/{contact}",
     {"json": {"attributes": {"seats": "many"}}}, 400, "invalid_attribute", "attributes.seats"),
    ("undeclared attribute", "PUT", "/api/contacts",
     {"json": {"email": "a@initech.com", "attributes": {"colour": "red"}}},
     400, "unknown_attribute", "attributes.colour"),
    ("attributes not an object", "PUT", "/api/contacts",
     {"json": {"email": "a@initech.com", "attributes": ["red"]}},
     422, "invalid_request", "attributes"),
    ("unknown country", "PUT", "/api/contacts",
     {"json": {"email": "a@initech.com", "country": "XX"}}, 400, "invalid_country", "country"),
    ("unknown time zone", "PATCH", "/api/contacts/{contact}", {"json": {"timezone": "Mars/Base"}},
     400, "invalid_timezone", "timezone"),
    ("language longer than its column", "PATCH", "/api/contacts/{contact}",
     {"json": {"language": "en-abcdefgh-ijklmnop"}}, 400, "invalid_language", "language"),
    ("unknown status", "PATCH", "/api/contacts/{contact}", {"json": {"status": "vip"}},
     400, "invalid_status", "status"),
    ("NUL in a name", "PATCH", "/api/contacts/{contact}", {"json": {"first_name": "A\u0000"}},
     422, "invalid_request", "first_name"),
    ("NUL in an attribute", "PATCH", "/api/contacts/{contact}",
     {"json": {"attributes": {"plan": "pro\u0000"}}}, 400, "invalid_attribute", "attributes.plan"),
    ("NUL in a list name", "POST", "/api/lists", {"json": {"name": "News\u0000"}},
     422, "invalid_request", "name"),
    ("employee count beyond its column", "POST", "/api/companies",
     {"json": {"domain": "big.com", "employee_count": 10**12}},
     400, "invalid_employee_count", "employee_count"),
    ("malformed domain", "POST", "/api/companies", {"json": {"domain": "not a domain"}},
     400, "invalid_domain", "domain"),
    ("unknown attribute type", "POST", "/api/attributes",
     {"json": {"entity": "contact", "name": "x", "type": "colour"}},
     422, "invalid_request", "type"),
    ("unknown consent source", "PUT", "/api/lists/{list}/members/{contact}",
     {"json": {"source": "fax"}}, 400, "invalid_source", "source"),
    ("malformed IP address", "PUT", "/api/lists/{list}/members/{contact}",
     {"json": {"ip": "300.1.1.1"}}, 422, "invalid_request", "ip"),
    ("malformed JSON", "POST", "/api/contacts", {"content": b'{"email": ', "headers": JSON},
     422, "invalid_request", "body"),
    ("JSON that is not an object", "POST", "/api/contacts", {"content": b"[1, 2]", "headers": JSON},
     422, "invalid_request", "body"),
    ("no body", "POST", "/api/lists", {"headers": JSON}, 422, "invalid_request", "body"),
    ("not sent as JSON", "POST", "/api/lists",
     {"content": b'{"name": "N"}', "headers": {"content-type": "text/plain"}},
     422, "invalid_request", "body"),
    ("bulk rows that are not objects", "POST", "/api/contacts/bulk", {"json": {"contacts": [1]}},
     422, "invalid_request", "contacts.0"),
    ("id beyond 64 bits", "GET", "/api/contacts/99999999999999999999", {},
     422, "invalid_request", "contact_id"),
    ("id that is not a number", "DELETE", "/api/lists/news", {}, 422, "invalid_request", "list_id"),
    ("page too large", "GET", "/api/companies", {"params": {"limit": 100_000}},
     422, "invalid_request", "limit"),
    ("forged cursor", "GET", "/api/lists", {"params": {"cursor": "eyJ4IjogMX0"}},
     400, "invalid_cursor", "cursor"),
    ("unknown status filter", "GET", "/api/lists/{list}/members", {"params": {"status": "vip"}},
     422, "invalid_request", "status"),
]  # fmt: skip


@pytest.fixture
def stored(api: TestClient) -> dict[str, int]:
    for name, kind in (("seats", "number"), ("plan", "string")):
        api.post("/api/attributes", json={"entity": "contact", "name": name, "type": kind})
    contact = api.post("/api/contacts", json={"email": "ann@initech.com"}).json()["id"]
    mailing_list = api.post("/api/lists", json={"name": "News"}).json()["id"]
    return {"contact": contact, "list": mailing_list}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_a_problem_naming_the_field_and_stores_nothing(
    api: TestClient,
    db: Database,
    workspace: NewWorkspace,
    stored: dict[str, int],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    before = snapshot(db, workspace.workspace_id)
    response = api.request(method, path.format(**stored), **kwargs)
    body = assert_problem(response, status, code, field)
    if body.get("errors"):
        assert all(e["code"] and e["message"] for e in body["errors"])
    assert snapshot(db, workspace.workspace_id) == before


@pytest.fixture
def small(make_app: AppFactory, make_client: ClientFactory, workspace: NewWorkspace) -> TestClient:
    """An app accepting at most 2,000-byte bodies."""
    app: FastAPI = make_app(max_request_bytes=2000)
    return make_client(app, workspace.api_key)


def _bulk(n: int) -> bytes:
    return json.dumps({"contacts": [{"email": f"p{i}@initech.com"} for i in range(n)]}).encode()


def test_oversized_body_is_refused_before_it_is_read(
    small: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    before = snapshot(db, workspace.workspace_id)
    body = assert_problem(
        small.post("/api/contacts/bulk", content=_bulk(200), headers=JSON),
        413,
        "payload_too_large",
    )
    assert "2000 bytes" in body["detail"]
    assert snapshot(db, workspace.workspace_id) == before
    assert small.post("/api/contacts/bulk", content=_bulk(10), headers=JSON).status_code == 200


def test_oversized_chunked_body_is_refused_too(
    small: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    def chunks(data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), 500):
            yield data[start : start + 500]

    before = snapshot(db, workspace.workspace_id)
    response = small.post("/api/contacts/bulk", content=chunks(_bulk(200)), headers=JSON)
    assert_problem(response, 413, "payload_too_large")
    assert snapshot(db, workspace.workspace_id) == before
    fine = small.post("/api/contacts/bulk", content=chunks(_bulk(10)), headers=JSON)
    assert fine.status_code == 200, fine.text
    assert fine.json()["counts"]["created"] == 10


def test_a_failed_bulk_call_stores_none_of_its_rows(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    """The list is checked first; an error after rows were written would roll them back."""
    before = snapshot(db, workspace.workspace_id)
    response = api.post(
        "/api/contacts/bulk", json={"contacts": [{"email": "a@initech.com"}], "list": 12345}
    )
    assert_problem(response, 404, "not_found")
    assert snapshot(db, workspace.workspace_id) == before
