"""A segment_entered trigger fires in real time: a contact change moves the contact into
the segment (segments.reevaluate), the segment.entered event is routed like a tracked
event (workflows.route), and the journey's first mail is queued. Both databases."""

from __future__ import annotations

from sqlalchemy import select

from postwise.contacts.actions import update_contact, upsert_contacts
from postwise.segments import jobs as segment_jobs  # noqa: F401 - registers segments.* tasks
from postwise.segments import store as segments
from postwise.storage.database import Database
from postwise.storage.tables import Enrollment
from postwise.workflows import jobs, store
from postwise.workspaces.actions import create_workspace
from tests.workflows.test_runtime import Clock, moved, run_due, sent  # noqa: F401


def test_entering_a_segment_enrolls_the_contact_at_once(db: Database, moved: Clock) -> None:  # noqa: F811
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
        jobs.ensure_scheduled(s)
    with db.tenant(ws) as s:
        [ann] = upsert_contacts(
            s, [{"email": "ann@corp.example", "timezone": "UTC", "country": "FR"}], source="api"
        )
        british = segments.create_segment(
            s,
            segments.SegmentInput(
                "British", {"field": "contact.country", "op": "eq", "value": "GB"}
            ),
            refresh=False,
        )
        store.install_playbook(s, "reengagement_sunset", params={"inactive_segment": british.id})
    jobs.forget_interest()
    run_due(db, moved.now)
    with db.tenant(ws) as s:
        assert s.scalars(select(Enrollment)).all() == []

    with db.tenant(ws) as s:
        assert ann.contact_id is not None
        update_contact(s, ann.contact_id, {"country": "GB"}, source="api")
    run_due(db, moved.now)

    with db.tenant(ws) as s:
        [enrollment] = s.scalars(select(Enrollment)).all()
        assert enrollment.contact_id == ann.contact_id
    assert [name for name, _ in sent(db, ws)] == ["reengage_miss_you"]
