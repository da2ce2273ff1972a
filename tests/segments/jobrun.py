"""Running the queue's due jobs in a test, as one worker would: claim, run, settle."""

from __future__ import annotations

from datetime import datetime
from importlib import import_module

from postwise.jobs import queue
from postwise.jobs.runner import Outcome, run_job
from postwise.storage.database import Database

import_module("postwise.segments.jobs")  # registers the segment tasks, as a worker does


def run_due(db: Database, *, now: datetime | None = None, tasks: set[str] | None = None) -> int:
    """Run every due job (and those they enqueue) until none is left; how many ran.

    A failed job fails the test: real-time membership must not need a retry to work.
    """
    ran = 0
    while True:
        jobs = queue.claim(db, "test-worker", ["default"], 50, 60, now=now)
        if not jobs:
            return ran
        for job in jobs:
            if tasks is not None and job.task not in tasks:
                with db.system() as s:
                    queue.release(s, [job])
                continue
            outcome = run_job(db, job)
            assert outcome is Outcome.DONE, f"job {job.task} {job.payload}: {outcome}"
            ran += 1
        if tasks is not None and all(job.task not in tasks for job in jobs):
            return ran
