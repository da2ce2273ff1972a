"""A deferral (4xx) writes one ``Email Deferred`` per message through the real delivery
loop, and the rollup counts it in ``deferred``: a message deferred twice counts once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from postwise.analytics import report, rollup
from postwise.contacts import actions
from postwise.core import clock
from postwise.delivery import outbox
from postwise.delivery.deliverer import Deliverer
from postwise.delivery.transports.memory import MemoryTransport
from postwise.privacy.hashing import AddressHasher
from postwise.storage.database import Database
from postwise.storage.tables import Event, OutboxMessage
from postwise.workspaces.actions import create_workspace

EMAILS = ("ann@corp.example", "bob@corp.example")


def _deliver(db: Database, transport: MemoryTransport) -> None:
    hasher = AddressHasher.from_secret(b"analytics deferred test")
    asyncio.run(Deliverer(db, transport, hasher=hasher, worker_id="w1").run())


def test_a_message_deferred_twice_counts_once_in_deferred(db: Database) -> None:
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    with db.tenant(ws) as s:
        for email in EMAILS:
            actions.upsert_contact(s, {"email": email}, source="api")
        outbox.enqueue(
            s,
            [
                outbox.NewMessage(
                    email=e,
                    kind="transactional",
                    raw=f"From: a@send.example\r\nTo: {e}\r\nSubject: t\r\n\r\nhi\r\n".encode(),
                    mail_from="bounces@send.example",
                    message_id=f"<m{i}@send.example>",
                )
                for i, e in enumerate(EMAILS)
            ],
        )
    transport = MemoryTransport({"ann@corp.example": (451, "4.7.1 Try again later")})
    _deliver(db, transport)
    with db.tenant(ws) as s:  # due again: deferred a second time
        for row in s.scalars(select(OutboxMessage).where(OutboxMessage.status == "deferred")):
            row.next_attempt_at = clock.utcnow()
    _deliver(db, transport)
    assert transport.attempts["ann@corp.example"] == 2
    with db.tenant(ws) as s:
        deferrals = s.scalars(select(Event).where(Event.name == "Email Deferred")).all()
        assert [e.properties["email"] for e in deferrals] == ["ann@corp.example"]
        assert deferrals[0].properties["reply"] == "451 4.7.1 Try again later"
        rollup.roll_up(s, now=clock.utcnow() + timedelta(minutes=1))
    with db.tenant(ws) as s:
        [domain] = report.breakdown(s, "", "domain")
    assert domain.id == "corp.example"
    assert (domain.counters["sent"], domain.counters["deferred"]) == (1, 1)
