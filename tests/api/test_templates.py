"""/api/templates: validation with line numbers, versions, previews, scope."""

from __future__ import annotations

from fastapi.testclient import TestClient

from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace
from tests.api.conftest import ClientFactory
from tests.api.support import assert_problem, issue_key

HTML = (
    "<html><head><style>p.lead{color:#333333}</style></head><body>"
    '<p class="lead">Hi {{ contact.first_name | default("there") }} from {{ company.name }}</p>'
    "{% for item in data['items'] %}<p>{{ item }}</p>{% endfor %}</body></html>"
)


def test_create_read_update_delete(api: TestClient) -> None:
    created = api.post(
        "/api/templates", json={"name": "Cart", "subject": "Your cart", "html": HTML}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["version"] == 1 and body["kind"] == "marketing"
    template_id = body["id"]
    assert [t["name"] for t in api.get("/api/templates").json()["data"]] == ["Cart"]
    changed = api.patch(f"/api/templates/{template_id}", json={"subject": "Still in your cart"})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed.json()["html"] == HTML
    duplicate = api.post(
        "/api/templates", json={"name": "Cart", "subject": "x", "html": "<p>x</p>"}
    )
    assert_problem(duplicate, 409, "template_exists", "name")
    assert api.delete(f"/api/templates/{template_id}").status_code == 204
    assert_problem(api.get(f"/api/templates/{template_id}"), 404, "template_not_found")


def test_every_problem_is_reported_with_its_line(api: TestClient) -> None:
    html = "<p>ok</p>\n<p>{{ contact.frist_name }}</p>\n<p>{{ ''.__class__.__mro__ }}</p>\n{% if %}"
    response = api.post(
        "/api/templates", json={"name": "Bad", "subject": "{{ nope }}", "html": html}
    )
    body = assert_problem(response, 400, "unknown_variable", "subject:1")
    found = {(e["field"], e["code"]) for e in body["errors"]}
    assert ("html:4", "template_syntax") in found
    assert ("subject:1", "unknown_variable") in found
    fixed = html.replace("{% if %}", "")
    response = api.post(
        "/api/templates/validate", json={"name": "Bad", "subject": "s", "html": fixed}
    )
    assert response.status_code == 200
    found = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert found == {("html:2", "unknown_variable"), ("html:3", "template_unsafe")}
    assert api.get("/api/templates").json()["data"] == []


def test_declared_attributes_are_known_variables(api: TestClient) -> None:
    api.post("/api/attributes", json={"entity": "contact", "name": "plan", "type": "string"})
    response = api.post(
        "/api/templates/validate",
        json={"name": "t", "subject": "Your {{ contact.plan }} plan", "html": "<p>x</p>"},
    )
    assert response.json() == {"valid": True, "errors": []}


def test_preview_renders_for_a_contact(api: TestClient) -> None:
    api.post("/api/companies", json={"domain": "corp.example", "name": "Corp Inc"})
    contact = api.post(
        "/api/contacts", json={"email": "ann@corp.example", "first_name": "Ann"}
    ).json()
    template = api.post(
        "/api/templates",
        json={"name": "Cart", "subject": "Hi {{ contact.first_name }}", "html": HTML},
    ).json()
    response = api.post(
        f"/api/templates/{template['id']}/preview",
        json={"contact_id": contact["id"], "data": {"items": ["Chair", "Desk <b>"]}},
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["subject"] == "Hi Ann"
    assert "Hi Ann from Corp Inc" in preview["html"] and "Desk &lt;b&gt;" in preview["html"]
    assert 'style="color: #333333;"' in preview["html"]
    assert "Hi Ann from Corp Inc" in preview["text"]
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in preview["raw"]
    assert "postal address not configured" in preview["html"]
    missing = api.post(
        f"/api/templates/{template['id']}/preview", json={"contact_id": contact["id"]}
    )
    assert_problem(missing, 400, "template_undefined", "html")


def test_templates_need_the_send_scope(
    app: object, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    reader = make_client(app, issue_key(db, workspace.workspace_id, ["contacts:read"]))  # type: ignore[arg-type]
    assert_problem(reader.get("/api/templates"), 403, "missing_scope")
    sender = make_client(app, issue_key(db, workspace.workspace_id, ["send"]))  # type: ignore[arg-type]
    assert sender.get("/api/templates").status_code == 200
