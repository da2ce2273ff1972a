"""A task with a visible database effect, for tests and for worker processes (``--import``).

``tests.record_effect`` inserts one row per run into ``test_job_effects``, a table that
exists only while a test needs it (created and dropped by the test, never migrated), so
counting rows per job id shows whether a job's effects committed exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

from postwise.jobs.registry import JobContext, task

RECORD = "tests.record_effect"

metadata = MetaData()
effects = Table(
    "test_job_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Deliberately not unique: a duplicate must be countable, not an IntegrityError.
    Column("job_id", BigInteger, nullable=False),
    Column("worker_id", String(128), nullable=False),
    Column("attempt", Integer, nullable=False),
)


@task(RECORD)
def record_effect(ctx: JobContext) -> None:
    ctx.session.execute(
        effects.insert().values(job_id=ctx.job_id, worker_id=ctx.worker_id, attempt=ctx.attempt)
    )
    if "started_flag" in ctx.payload:  # tells a test the handler is running
        Path(ctx.payload["started_flag"]).touch()
    # Hold the transaction open (uncommitted effect) to let a test kill the worker in it.
    pause = float(ctx.payload.get("sleep", 0))
    if ctx.payload.get("sleep_only_first_attempt") and ctx.attempt > 1:
        pause = 0
    if pause:
        time.sleep(pause)
