"""``/api/topics``: create, list, read, rename, delete, each refusal as problem+json, and
a list send naming a topic accepted only while the topic exists."""

from __future__ import annotations

from fastapi.testclient import TestClient

from postwise.api.problems import PROBLEM_JSON
from postwise.contacts import lists
from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace

INLINE = {"subject": "News", "text": "Hello"}


def test_topics_round_trip(api: TestClient) -> None:
    assert api.get("/api/topics").json() == {"data": [], "next_cursor": None}
    created = api.post("/api/topics", json={"key": "product", "name": "Product news"})
    assert created.status_code == 201, created.text
    assert created.json() == {"key": "product", "name": "Product news"}
    api.post("/api/topics", json={"key": "events", "name": "Events"})
    assert [t["key"] for t in api.get("/api/topics").json()["data"]] == ["events", "product"]

    renamed = api.patch("/api/topics/product", json={"name": "  Product updates "})
    assert renamed.json() == {"key": "product", "name": "Product updates"}
    assert api.get("/api/topics/product").json()["name"] == "Product updates"

    assert api.delete("/api/topics/events").status_code == 204
    assert [t["key"] for t in api.get("/api/topics").json()["data"]] == ["product"]


def test_refusals_are_problems_and_change_nothing(api: TestClient) -> None:
    api.post("/api/topics", json={"key": "product", "name": "Product news"})
    cases = [
        (api.post("/api/topics", json={"key": "product", "name": "Again"}), 409, "topic_exists"),
        (api.post("/api/topics", json={"key": "Bad Key", "name": "x"}), 400, "invalid_topic"),
        (api.post("/api/topics", json={"key": "ok", "name": "   "}), 400, "invalid_topic_name"),
        (api.post("/api/topics", json={"key": "ok"}), 422, "invalid_request"),
        (api.get("/api/topics/nope"), 404, "not_found"),
        (api.patch("/api/topics/nope", json={"name": "x"}), 404, "not_found"),
        (api.patch("/api/topics/product", json={"name": " "}), 400, "invalid_topic_name"),
        (api.delete("/api/topics/nope"), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert response.json()["code"] == code, response.text
    assert api.get("/api/topics").json()["data"] == [{"key": "product", "name": "Product news"}]


def test_list_send_names_a_topic_only_while_it_exists(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    with db.tenant(workspace.workspace_id) as s:
        list_id = lists.create_list(s, {"name": "News"}).id
    api.post("/api/topics", json={"key": "product", "name": "Product news"})
    sent = api.post(f"/api/lists/{list_id}/send", json={"template": INLINE, "topic": "product"})
    assert sent.status_code == 202, sent.text

    assert api.delete("/api/topics/product").status_code == 204
    refused = api.post(f"/api/lists/{list_id}/send", json={"template": INLINE, "topic": "product"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "unknown_topic"
