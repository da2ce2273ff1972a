"""The event reads and the purge are served by the intended index on PostgreSQL: each
statement is captured as sent and EXPLAINed with sequential scans disabled, and the plan
must name that index with the query's own columns in its Index Cond (not merely some index
walked from end to end)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from postwise.contacts.actions import upsert_contacts
from postwise.core.clock import utcnow
from postwise.storage.database import Database
from postwise.storage.tables import Event
from postwise.tracking import queries, retention
from postwise.workspaces.actions import create_workspace

Statement = tuple[str, Any]


@contextmanager
def captured(db: Database) -> Iterator[list[Statement]]:
    sent: list[Statement] = []

    def listen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "FROM events" in statement and statement.lstrip().upper().startswith(
            ("SELECT", "DELETE")
        ):
            sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


def plans(db: Database, statements: list[Statement]) -> list[str]:
    out = []
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        for statement, params in statements:
            rows = conn.exec_driver_sql(f"EXPLAIN {statement}", params).scalars()
            out.append("\n".join(rows))
        conn.rollback()
    return out


def run(db: Database, workspace_id: int | None, call: Callable[[Session], Any]) -> list[str]:
    scope = db.system() if workspace_id is None else db.tenant(workspace_id)
    with captured(db) as sent, scope as s:
        call(s)
    assert sent, "nothing was captured"
    return plans(db, sent)


def test_event_reads_and_the_purge_use_indexes(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        with db.system() as s:
            ws = create_workspace(s, "Acme").workspace_id
        with db.tenant(ws) as s:
            (row,) = upsert_contacts(s, [{"email": "ann@initech.com"}], source="api")
            now = utcnow()
            for i in range(50):
                s.add(Event(contact_id=row.contact_id, type="track", name=f"E{i % 5}",
                            occurred_at=now - timedelta(hours=i), properties={"i": i}))  # fmt: skip
        contact_id = row.contact_id
        assert contact_id
        # Fresh statistics and visibility map, so the planner's choice between index-only
        # and bitmap scans on this tiny table does not depend on autovacuum's timing.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE events"))

        (page,) = run(db, ws, lambda s: queries.contact_events(s, contact_id, limit=5))
        assert "Index Scan Backward using ix_events_ws_contact_at" in page, page
        assert "contact_id = " in page.split("Index Cond:")[1], page

        counts, *samples = run(db, ws, lambda s: queries.event_catalog(s, sample=10))
        # Either (workspace_id, name, occurred_at) or the segments' index that extends it
        # with contact_id (migration 0010): an index-only scan in name order either way.
        assert re.search(r"Index Only Scan using ix_events_ws_name_(contact_)?at\b", counts), counts
        assert len(samples) == 5
        for plan in samples:
            assert "Index Scan Backward using ix_events_ws_name_at" in plan, plan
            assert "name)::text = " in plan.split("Index Cond:")[1], plan

        # The purge runs unscoped (all workspaces) and reads by primary-key ranges.
        cutoff = now - timedelta(days=1)
        purge = run(db, None, lambda s: retention.purge_events(s, cutoff, batch_size=10))
        for plan in purge:
            assert "using pk_events on events" in plan, plan
            assert re.search(r"Index Cond: \(+id ", plan), plan
    finally:
        db.dispose()
