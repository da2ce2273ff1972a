"""Engines and sessions: one ``Database`` per process, tenant sessions per request or job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from postwise.storage import tenancy


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for its backend: WAL and foreign keys on SQLite, pre-ping on PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # The driver's own transaction handling defers BEGIN; we issue it ourselves
            # so that SQLite takes the write lock at the start and avoids deadlocks.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


class Database:
    """Owns the engine; hands out sessions scoped to one workspace or, for system work, none."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def tenant(self, workspace_id: int) -> Iterator[Session]:
        """A session that can only see and write rows of ``workspace_id``; commits on success."""
        with self._transaction(workspace_id) as session:
            yield session

    @contextmanager
    def system(self) -> Iterator[Session]:
        """An unscoped session for work that spans workspaces (jobs, workspace admin)."""
        with self._transaction(None) as session:
            yield session

    @contextmanager
    def _transaction(self, workspace_id: int | None) -> Iterator[Session]:
        session = self._sessions()
        if workspace_id is not None:
            tenancy.bind(session, workspace_id)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
