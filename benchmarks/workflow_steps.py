"""Workflow runtime on PostgreSQL: steps per second by one and two ``postwise worker``
processes over 100,000 active enrollments, beside bare job claims per second on the same
database, and trigger latency from an event's arrival (ingest) to its first step.

A "wake" is one due enrollment claimed and advanced: its wait ends, it sends (an outbox
row keyed by the step) and parks on its next wait, so each wake executes two steps (two
history rows). Enrollments are bulk-inserted already parked on a due wait, so setup
time is not measured. The load average is printed beside each figure (2 shared cores),
and the CPU the worker processes and this database's server backends spent per step,
which a loaded machine changes far less than wall-clock rates; ``steps_per_cpu_s``
(steps per CPU-second of workers and server together) times the free cores bounds the
rate a quiet machine can reach.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from benchmarks.measure import fresh_database
from postwise.core import clock
from postwise.jobs import queue
from postwise.jobs.registry import JobContext, task
from postwise.storage.database import Database
from postwise.storage.tables import Contact, Enrollment
from postwise.workflows import engine, store
from postwise.workspaces.actions import create_workspace

REPO = Path(__file__).resolve().parents[1]
NOOP = "bench.noop"
FLOW = {
    "version": 1,
    "name": "Bench",
    "triggers": [{"type": "event", "event": "Bench Signup"}],
    "steps": [
        {"id": "pause", "type": "wait", "duration": {"minutes": 1}},
        {"id": "hello", "type": "send_email", "template": "hello", "marketing": False},
        {"id": "later", "type": "wait", "duration": {"days": 30}},
        {"id": "bye", "type": "send_email", "template": "hello", "marketing": False},
    ],
}


@task(NOOP)
def noop(ctx: JobContext) -> None:
    """The baseline: a claimed job that does nothing but settle."""


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process of this machine (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(db: Database, procs: list[subprocess.Popen[bytes]]) -> dict[str, dict[int, float]]:
    """CPU so far of the worker processes and of this database's server backends (the
    server runs on this machine; other databases' backends are not counted)."""
    with db.engine.connect() as conn:
        backends = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ).scalars()
        server = {int(pid): _proc_cpu(int(pid)) for pid in backends}
    return {"workers": {p.pid: _proc_cpu(p.pid) for p in procs}, "server": server}


