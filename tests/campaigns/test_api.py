"""The campaign routes with real keys on both backends: the whole lifecycle over HTTP,
409 problems for illegal moves, and another workspace's key getting 404 on schedule,
pause and resume (the routes the generic isolation sweep cannot drive)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from postwise.api.app import create_app
from postwise.core.settings import Settings
from postwise.storage.database import Database

from .conftest import World, base_campaign


def test_campaign_lifecycle_over_http(db: Database, world: World, settings: Settings) -> None:
    with TestClient(create_app(settings, db)) as client:
        ours = {"Authorization": f"Bearer {world.api_key}"}
        theirs = {"Authorization": f"Bearer {world.other_api_key}"}
        body = base_campaign(world)
        r = client.post("/api/campaigns", json=body, headers=ours)
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert client.post("/api/campaigns", json=body, headers=ours).status_code == 409
        est = client.get(f"/api/campaigns/{cid}/estimate", headers=ours).json()
        assert est["total"] == 8 and len(est["by_source"]) == 2
        for action in ("schedule", "pause", "resume"):
            r = client.post(f"/api/campaigns/{cid}/{action}", headers=theirs)
            assert r.status_code == 404, (action, r.text)
        r = client.post(f"/api/campaigns/{cid}/pause", headers=ours)
        assert r.status_code == 409
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "it is draft" in r.json()["detail"]
        r = client.post(f"/api/campaigns/{cid}/schedule", headers=ours)
        assert r.status_code == 200 and r.json()["status"] == "scheduled", r.text
        r = client.patch(f"/api/campaigns/{cid}", json={"name": "Renamed"}, headers=ours)
        assert r.status_code == 200 and r.json()["name"] == "Renamed"
        assert client.post(f"/api/campaigns/{cid}/pause", headers=ours).json()["status"] == "paused"
        assert client.post(f"/api/campaigns/{cid}/pause", headers=ours).status_code == 409
        assert client.post(f"/api/campaigns/{cid}/resume", headers=ours).json()["status"] == (
            "scheduled"
        )
        r = client.post(
            f"/api/campaigns/{cid}/test-send", json={"emails": ["me@corp.example"]}, headers=ours
        )
        assert r.status_code == 200 and len(r.json()["outbox_ids"]) == 1
        assert client.post(f"/api/campaigns/{cid}/cancel", headers=ours).json()["status"] == (
            "cancelled"
        )
        r = client.patch(f"/api/campaigns/{cid}", json={"name": "x"}, headers=ours)
        assert r.status_code == 409 and r.json()["code"] == "campaign_not_editable"
        results = client.get(f"/api/campaigns/{cid}/results", headers=ours).json()
        assert results["ab"] is False and results["attribution"]["conversions"] == 0
        listed = client.get("/api/campaigns", headers=ours).json()["data"]
        assert [c["key"] for c in listed] == ["launch"]
        assert client.get("/api/campaigns", headers=theirs).json()["data"] == []


def test_unverified_sender_is_a_clear_400(db: Database, world: World, settings: Settings) -> None:
    with TestClient(create_app(settings, db)) as client:
        ours = {"Authorization": f"Bearer {world.api_key}"}
        body = base_campaign(world, sending_domain="nope.example")
        cid = client.post("/api/campaigns", json=body, headers=ours).json()["id"]
        r = client.post(f"/api/campaigns/{cid}/schedule", headers=ours)
        assert r.status_code == 400 and r.json()["code"] == "sender_unverified"
        assert "nope.example" in r.json()["detail"]
