from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Table, func, select

from postwise.storage.database import Database
from tests.jobs.tasks import effects, metadata


@pytest.fixture
def effects_table(db: Database) -> Iterator[Table]:
    """The effects table for this test only; dropped so the schema matches migrations again."""
    metadata.create_all(db.engine)
    yield effects
    metadata.drop_all(db.engine)


def effect_counts(db: Database) -> dict[int, int]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(effects.c.job_id, func.count()).group_by(effects.c.job_id))
        return {int(job_id): int(n) for job_id, n in rows}