def _spent(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds spent between two ``_cpu`` readings (processes present in both)."""
    return {
        side: sum(after[side][pid] - before[side].get(pid, after[side][pid]) for pid in after[side])
        for side in ("workers", "server")
    }


def _analyze(db: Database) -> None:
    """Current statistics, as a running database has them (autovacuum lags a bulk load)."""
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("ANALYZE enrollments; ANALYZE workflows; ANALYZE jobs")
        )


def _scalar(db: Database, sql: str, **params: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar() or 0)


def _env(url: str, tmp: Path, batch: int, poll: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWISE_")}
    env.update(
        POSTWISE_DATABASE_URL=url,
        POSTWISE_DATA_DIR=str(tmp),
        POSTWISE_LOG_LEVEL="WARNING",
        POSTWISE_WORKER_BATCH_SIZE=str(batch),
        PYTHONPATH=str(REPO),
    )
    if poll is not None:
        env["POSTWISE_WORKER_POLL_SECONDS"] = poll
    return env


def _workers(
    url: str, tmp: Path, count: int, batch: int = 1, poll: str | None = "0.02"
) -> list[subprocess.Popen[bytes]]:
    """``batch`` 1 for workflow runs: a wake is never queued behind claimed outbox drains.
    ``poll`` None: the default idle poll (``POSTWISE_WORKER_POLL_SECONDS``, 0.5 s)."""
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "postwise.cli.main",
                "worker",
                "--import",
                __name__,
                "--id",
                f"bench-{i}",
            ],
            env=_env(url, tmp, batch, poll),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def setup(db: Database, enrollments: int) -> tuple[int, int]:
    with db.system() as s:
        ws = create_workspace(s, "Bench").workspace_id
    now = clock.utcnow()
    with db.tenant(ws) as s:
        from postwise.messages.store import TemplateInput, create_template

        create_template(s, TemplateInput(name="hello", subject="Hi", html="<p>hi</p>"))
        wf = store.create_workflow(s, "bench", FLOW)
        wf_id = wf.id
    with db.engine.begin() as conn:
        for start in range(0, enrollments, 10_000):
            conn.execute(
                insert(Contact),
                [
                    {
                        "workspace_id": ws,
                        "email": f"c{i:07}@bench.example",
                        "email_domain": "bench.example",
                        "status": "subscribed",
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(start + 10_000, enrollments))
                ],
            )
        ids = [r[0] for r in conn.execute(text("SELECT id FROM contacts ORDER BY id"))]
        # A far future wake for all; the measured slices are made due just before a run.
        later = now + timedelta(days=1)
        for start in range(0, len(ids), 10_000):
            rows = []
            for cid in ids[start : start + 10_000]:
                rows.append(
                    {
                        "workspace_id": ws,
                        "workflow_id": wf_id,
                        "version": 1,
                        "contact_id": cid,
                        "state": {},
                        "status": "active",
                        "next_wake_at": later,
                        "enrolled_at": now,
                        "updated_at": now,
                    }
                )
            conn.execute(insert(Enrollment), rows)
        conn.execute(
            text(
                "UPDATE enrollments SET state = jsonb_build_object("
                "'enrollment_id', id::text, 'status', 'active', 'step', 'pause', "
                "'waiting', jsonb_build_object('kind', 'duration', 'until', CAST(:until AS text)), "
                "'visits', jsonb_build_object('pause', 1), 'history', '[]'::jsonb, "
                "'data', '{}'::jsonb, 'entered_at', CAST(:entered AS text))"
            ),
            {"until": (now - timedelta(minutes=1)).isoformat(), "entered": now.isoformat()},
        )
    engine.State.model_validate(
        {
            "enrollment_id": "1",
            "status": "active",
            "step": "pause",
            "waiting": {"kind": "duration", "until": now.isoformat()},
        }
    )  # the shape written above is a valid State
    return ws, wf_id


def due(db: Database, count: int) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE enrollments SET next_wake_at = now() - interval '1 minute' WHERE id IN "
                "(SELECT id FROM enrollments WHERE status = 'active' "
                "AND state->>'step' = 'pause' AND next_wake_at > now() ORDER BY id LIMIT :n)"
            ),
            {"n": count},
        )


def quiet(db: Database) -> None:
    """Mail queued by an earlier run is not this benchmark's business: its drain jobs
    would hold a worker for up to 20 s each and skew the next figure."""
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE task = 'delivery.drain'"))
        conn.execute(text("UPDATE outbox SET status = 'sent' WHERE status = 'queued'"))


def _lanes_now(db: Database) -> None:
    with db.engine.begin() as conn:  # idle lanes look now, not at their 10 s poll
        conn.execute(
            text("UPDATE jobs SET run_at = now() WHERE task = :t AND status = 'queued'"),
            {"t": "workflows.wake"},
        )


def _started(db: Database, since: int, workers: int) -> None:
    """Wait until every worker has settled a job: measure steps, not interpreter start-up."""
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and _scalar(
            db,
            "SELECT count(DISTINCT locked_by) FROM jobs WHERE id > :i AND status = 'done'",
            i=since,
        )
        < workers
    ):
        _lanes_now(db)
        time.sleep(0.2)
    time.sleep(2)  # start-up housekeeping (cleanup, sweeps) out of the way


def measure_steps(db: Database, url: str, tmp: Path, workers: int, wakes: int) -> dict[str, Any]:
    quiet(db)
    since = _scalar(db, "SELECT coalesce(max(id), 0) FROM jobs")
    with db.system() as s:  # one trivial job per worker, to see them up
        queue.enqueue_many(s, NOOP, ({} for _ in range(workers * 4)))
    procs = _workers(url, tmp, workers)
    try:
        _started(db, since, workers)
        due(db, wakes)
        _analyze(db)
        before = _scalar(db, "SELECT count(*) FROM enrollment_steps")
        cpu_before = _cpu(db, procs)
        started = time.perf_counter()
        _lanes_now(db)
        while (
            _scalar(
                db,
                "SELECT count(*) FROM enrollments WHERE next_wake_at <= now() "
                "AND status = 'active'",
            )
            > 0
        ):
            time.sleep(0.05)
            if time.perf_counter() - started > 600:
                break
        elapsed = time.perf_counter() - started
        spent = _spent(cpu_before, _cpu(db, procs))
    finally:
        _stop(procs)
    steps = _scalar(db, "SELECT count(*) FROM enrollment_steps") - before
    return {
        "workers": workers,
        "wakes": wakes,
        "steps": steps,
        "seconds": round(elapsed, 2),
        "wakes_per_s": round(wakes / elapsed, 1),
        "steps_per_s": round(steps / elapsed, 1),
        "worker_cpu_ms_per_step": round(spent["workers"] * 1000 / max(steps, 1), 3),
        "server_cpu_ms_per_step": round(spent["server"] * 1000 / max(steps, 1), 3),
        "steps_per_cpu_s": round(steps / max(spent["workers"] + spent["server"], 1e-9), 1),
        "load": _load(),
    }


def measure_claims(db: Database, url: str, tmp: Path, workers: int, jobs: int) -> dict[str, Any]:
    quiet(db)
    since = _scalar(db, "SELECT coalesce(max(id), 0) FROM jobs")
    with db.system() as s:
        queue.enqueue_many(s, NOOP, ({} for _ in range(workers * 4)))
    procs = _workers(url, tmp, workers, batch=50)
    try:
        _started(db, since, workers)
        with db.system() as s:
            queue.enqueue_many(s, NOOP, ({} for _ in range(jobs)))
        cpu_before = _cpu(db, procs)
        started = time.perf_counter()
        while _scalar(db, "SELECT count(*) FROM jobs WHERE task = :t AND status <> 'done'", t=NOOP):
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        spent = _spent(cpu_before, _cpu(db, procs))
    finally:
        _stop(procs)
    return {
        "workers": workers,
        "jobs": jobs,
        "jobs_per_s": round(jobs / elapsed, 1),
        "worker_cpu_ms_per_job": round(spent["workers"] * 1000 / jobs, 3),
        "server_cpu_ms_per_job": round(spent["server"] * 1000 / jobs, 3),
        "load": _load(),
    }


def measure_latency(db: Database, url: str, tmp: Path, ws: int, events: int) -> dict[str, Any]:
    """Events through the real ingest path, two workers running with the default idle poll
    (0.5 s; the route job's NOTIFY wakes them): arrival -> first step."""
    import postwise.workflows.jobs  # noqa: F401  (the routing listener)
    from postwise.tracking.events import parse_batch
    from postwise.tracking.ingest import ingest

    with db.engine.begin() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT id FROM contacts WHERE id NOT IN (SELECT contact_id FROM enrollments) "
                    "ORDER BY id LIMIT :n"
                ),
                {"n": events},
            )
        ]
        if len(ids) < events:
            now = clock.utcnow()
            conn.execute(
                insert(Contact),
                [
                    {
                        "workspace_id": ws,
                        "email": f"t{i:07}@bench.example",
                        "email_domain": "bench.example",
                        "status": "subscribed",
                        "attributes": {},
                        "external_id": f"t{i}",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(events)
                ],
            )
            ids = []
    quiet(db)
    with db.engine.begin() as conn:  # lanes due now: a started worker shows by running one
        conn.execute(
            text("UPDATE jobs SET run_at = now() WHERE task = :t AND status = 'queued'"),
            {"t": "workflows.wake"},
        )
    since = _scalar(db, "SELECT coalesce(max(id), 0) FROM jobs")
    procs = _workers(url, tmp, 2, poll=None)  # the default poll: a trigger must not wait for it
    arrivals: dict[str, float] = {}
    try:
        # Measure from events, not from interpreter start-up: wait until both workers
        # have settled a job, then give their start-up housekeeping a moment.
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and _scalar(
                db,
                "SELECT count(DISTINCT locked_by) FROM jobs WHERE id > :i AND status = 'done'",
                i=since,
            )
            < 2
        ):
            time.sleep(0.1)
        time.sleep(3)
        for i in range(events):
            at = clock.utcnow()
            raw = {
                "type": "track",
                "event": "Bench Signup",
                "userId": f"t{i}",
                "messageId": f"bench-{i}",
                "timestamp": at.isoformat(),
            }
            with db.tenant(ws) as s:
                ingest(s, parse_batch({"batch": [raw]}, received_at=at), received_at=at)
            arrivals[f"t{i}"] = at.timestamp()
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = _scalar(
                db,
                "SELECT count(*) FROM enrollments e JOIN contacts c ON c.id = e.contact_id "
                "WHERE c.external_id LIKE 't%'",
            )
            if got >= events:
                break
            time.sleep(0.2)
    finally:
        _stop(procs)
    with db.engine.connect() as conn:
        firsts = conn.execute(
            text(
                "SELECT c.external_id, min(e.enrolled_at) FROM enrollments e JOIN contacts c "
                "ON c.id = e.contact_id WHERE c.external_id LIKE 't%' GROUP BY 1"
            )
        ).all()
    lat = sorted((at.timestamp() - arrivals[ext]) * 1000 for ext, at in firsts if ext in arrivals)
    if not lat:
        return {"events": events, "enrolled": 0}
    return {
        "events": events,
        "enrolled": len(lat),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "max_ms": round(lat[-1], 1),
        "load": _load(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "POSTWISE_BENCH_POSTGRES_URL",
            "postgresql+psycopg://postgres@127.0.0.1/postwise_bench_workflows",
        ),
    )
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--wakes", type=int, default=10_000, help="due wakes per measured run")
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args(argv)
    url = args.database_url
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "postwise-bench-workflows"
    tmp.mkdir(parents=True, exist_ok=True)
    db = fresh_database(url)
    t0 = time.perf_counter()
    ws, _ = setup(db, args.enrollments)
    _analyze(db)
    active = _scalar(db, "SELECT count(*) FROM enrollments WHERE status = 'active'")
    print(
        f"setup: {active} active enrollments in {time.perf_counter() - t0:.1f} s; {_load()}",
        flush=True,
    )
    for workers in (1, 2):
        claims = measure_claims(db, url, tmp, workers, args.claims)
        print("baseline bare job claims", claims, flush=True)
        steps = measure_steps(db, url, tmp, workers, args.wakes)
        print("workflow steps", steps, flush=True)
        print(
            f"  {workers} worker(s): {steps['steps_per_s']} steps/s "
            f"(target with 2 workers: 2,000), "
            f"{steps['steps_per_s'] / claims['jobs_per_s']:.1f}x the bare claims/s; "
            f"CPU per step: worker {steps['worker_cpu_ms_per_step']} ms, "
            f"server {steps['server_cpu_ms_per_step']} ms",
            flush=True,
        )
    print("trigger latency", measure_latency(db, url, tmp, ws, args.events), flush=True)
    db.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
