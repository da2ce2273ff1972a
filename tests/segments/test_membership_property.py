"""Real-time membership never drifts: after any sequence of writes, each followed by the
job it enqueued, the stored members of every segment are exactly what a full
evaluation finds, on both databases. The segments cover fields, event counts, lists,
a segment used by others (and negated), and an account-level condition."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from postwise.contacts import lists
from postwise.contacts.actions import update_contact, upsert_contacts
from postwise.contacts.companies import create_company
from postwise.core.clock import utcnow
from postwise.segments import catalog, changes, membership, store
from postwise.storage.database import Database
from postwise.storage.tables import Event, ListMembership
from postwise.workspaces.actions import create_workspace
from tests.segments.jobrun import run_due

EMAILS = ("ann@one.example", "bob@one.example", "cat@two.example", "dan@gmail.com")
SENIORITIES = ("entry", "manager", "director", "vp")

operation = st.one_of(
    st.tuples(st.just("seniority"), st.integers(0, 3), st.sampled_from(SENIORITIES)),
    st.tuples(
        st.just("event"),
        st.integers(0, 3),
        st.sampled_from(["Order Completed", "Pricing Viewed", "Logged In"]),
    ),
    st.tuples(st.just("old_event"), st.integers(0, 3), st.just("Order Completed")),
    st.tuples(st.just("subscribe"), st.integers(0, 3), st.booleans()),
)


def _definitions(list_id: int) -> dict[str, dict[str, object]]:
    return {
        "Seniors": {"field": "contact.seniority", "op": "in", "value": ["director", "vp"]},
        "Repeat buyers": {
            "event": "Order Completed",
            "count": {"op": "gte", "value": 2},
            "window": {"last": {"days": 30}},
        },
        "Hot accounts": {
            "account": {
                "min_contacts": 2,
                "where": {"event": "Pricing Viewed", "window": {"last": {"days": 7}}},
            }
        },
        "Subscribed": {"list": list_id},
    }


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=6))
def test_incremental_membership_equals_a_full_evaluation(
    db: Database, ops: list[tuple[str, int, object]]
) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        create_company(s, {"domain": "one.example"})
        create_company(s, {"domain": "two.example"})
        ids = [r.contact_id or 0 for r in upsert_contacts(s, [{"email": e} for e in EMAILS],
                                                        source="api")]  # fmt: skip
        news = lists.create_list(s, {"name": "News"}).id
        made = {
            name: store.create_segment(s, store.SegmentInput(name, doc)).id
            for name, doc in _definitions(news).items()
        }
        senior = made["Seniors"]
        store.create_segment(
            s, store.SegmentInput("Senior subscribers", {"all": [{"segment": senior},
                                                                  {"list": news}]})
        )  # fmt: skip
        store.create_segment(s, store.SegmentInput("Not senior", {"not": {"segment": senior}}))
    run_due(db)

    for kind, who, value in ops:
        contact_id = ids[who]
        with db.tenant(ws) as s:
            if kind == "seniority":
                update_contact(s, contact_id, {"seniority": value}, source="api")
            elif kind in ("event", "old_event"):
                at = utcnow() - timedelta(days=45 if kind == "old_event" else 0)
                s.add(Event(contact_id=contact_id, type="track", name=str(value), occurred_at=at))
                changes.note(s, [contact_id], [changes.event_key(str(value))])  # as ingest does
            elif value:
                lists.subscribe(s, news, contact_id, lists.ConsentInput("api"), confirmed=True)
            elif _on_list(s, news, contact_id):
                lists.unsubscribe(s, news, contact_id, source="api")
        run_due(db)

    now = utcnow()
    with db.tenant(ws) as s:
        for segment in catalog.load(s):
            stored = membership.current_members(s, segment.id)
            assert stored == membership.matching(s, segment, now=now), segment.name
            assert store.get_segment(s, segment.id).member_count == len(stored), segment.name


def _on_list(session: Session, list_id: int, contact_id: int) -> bool:
    found = session.scalar(
        select(ListMembership.contact_id).where(
            ListMembership.list_id == list_id, ListMembership.contact_id == contact_id
        )
    )
    return found is not None
