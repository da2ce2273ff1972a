"""A /v1 batch that reaches a known contact queues the segment re-evaluation in the batch's
own transaction, on both backends: on PostgreSQL through the Core path
(``ingest_events``, no ORM session unless a contact was reached), on SQLite through the
session path; anonymous events and events no segment reads queue nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from postwise.contacts.actions import upsert_contacts
from postwise.segments import changes, store
from postwise.storage.database import Database
from postwise.storage.tables import Event, Job
from postwise.workspaces.actions import NewWorkspace

from .conftest import Tracker


def queued(db: Database) -> list[Job]:
    with db.system() as s:
        jobs = select(Job).where(Job.task == changes.REEVALUATE, Job.status == "queued")
        return list(s.scalars(jobs))


def test_events_of_a_known_contact_queue_one_reevaluation(
    db: Database, client: TestClient, acme: NewWorkspace, tracker: Tracker
) -> None:
    with db.tenant(acme.workspace_id) as s:
        [ann] = upsert_contacts(
            s, [{"email": "ann@corp.example", "external_id": "u-ann"}], source="api"
        )
        store.create_segment(
            s, store.SegmentInput("Trials", {"event": "Trial Started"}), refresh=False
        )
    for job in queued(db):  # what creating the contact and the segment queued
        with db.system() as s:
            s.delete(s.get(Job, job.id))

    anonymous = {"type": "track", "anonymousId": "v-9", "event": "Trial Started"}
    unread = {"type": "track", "userId": "u-ann", "event": "Pricing Viewed"}
    assert tracker.batch(anonymous, unread).status_code == 200
    assert queued(db) == []

    trial = {"type": "track", "userId": "u-ann", "event": "Trial Started"}
    assert tracker.batch(trial, {**trial, "messageId": "m-2"}).status_code == 200
    [job] = queued(db)
    assert job.workspace_id == acme.workspace_id
    assert job.payload == {"contacts": {str(ann.contact_id): ["event:Trial Started"]}}
    with db.tenant(acme.workspace_id) as s:
        stored = s.scalars(select(Event.contact_id).where(Event.name == "Trial Started")).all()
    assert sorted(stored, key=str) == sorted([None, ann.contact_id, ann.contact_id], key=str)
