"""Every storage-touching test runs on SQLite, and again on PostgreSQL when
POSTWISE_TEST_POSTGRES_URL names a database (``.ci/run`` sets it).

The PostgreSQL database is migrated once per run and truncated between tests; SQLite
gets a migrated file copied per test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from postwise.storage import migrate
from postwise.storage.database import Database
from postwise.storage.tables import Base

POSTGRES_URL = os.environ.get("POSTWISE_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_migrated() -> str:
    db = Database(POSTGRES_URL)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(db)
    db.dispose()
    return POSTGRES_URL


def truncate_all(db: Database) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_migrated")
        db = Database(url)
        truncate_all(db)
        db.dispose()
        return url
    template: Path = request.getfixturevalue("sqlite_template")
    target = tmp_path / "postwise.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """For tests that only make sense on PostgreSQL (row locks across processes)."""
    if not POSTGRES_URL:
        pytest.skip("POSTWISE_TEST_POSTGRES_URL is not set; .ci/run sets it")
    url: str = request.getfixturevalue("postgres_migrated")
    db = Database(url)
    truncate_all(db)
    db.dispose()
    return url
