"""/api/contacts/{id}/events and /api/events/catalog: pages, filters, labels, catalogue."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.contacts.actions import upsert_contacts
from postwise.core.clock import utcnow
from postwise.storage.database import Database
from postwise.storage.tables import Contact, Event
from postwise.workspaces.actions import NewWorkspace
from tests.api.conftest import ClientFactory
from tests.api.support import assert_problem, issue_key

NOW = utcnow().replace(microsecond=0)


def contact(db: Database, workspace_id: int, email: str) -> int:
    with db.tenant(workspace_id) as s:
        (row,) = upsert_contacts(s, [{"email": email}], source="api")
        assert row.contact_id
        return row.contact_id


def add(db: Database, workspace_id: int, contact_id: int | None, *events: dict[str, Any]) -> None:
    with db.tenant(workspace_id) as s:
        for e in events:
            s.add(Event(contact_id=contact_id, **e))


def track(name: str, at: datetime, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "name": name, "occurred_at": at, "properties": properties}


def test_pages_walk_every_event_newest_first(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    ann = contact(db, workspace.workspace_id, "ann@initech.com")
    bob = contact(db, workspace.workspace_id, "bob@initech.com")
    # Seven events, three sharing one timestamp: the cursor must split ties by id.
    times = [NOW - timedelta(hours=h) for h in (5, 4, 3, 3, 3, 2, 1)]
    add(db, workspace.workspace_id, ann, *(track(f"E{i}", t) for i, t in enumerate(times)))
    add(db, workspace.workspace_id, bob, track("Other", NOW))

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/api/contacts/{ann}/events", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= 3
        seen += [e["name"] for e in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["E6", "E5", "E4", "E3", "E2", "E1", "E0"]

    # A page filled exactly says there is no more.
    exact = api.get(f"/api/contacts/{bob}/events", params={"limit": 1}).json()
    assert [e["name"] for e in exact["data"]] == ["Other"] and exact["next_cursor"] is None


def test_filters_by_name_type_and_time(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    ann = contact(db, workspace.workspace_id, "ann@initech.com")
    add(
        db,
        workspace.workspace_id,
        ann,
        track("Trial Started", NOW - timedelta(days=3), plan="pro"),
        track("Order Completed", NOW - timedelta(days=2), revenue=99.5),
        {"type": "page", "name": "Page Viewed", "occurred_at": NOW - timedelta(days=1),
         "properties": {"path": "/pricing"}},
    )  # fmt: skip
    url = f"/api/contacts/{ann}/events"

    def names(**params: Any) -> list[str]:
        response = api.get(url, params=params)
        assert response.status_code == 200, response.text
        return [e["name"] for e in response.json()["data"]]

    assert names(name=["Trial Started", "Order Completed"]) == ["Order Completed", "Trial Started"]
    assert names(type="page") == ["Page Viewed"]
    assert names(type="track", name="Page Viewed") == []
    since = (NOW - timedelta(days=2)).isoformat()
    assert names(since=since) == ["Page Viewed", "Order Completed"]
    assert names(until=since) == ["Trial Started"]
    naive = (NOW - timedelta(days=2)).replace(tzinfo=None).isoformat()
    assert names(since=naive, until=(NOW - timedelta(days=1)).isoformat()) == ["Order Completed"]

    event = api.get(url, params={"name": "Order Completed"}).json()["data"][0]
    assert event["properties"] == {"revenue": 99.5}
    assert event["contact_id"] == ann and event["actor"] is None and event["user_id"] is None

    bad = api.get(url, params={"since": since, "until": since})
    assert_problem(bad, 400, "invalid_time_range", "since")


def test_machine_labels_are_lifted_from_properties(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    ann = contact(db, workspace.workspace_id, "ann@initech.com")
    add(
        db,
        workspace.workspace_id,
        ann,
        {"type": "email", "name": "Email Opened", "occurred_at": NOW - timedelta(minutes=2),
         "properties": {"machine": True, "machine_reason": "apple_mpp"}},
        {"type": "email", "name": "Email Clicked", "occurred_at": NOW - timedelta(minutes=1),
         "properties": {"machine": False}},
    )  # fmt: skip
    events = api.get(f"/api/contacts/{ann}/events").json()["data"]
    assert [(e["actor"], e["actor_reason"]) for e in events] == [
        ("human", None),
        ("machine", "apple_mpp"),
    ]
    # The contact's timeline and its latest events show the same labels.
    timeline = api.get(f"/api/contacts/{ann}/timeline").json()["data"]
    labels = [(e["name"], e["actor"], e["actor_reason"]) for e in timeline if e["kind"] == "event"]
    assert labels == [("Email Clicked", "human", None), ("Email Opened", "machine", "apple_mpp")]
    latest = api.get(f"/api/contacts/{ann}").json()["latest_events"]
    assert [(e["actor"], e["actor_reason"]) for e in latest] == [
        ("human", None),
        ("machine", "apple_mpp"),
    ]


def test_bad_cursors_and_unknown_contacts_are_refused(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    ann = contact(db, workspace.workspace_id, "ann@initech.com")
    for cursor in ("garbage", "eyJhdCI6IDF9", "eyJhdCI6ICIyMDI2LTAxLTAxIiwgImlkIjogLTF9"):
        response = api.get(f"/api/contacts/{ann}/events", params={"cursor": cursor})
        assert_problem(response, 400, "invalid_cursor", "cursor")
    assert_problem(api.get("/api/contacts/999999/events"), 404, "not_found")


def test_the_catalog_counts_names_and_samples_property_keys(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    ann = contact(db, workspace.workspace_id, "ann@initech.com")
    old = NOW - timedelta(days=40)
    add(
        db,
        workspace.workspace_id,
        ann,
        track("Order Completed", old, revenue=10, coupon=None),
        track("Order Completed", NOW - timedelta(days=1), revenue=20.5, items=["a"]),
        track("Order Completed", NOW, revenue="30", meta={"x": 1}),
        track("Trial Started", NOW - timedelta(days=2), plan="pro"),
    )
    add(db, workspace.workspace_id, None,
        {"type": "page", "name": "Page Viewed", "occurred_at": NOW, "anonymous_id": "v1",
         "properties": {"path": "/"}})  # fmt: skip

    body = api.get("/api/events/catalog").json()
    by_name = {entry["name"]: entry for entry in body["data"]}
    assert list(by_name) == ["Order Completed", "Page Viewed", "Trial Started"]
    order = by_name["Order Completed"]
    assert (order["total"], order["last_30_days"], order["sampled"]) == (3, 2, 3)
    assert order["types"] == ["track"]
    assert datetime.fromisoformat(order["first_seen"]) == old
    assert datetime.fromisoformat(order["last_seen"]) == NOW
    assert order["property_keys"] == [
        {"key": "coupon", "types": ["null"]},
        {"key": "items", "types": ["array"]},
        {"key": "meta", "types": ["object"]},
        {"key": "revenue", "types": ["number", "string"]},
    ]
    assert by_name["Page Viewed"]["types"] == ["page"]

    # Keys come from the most recent events only: the sample bounds the work per name.
    sampled = api.get("/api/events/catalog", params={"sample": 1}).json()["data"][0]
    assert sampled["sampled"] == 1 and sampled["total"] == 3
    assert [k["key"] for k in sampled["property_keys"]] == ["meta", "revenue"]
    assert api.get("/api/events/catalog", params={"sample": 0}).status_code == 422


def test_reading_events_needs_contacts_read(
    app: FastAPI, db: Database, workspace: NewWorkspace, make_client: ClientFactory
) -> None:
    ann = contact(db, workspace.workspace_id, "ann@initech.com")
    lists_only = make_client(app, issue_key(db, workspace.workspace_id, ["lists:read"]))
    for url in (f"/api/contacts/{ann}/events", "/api/events/catalog"):
        assert_problem(lists_only.get(url), 403, "missing_scope")
    reader = make_client(app, issue_key(db, workspace.workspace_id, ["contacts:read"]))
    assert reader.get("/api/events/catalog").json() == {"data": []}


def test_events_of_a_merged_visitor_follow_the_contact(
    api: TestClient, db: Database, workspace: NewWorkspace
) -> None:
    """What the read API shows is the contact_id column: events reassigned to a contact
    (identity merging) appear on its page, anonymous ones do not."""
    ann = contact(db, workspace.workspace_id, "ann@initech.com")
    visit = {"type": "page", "name": "Page Viewed", "occurred_at": NOW, "anonymous_id": "v1"}
    add(db, workspace.workspace_id, None, visit)
    assert api.get(f"/api/contacts/{ann}/events").json()["data"] == []
    with db.tenant(workspace.workspace_id) as s:
        for event in s.scalars(select(Event).where(Event.anonymous_id == "v1")):
            event.contact_id = s.scalars(select(Contact.id)).one()
    (event,) = api.get(f"/api/contacts/{ann}/events").json()["data"]
    assert event["anonymous_id"] == "v1"
