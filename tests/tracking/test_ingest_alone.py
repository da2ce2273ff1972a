"""PostgreSQL: a batch no active segment can see is ONE statement in autocommit on a
driver connection used on the event loop (``ingest.alone``, ``api/lone_writer.py``'s
``LoneWriter``); a dead connection is retried once on a fresh one, so a terminated backend
loses no batch and doubles none; the app's lifespan closes the connections."""

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


def _writer(client: TestClient) -> Any:
    return client.app.state.tracking_lone_writer  # type: ignore[attr-defined]


def _backends(db: Database) -> int:
    """Connections of this test to its database, besides the one asking."""
    with db.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


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
    assert tracker.batch(*_track(5)).status_code == 200
    assert on_pool == []  # nothing through SQLAlchemy: no BEGIN, no COMMIT
    writer = _writer(client)
    attempts, opened = writer.attempts, writer.opened
    assert tracker.batch(*_track(2, "Again")).status_code == 200
    assert (writer.attempts - attempts, writer.opened - opened) == (1, 0)  # one statement,
    # on the idle connection
    assert [e.name for e in events(postgres, acme.workspace_id)] == ["First"] * 3 + [
        "Page Read"
    ] * 5 + ["Again"] * 2


def test_terminated_backends_cost_one_retry_on_a_fresh_connection(
    postgres: Database, client: TestClient, acme: NewWorkspace, tracker: Tracker
) -> None:
    assert tracker.batch(*_track(2, "First")).status_code == 200
    assert tracker.batch(*_track(2, "Second")).status_code == 200  # the writer's
    writer = _writer(client)
    with postgres.engine.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert killed >= 1
    attempts, opened = writer.attempts, writer.opened
    assert tracker.batch(*_track(4, "Third")).status_code == 200
    assert (writer.attempts - attempts, writer.opened - opened) == (2, 1)  # the dead
    # connection's try, then a new one's
    names = [e.name for e in events(postgres, acme.workspace_id)]
    assert names == ["First"] * 2 + ["Second"] * 2 + ["Third"] * 4


def test_the_lifespan_closes_the_writers_connections(
    postgres: Database, make_app: Any, acme: NewWorkspace
) -> None:
    postgres.engine.dispose()
    with TestClient(make_app()) as client:
        tracker = Tracker(client, acme.write_key)
        assert tracker.batch(*_track(2, "First")).status_code == 200
        assert tracker.batch(*_track(2, "Second")).status_code == 200
        postgres.engine.dispose()
        assert _backends(postgres) == 1  # the writer's
    postgres.engine.dispose()
    assert _backends(postgres) == 0
