"""Real time, end to end: an event through ``/v1/track`` and a contact update through the
API each move the contact in or out of a segment once the worker runs the one job the
write enqueued, with ``segment.entered`` / ``segment.exited`` events and history."""

from __future__ import annotations

import base64

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.segments import changes
from postwise.storage.database import Database
from postwise.storage.tables import Event, Job
from postwise.workspaces.actions import NewWorkspace
from tests.api.conftest import ClientFactory
from tests.segments.jobrun import run_due

BUYING_SENIORS = {
    "all": [
        {"event": "Order Completed", "window": {"last": {"days": 30}}},
        {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]},
    ]
}


def _tracker(app: FastAPI, workspace: NewWorkspace, make_client: ClientFactory) -> TestClient:
    client = make_client(app, None)
    token = base64.b64encode(f"{workspace.write_key}:".encode()).decode()
    client.headers["Authorization"] = f"Basic {token}"
    return client


def _segment_events(db: Database, ws: int) -> list[tuple[str, int | None]]:
    with db.tenant(ws) as s:
        rows = s.scalars(select(Event).where(Event.type == "segment").order_by(Event.id))
        return [(e.name, e.contact_id) for e in rows]


def _queued(db: Database) -> list[Job]:
    with db.system() as s:
        return list(
            s.scalars(select(Job).where(Job.task == changes.REEVALUATE, Job.status == "queued"))
        )


def test_an_event_enters_and_an_update_exits_in_real_time(
    app: FastAPI, api: TestClient, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    ws = workspace.workspace_id
    ann = api.put("/api/contacts", json={"email": "ann@acme.example", "seniority": "vp"}).json()
    segment = api.post(
        "/api/segments", json={"name": "Buying seniors", "definition": BUYING_SENIORS}
    )
    assert segment.status_code == 201, segment.text
    segment_id = segment.json()["id"]
    run_due(db)  # the first refresh: nobody has ordered yet
    assert api.get(f"/api/segments/{segment_id}").json()["member_count"] == 0

    tracker = _tracker(app, workspace, make_client)
    sent = tracker.post(
        "/v1/track",
        json={
            "userId": "ann@acme.example",
            "event": "Order Completed",
            "properties": {"total": 80},
        },
    )
    assert sent.status_code == 200, sent.text
    [job] = _queued(db)
    assert job.payload == {"contacts": {str(ann["id"]): ["event:Order Completed"]}}
    assert run_due(db) == 1
    members = api.get(f"/api/segments/{segment_id}/members").json()["data"]
    assert [m["email"] for m in members] == ["ann@acme.example"]
    assert _segment_events(db, ws) == [("segment.entered", ann["id"])]

    # An event no segment looks at costs no job.
    tracker.post("/v1/track", json={"userId": "ann@acme.example", "event": "Logged In"})
    assert _queued(db) == []

    api.patch(f"/api/contacts/{ann['id']}", json={"seniority": "entry"})
    run_due(db)
    assert api.get(f"/api/segments/{segment_id}/members").json()["data"] == []
    assert _segment_events(db, ws) == [
        ("segment.entered", ann["id"]),
        ("segment.exited", ann["id"]),
    ]
    history = api.get(f"/api/contacts/{ann['id']}/segments").json()["data"]
    assert len(history) == 1
    assert history[0]["segment"] == "Buying seniors"
    assert history[0]["entered_at"] < history[0]["exited_at"]
    events = api.get(f"/api/contacts/{ann['id']}/events", params={"type": "segment"}).json()
    assert {e["name"] for e in events["data"]} == {"segment.entered", "segment.exited"}


def test_a_batch_that_creates_a_contact_and_tracks_for_it_is_one_job(
    app: FastAPI, api: TestClient, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    segment_id = api.post(
        "/api/segments", json={"name": "Buying seniors", "definition": BUYING_SENIORS}
    ).json()["id"]
    run_due(db)
    batch = {
        "batch": [
            {"type": "identify", "userId": "u-1",
             "traits": {"email": "bob@acme.example", "seniority": "director"}},
            {"type": "track", "userId": "u-1", "event": "Order Completed"},
            {"type": "track", "userId": "u-1", "event": "Order Completed"},
        ]
    }  # fmt: skip
    sent = _tracker(app, workspace, make_client).post("/v1/batch", json=batch)
    assert sent.status_code == 200, sent.text
    [job] = _queued(db)
    [(contact, keys)] = job.payload["contacts"].items()
    assert keys == ["*", "event:Identify", "event:Order Completed"]
    run_due(db)
    members = api.get(f"/api/segments/{segment_id}/members").json()["data"]
    assert [(m["contact_id"], m["email"]) for m in members] == [(int(contact), "bob@acme.example")]
