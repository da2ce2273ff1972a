"""PostgreSQL: a batch no active segment can see is ONE statement in autocommit, on a
connection checked out without a ping (``ingest.alone``); a dead connection is retried
once on a fresh one, so a terminated backend loses no batch and doubles none."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from postwise.storage.database import Database
from postwise.workspaces.actions import NewWorkspace

from .conftest import Tracker, events


def _statements(engine: Any) -> list[str]:
    """What the engine's SQLAlchemy connections execute (not its raw DBAPI cursors)."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    return seen


def _checkouts(engine: Any) -> list[bool]:
    """Each connection the engine's pool hands out: whether it is in autocommit."""
    seen: list[bool] = []

    @event.listens_for(engine, "checkout")
    def _note(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        seen.append(dbapi_connection.autocommit)

    return seen


def _track(n: int, event_name: str = "Page Read") -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "anonymousId": f"v-{i}",
            "event": event_name,
            "messageId": f"{event_name}-{i}",
        }
        for i in range(n)
    ]


@pytest.fixture
def postgres(db: Database) -> Database:
    if db.dialect != "postgresql":
        pytest.skip("the autocommit path is PostgreSQL's")
    return db


def test_a_batch_no_segment_sees_is_one_statement_without_a_transaction(
    postgres: Database, client: TestClient, acme: NewWorkspace, tracker: Tracker
) -> None:
    assert tracker.batch(*_track(3, "First")).status_code == 200  # learns: no segments
    on_pool = _statements(postgres.engine)
    checkouts = _checkouts(postgres.autocommit)
    assert tracker.batch(*_track(5)).status_code == 200
    assert on_pool == []
    assert checkouts == [True]  # one connection, in autocommit: no BEGIN, no COMMIT
    assert [e.name for e in events(postgres, acme.workspace_id)] == ["First"] * 3 + [
        "Page Read"
    ] * 5


def test_terminated_backends_cost_one_retry_on_a_fresh_connection(
    postgres: Database, client: TestClient, acme: NewWorkspace, tracker: Tracker
) -> None:
    assert tracker.batch(*_track(2, "First")).status_code == 200
    assert tracker.batch(*_track(2, "Second")).status_code == 200  # the autocommit pool's
    idle = [postgres.autocommit.raw_connection() for _ in range(3)]
    for connection in idle:
        connection.close()  # three idle connections, as after a burst, all to be killed
    with postgres.engine.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert killed >= 1
    checkouts = _checkouts(postgres.autocommit)
    assert tracker.batch(*_track(4, "Third")).status_code == 200
    assert checkouts == [True, True]  # a dead connection's try, then a new one's, not
    # another dead one of the pool
    names = [e.name for e in events(postgres, acme.workspace_id)]
    assert names == ["First"] * 2 + ["Second"] * 2 + ["Third"] * 4
