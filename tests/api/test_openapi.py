"""/openapi.json documents every management operation: tags, a success schema, and (for the
contact-data resources) the problem+json errors they answer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tests.api.conftest import ClientFactory

METHODS = {"get", "post", "put", "patch", "delete"}
OURS = {"contacts", "companies", "lists", "attributes"}


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        if path.startswith("/api/")
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_api_operation_is_tagged_and_documents_its_success(
    app: FastAPI, make_client: ClientFactory
) -> None:
    schema = make_client(app, None).get("/openapi.json").json()
    operations = _operations(schema)
    assert len(operations) >= 30
    for method, path, operation in operations:
        assert operation.get("tags"), (method, path)
        ok = {code: r for code, r in operation["responses"].items() if code.startswith("2")}
        assert ok, (method, path)
        for code, response in ok.items():
            assert code == "204" or response.get("content"), (method, path, code)


def test_contact_data_operations_document_their_problems(
    app: FastAPI, make_client: ClientFactory
) -> None:
    schema = make_client(app, None).get("/openapi.json").json()
    assert "Problem" in schema["components"]["schemas"]
    for method, path, operation in _operations(schema):
        if not OURS & set(operation["tags"]):
            continue
        assert operation.get("summary"), (method, path)
        for code in ("401", "403", "422"):
            content = operation["responses"][code]["content"]
            assert "application/problem+json" in content, (method, path, code)
        if "{" in path:
            assert "404" in operation["responses"], (method, path)
        if "requestBody" in operation:
            assert "413" in operation["responses"], (method, path)


def test_bulk_request_and_result_are_described(app: FastAPI, make_client: ClientFactory) -> None:
    schema = make_client(app, None).get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert set(components["BulkUpsertIn"]["properties"]) == {"contacts", "list"}
    assert components["BulkUpsertIn"]["additionalProperties"] is False
    assert set(components["BulkRowOut"]["properties"]) == {"index", "status", "id", "errors"}
    assert components["ContactIn"]["additionalProperties"] is False
