"""Workers as real OS processes through the ``postwise`` CLI, the way operators run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from postwise.jobs import queue
from postwise.storage.database import Database
from postwise.storage.tables import Job
from tests.jobs.tasks import RECORD, effects, metadata

REPO = Path(__file__).resolve().parents[2]


def cli_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWISE_")}
    env.update(
        POSTWISE_DATABASE_URL=url,
        POSTWISE_DATA_DIR=str(tmp_path / "data"),
        POSTWISE_LOG_FORMAT="json",
        POSTWISE_LOG_LEVEL="INFO",
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def postwise(*args: str) -> list[str]:
    return [sys.executable, "-m", "postwise.cli.main", *args]


def run_cli(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        postwise(*args),
        env=cli_env(url, tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_command_runs_imported_tasks_until_idle(
    db: Database, effects_table: object, tmp_path: Path
) -> None:
    with db.system() as s:
        queue.enqueue_many(s, RECORD, ({} for _ in range(30)), queue="q1")
        queue.enqueue(s, RECORD, {}, queue="q2")
        queue.enqueue(s, RECORD, {}, queue="elsewhere")
    done = run_cli(
        db.url,
        tmp_path,
        "worker",
        "--queue",
        "q1,q2",
        "--import",
        "tests.jobs.tasks",
        "--id",
        "cli-worker",
        "--until-idle",
    )
    assert done.returncode == 0, done.stderr
    with db.system() as s:
        by_queue = dict(
            s.execute(
                select(Job.queue, func.count()).where(Job.status == "done").group_by(Job.queue)
            ).all()
        )
        assert s.scalar(select(func.count()).select_from(effects)) == 31
    assert by_queue == {"q1": 30, "q2": 1}


def test_worker_command_reports_a_module_it_cannot_import(db: Database, tmp_path: Path) -> None:
    done = run_cli(db.url, tmp_path, "worker", "--import", "no.such.module", "--until-idle")
    assert done.returncode == 1
    assert "cannot import 'no.such.module'" in done.stderr


def test_jobs_stats_and_retry_dead(db: Database, tmp_path: Path) -> None:
    with db.system() as s:
        queue.enqueue(s, "broken", {}, max_attempts=1)
        queue.enqueue(s, "fine", {}, queue="mail")
    (job,) = queue.claim(db, "w", ["default"], 1, 30)
    with db.system() as s:
        queue.fail(s, job, "boom")

    stats = run_cli(db.url, tmp_path, "jobs", "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    rows = {(r["queue"], r["status"]): r for r in json.loads(stats.stdout)}
    assert rows[("default", "dead")]["count"] == 1
    assert rows[("default", "dead")]["lag_seconds"] is None
    assert rows[("mail", "queued")]["lag_seconds"] >= 0

    retried = run_cli(db.url, tmp_path, "jobs", "retry-dead", "--task", "broken")
    assert retried.returncode == 0, retried.stderr
    assert "1 dead job(s) queued again" in retried.stdout
    with db.system() as s:
        assert s.scalar(select(Job.status).where(Job.task == "broken")) == "queued"


def test_sigterm_lets_the_worker_finish_the_job_in_hand(
    db: Database, effects_table: object, tmp_path: Path
) -> None:
    flag = tmp_path / "started"
    with db.system() as s:
        job_id = queue.enqueue(s, RECORD, {"sleep": 1.5, "started_flag": str(flag)}, queue="t")
    proc = subprocess.Popen(
        postwise("worker", "--queue", "t", "--import", "tests.jobs.tasks"),
        env=cli_env(db.url, tmp_path),
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert flag.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with db.system() as s:
        row = s.get(Job, job_id)
        assert row is not None
        assert (row.status, row.attempts) == ("done", 1)
        assert s.scalar(select(func.count()).select_from(effects)) == 1


# -- exactly once across processes -------------------------------------------------------

JOBS = 10_000
LEASE_SECONDS = "3"


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    metadata.create_all(database.engine)
    yield database
    metadata.drop_all(database.engine)
    database.dispose()


def scalar(db: Database, sql: str, **params: object) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


@pytest.mark.postgres_only
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_three_processes_one_killed_every_job_done_exactly_once(
    pg: Database, tmp_path: Path
) -> None:
    """The issue's acceptance test: SIGKILL one of three workers over 10,000 jobs."""
    with pg.system() as s:
        queue.enqueue_many(s, RECORD, ({} for _ in range(JOBS)), queue="exactly-once")
    env = cli_env(
        pg.url,
        tmp_path,
        POSTWISE_JOB_LEASE_SECONDS=LEASE_SECONDS,
        POSTWISE_WORKER_POLL_SECONDS="0.05",
        POSTWISE_WORKER_BATCH_SIZE="50",
    )
    names = ["victim", "survivor-1", "survivor-2"]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in names}
    try:
        for name in names:
            procs[name] = subprocess.Popen(
                postwise(
                    "worker",
                    "--queue",
                    "exactly-once",
                    "--import",
                    "tests.jobs.tasks",
                    "--id",
                    name,
                ),
                env=env,
                cwd=REPO,
                stdout=logs[name],
                stderr=subprocess.STDOUT,
            )

        # Kill the victim midway through a batch: jobs done, one mid-transaction, some waiting.
        held_by_victim = "SELECT count(*) FROM jobs WHERE status = 'running' AND locked_by = :w"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                scalar(pg, "SELECT count(*) FROM jobs WHERE status = 'done'") >= JOBS // 4
                and 10 <= scalar(pg, held_by_victim, w="victim") <= 40
            ):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the victim never held a batch past a quarter of the jobs")
        procs["victim"].send_signal(signal.SIGKILL)
        assert procs["victim"].wait(timeout=10) == -signal.SIGKILL
        time.sleep(0.5)  # let the server apply a COMMIT already in its socket buffer
        with pg.engine.connect() as conn:
            orphaned = set(
                conn.execute(
                    text("SELECT id FROM jobs WHERE status = 'running' AND locked_by = 'victim'")
                ).scalars()
            )
        assert len(orphaned) >= 5  # a batch was in hand: at most a few finished meanwhile

        deadline = time.monotonic() + 90
        while scalar(pg, "SELECT count(*) FROM jobs WHERE status <> 'done'") and (
            time.monotonic() < deadline
        ):
            for name in names[1:]:
                assert procs[name].poll() is None, (tmp_path / f"{name}.log").read_text()
            time.sleep(0.2)

        for name in names[1:]:
            procs[name].send_signal(signal.SIGTERM)
        for name in names[1:]:
            assert procs[name].wait(timeout=30) == 0, (tmp_path / f"{name}.log").read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()

    with pg.engine.connect() as conn:
        statuses: dict[str, int] = dict(
            conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY status")).all()
        )
        per_job: dict[int, int] = dict(
            conn.execute(select(effects.c.job_id, func.count()).group_by(effects.c.job_id)).all()
        )
        owners: dict[int, str] = dict(conn.execute(text("SELECT id, locked_by FROM jobs")).all())
        effect_owner = dict(conn.execute(select(effects.c.job_id, effects.c.worker_id)).all())
        reclaimed: dict[int, int] = dict(
            conn.execute(
                text("SELECT id, attempts FROM jobs WHERE id = ANY(:ids)"),
                {"ids": sorted(orphaned)},
            ).all()
        )
    assert statuses == {"done": JOBS}
    assert len(per_job) == JOBS
    assert set(per_job.values()) == {1}, {k: v for k, v in per_job.items() if v != 1}
    # The one surviving effect of each job is the one from the worker that completed it.
    assert effect_owner == owners
    assert all(owners[job_id] != "victim" for job_id in orphaned)
    assert set(reclaimed.values()) == {2}
    assert {"victim", "survivor-1", "survivor-2"} <= set(owners.values())


