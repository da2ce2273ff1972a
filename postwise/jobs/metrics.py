"""Prometheus series of the job workers, labelled by task name only.

Task names are a short fixed list in code, so the label cannot grow the number of
series; queue and worker id are left out for the same reason. A process that serves
``/metrics`` (the API in embedded mode, ``postwise worker --metrics-port``) exports them.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CLAIMED = Counter("postwise_jobs_claimed", "Jobs leased by a worker, by task.", ["task"])
COMPLETED = Counter("postwise_jobs_completed", "Jobs finished and marked done, by task.", ["task"])
FAILED = Counter(
    "postwise_jobs_failed",
    "Failed attempts (retried or dead-lettered), by task.",
    ["task"],
)
DEAD = Counter("postwise_jobs_dead", "Jobs dead-lettered by a worker, by task.", ["task"])
LEASE_LOST = Counter(
    "postwise_jobs_lease_lost",
    "Attempts rolled back because another worker had taken the job over, by task.",
    ["task"],
)
DURATION = Histogram(
    "postwise_job_duration_seconds",
    "Time from handler start to commit or rollback, by task.",
    ["task"],
)
