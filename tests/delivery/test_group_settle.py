"""A group settled in one statement keeps every row's fence: a row another worker took
over, or that an unsubscribe suppressed, is neither marked sent nor given an event, and
the one-read fence check of a chunk answers exactly like ``still_ours`` per row."""

from __future__ import annotations

from sqlalchemy import select, update

from postwise.delivery import outbox
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage

from .conftest import World, queue_raw


def test_group_settle_skips_rows_whose_fence_broke(db: Database, world: World) -> None:
    ids = queue_raw(db, world.ws, [f"g{i}@corp.example" for i in range(5)])
    rows = sorted(outbox.claim(db, "w1", 10, 60), key=lambda r: r.id)
    assert [r.id for r in rows] == ids
    taken, suppressed = rows[1], rows[3]
    with db.system() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id == taken.id).values(locked_by="w2"))
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == suppressed.id)
            .values(status="suppressed", reason="unsubscribed")
        )

    with db.engine.connect() as conn:
        ours = outbox.fenced(conn, rows)
        assert ours == {r.id for r in rows if outbox.still_ours(conn, r)}
    assert ours == set(ids) - {taken.id, suppressed.id}

    accepted = [
        outbox.Accepted(r, f"<m{r.id}@send.example>", "relay", "250 2.0.0 queued", ("https://x",))
        for r in rows
    ]
    with db.tenant(world.ws) as s:
        settled = outbox.mark_sent_many(s, accepted, final_hop=True)
    assert settled == ours

    with db.tenant(world.ws) as s:
        got = {r.id: r for r in s.scalars(select(OutboxMessage))}
        events = sorted((e.properties["outbox_id"], e.name) for e in s.scalars(select(Event)))
    for row in rows:
        stored = got[row.id]
        if row.id in ours:
            assert (stored.status, stored.locked_by, stored.lease_expires_at) == (
                "sent",
                None,
                None,
            )
            assert stored.message_id == f"<m{row.id}@send.example>"
            assert stored.last_reply == "250 2.0.0 queued"
            assert stored.links == ["https://x"]
            assert stored.sent_at is not None
        else:
            assert stored.status != "sent"
    assert events == sorted((i, name) for i in ours for name in ("Email Delivered", "Email Sent"))

    # A redo of the same group changes nothing and writes no second event.
    with db.tenant(world.ws) as s:
        assert outbox.mark_sent_many(s, accepted, final_hop=True) == set()
    with db.tenant(world.ws) as s:
        assert len(s.scalars(select(Event)).all()) == len(events)
