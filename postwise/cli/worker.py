"""``postwise worker`` runs background jobs; ``postwise jobs`` shows and repairs the queue.

A worker knows only the tasks of modules it imported: the ones in ``TASK_MODULES``
plus any named with ``--import`` (plugins, tests).
"""

from __future__ import annotations

import importlib

import typer
from sqlalchemy.exc import SQLAlchemyError

from postwise.cli.context import console, fail, open_database, print_json
from postwise.core.clock import utcnow

# Modules whose import registers the tasks every worker must know.
TASK_MODULES: tuple[str, ...] = (
    "postwise.jobs.builtin",
    "postwise.delivery.service",
    "postwise.contacts.import_runs",
    "postwise.tracking.retention",
    "postwise.segments.jobs",
    "postwise.bounces.jobs",
    "postwise.workflows.jobs",
    "postwise.campaigns.jobs",
    "postwise.campaigns.attribution",
    "postwise.analytics.jobs",
)

jobs_app = typer.Typer(help="The background job queue.", no_args_is_help=True)


def _split(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _import_task_modules(extra: list[str]) -> None:
    for name in (*TASK_MODULES, *_split(extra)):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            fail(f"cannot import {name!r} to register its tasks: {exc}")


def worker(
    queue: list[str] = typer.Option(
        ["default"], "--queue", "-q", help="Queue to take jobs from; repeat or comma-separate."
    ),
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, help="Jobs run at once."),
    worker_id: str | None = typer.Option(
        None, "--id", help="Name in jobs.locked_by and logs (default: host-pid-random)."
    ),
    imports: list[str] = typer.Option(
        [], "--import", help="Import these modules to register their tasks (repeatable)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Jobs claimed per query (POSTWISE_WORKER_BATCH_SIZE)."
    ),
    lease_seconds: float | None = typer.Option(
        None, "--lease-seconds", min=0.5, help="Lease per claim (POSTWISE_JOB_LEASE_SECONDS)."
    ),
    until_idle: bool = typer.Option(False, "--until-idle", help="Exit when no job is due."),
    metrics_port: int = typer.Option(0, "--metrics-port", help="Serve /metrics here; 0: off."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host"),
) -> None:
    """Run background jobs until SIGTERM or Ctrl-C (the job in hand is finished first)."""
    from postwise.analytics import jobs as analytics_jobs
    from postwise.bounces import jobs as bounce_jobs
    from postwise.jobs import builtin
    from postwise.jobs.runner import Worker
    from postwise.segments import jobs as segment_jobs
    from postwise.tracking import retention
    from postwise.workflows import jobs as workflow_jobs

    _import_task_modules(imports)
    queues = _split(queue) or ["default"]
    db = open_database()
    try:
        if builtin.CLEANUP_QUEUE in queues:
            with db.system() as session:
                builtin.ensure_cleanup_scheduled(session)
                retention.ensure_purge_scheduled(session)
                segment_jobs.ensure_sweep_scheduled(session)
                bounce_jobs.ensure_poll_scheduled(session)
                workflow_jobs.ensure_scheduled(session)
                workflow_jobs.ensure_dates_scheduled(session)
                analytics_jobs.ensure_sweep_scheduled(session)
    except SQLAlchemyError as exc:
        fail(f"cannot use the job table ({type(exc).__name__}); run `postwise db upgrade` first")
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)
    runner = Worker(
        db,
        queues=queues,
        worker_id=worker_id,
        concurrency=concurrency,
        batch_size=batch_size,
        lease_seconds=lease_seconds,
    )
    try:
        if until_idle:
            runner.run_until_idle(handle_signals=True)
        else:
            runner.run_forever()
    finally:
        db.dispose()


@jobs_app.command("stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Print JSON rows.")) -> None:
    """Jobs per queue and status; for queued jobs, how late the oldest one is."""
    from postwise.jobs import queue as job_queue

    db = open_database()
    now = utcnow()
    with db.system() as session:
        rows = job_queue.stats(session)
    out = [
        {
            "queue": row.queue,
            "status": row.status,
            "count": row.count,
            "lag_seconds": (
                max(0.0, round((now - row.oldest_run_at).total_seconds(), 1))
                if row.status == job_queue.Status.QUEUED and row.oldest_run_at
                else None
            ),
        }
        for row in rows
    ]
    if as_json:
        print_json(out)
        return
    if not out:
        console.print("no jobs")
        return
    for row in out:
        lag = f"\tlag {row['lag_seconds']}s" if row["lag_seconds"] is not None else ""
        console.print(f"{row['queue']}\t{row['status']}\t{row['count']}{lag}")


@jobs_app.command("retry-dead")
def retry_dead(
    queue: str | None = typer.Option(None, "--queue", "-q", help="Only this queue."),
    task: str | None = typer.Option(None, "--task", "-t", help="Only this task."),
    job_ids: list[int] = typer.Option([], "--id", help="Only these job ids (repeatable)."),
) -> None:
    """Put dead jobs back in the queue with fresh attempts, e.g. after deploying a fix."""
    from postwise.jobs import queue as job_queue

    db = open_database()
    with db.system() as session:
        count = job_queue.retry_dead(session, queue=queue, task=task, job_ids=job_ids or None)
    console.print(f"{count} dead job(s) queued again")


def register(app: typer.Typer) -> None:
    """Add ``worker`` and the ``jobs`` group to the main command (one line in main.py)."""
    app.command("worker")(worker)
    app.add_typer(jobs_app, name="jobs")