@pytest.mark.postgres_only
@pytest.mark.timeout(60)
def test_worker_killed_inside_a_handler_transaction_leaves_no_effect(
    pg: Database, tmp_path: Path
) -> None:
    with pg.system() as s:
        job_id = queue.enqueue(
            s, RECORD, {"sleep": 60, "sleep_only_first_attempt": True}, queue="kill"
        )
    env = cli_env(pg.url, tmp_path, POSTWISE_JOB_LEASE_SECONDS="2")
    args = ["worker", "--queue", "kill", "--import", "tests.jobs.tasks"]
    victim = subprocess.Popen(postwise(*args, "--id", "victim"), env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        locked = "SELECT count(*) FROM jobs WHERE locked_by = 'victim'"
        while not scalar(pg, locked) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # the handler has inserted its effect and sleeps, uncommitted
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    rescue = subprocess.Popen(postwise(*args, "--id", "rescuer"), env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        done = "SELECT count(*) FROM jobs WHERE status = 'done'"
        while not scalar(pg, done) and time.monotonic() < deadline:
            time.sleep(0.1)
        rescue.send_signal(signal.SIGTERM)
        assert rescue.wait(timeout=30) == 0
    finally:
        if rescue.poll() is None:
            rescue.kill()
            rescue.wait()
    with pg.engine.connect() as conn:
        rows = conn.execute(select(effects.c.job_id, effects.c.worker_id, effects.c.attempt)).all()
        job = conn.execute(text("SELECT status, attempts, locked_by FROM jobs")).one()
    assert [tuple(r) for r in rows] == [(job_id, "rescuer", 2)]
    assert tuple(job) == ("done", 2, "rescuer")
