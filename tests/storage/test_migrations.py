from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from postwise.storage import migrate
from postwise.storage.database import Database
from postwise.storage.tables import Base


def test_database_is_at_head(db: Database) -> None:
    assert migrate.current_revision(db) == migrate.head_revision(db)


def test_models_match_migrations(db: Database) -> None:
    """A model change without its migration fails here, not in production."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(db: Database) -> None:
    migrate.upgrade(db)
    assert migrate.current_revision(db) == migrate.head_revision(db)
