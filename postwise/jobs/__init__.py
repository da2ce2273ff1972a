"""Background jobs: a queue in the ``jobs`` table, leased to workers, done exactly once.

Enqueue with ``enqueue(session, "task.name", payload)`` inside the transaction that
decides the work is needed; register handlers with ``@task("task.name")``; run them
with ``postwise worker`` or ``runner.Worker``. ``runner`` explains the exactly-once
rule and what it asks of handlers with effects outside the database.
"""

from postwise.jobs.queue import ClaimedJob, Status, enqueue, enqueue_many
from postwise.jobs.registry import JobContext, PermanentFailure, task

__all__ = [
    "ClaimedJob",
    "JobContext",
    "PermanentFailure",
    "Status",
    "enqueue",
    "enqueue_many",
    "task",
]
