"""Two ``postwise worker`` processes on PostgreSQL wake thousands of enrollments while one
of them is killed with SIGKILL mid-batch: every step runs exactly once, none is lost."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from postwise.contacts.actions import upsert_contacts
from postwise.contacts.attributes import define_attribute
from postwise.core import clock
from postwise.storage.database import Database
from postwise.workflows import runtime, store
from postwise.workspaces.actions import create_workspace
from tests.jobs.test_processes import REPO, cli_env, postwise

ENROLLMENTS = 3000
FLOW = {
    "version": 1,
    "name": "Exactly once",
    "triggers": [{"type": "manual"}],
    "steps": [
        {"id": "pause", "type": "wait", "duration": {"minutes": 1}},
        {"id": "note", "type": "send_email", "template": "note", "marketing": False},
        {"id": "mark", "type": "update_attribute", "attribute": "stage", "value": "done"},
        {"id": "leave", "type": "exit", "reason": "done"},
    ],
}


def scalar(db: Database, sql: str, **params: object) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar() or 0)


@pytest.mark.postgres_only
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_workers_one_killed_every_step_once(postgres_url: str, tmp_path: Path) -> None:
    runtime.forget_parsed()
    db = Database(postgres_url)
    with db.system() as s:
        ws = create_workspace(s, "Acme").workspace_id
    long_ago = clock.utcnow() - timedelta(minutes=10)  # the 1-minute waits are all due
    with db.tenant(ws) as s:
        from postwise.messages.store import TemplateInput, create_template

        create_template(s, TemplateInput(name="note", subject="Note", html="<p>n</p>"))
        define_attribute(s, "contact", "stage", "string")
        rows = [{"email": f"c{i:05}@corp.example"} for i in range(ENROLLMENTS)]
        ids = [r.contact_id for r in upsert_contacts(s, rows, source="api")]
        wf = store.create_workflow(s, "once", FLOW)
        for cid in ids:
            assert cid is not None
            runtime.enroll(s, wf, cid, now=long_ago, manual=True)
    assert scalar(db, "SELECT count(*) FROM enrollments WHERE next_wake_at <= now()") == ENROLLMENTS
    env = cli_env(
        postgres_url,
        tmp_path,
        POSTWISE_JOB_LEASE_SECONDS="3",
        POSTWISE_WORKER_POLL_SECONDS="0.05",
        # One job per claim: a wake (priority 40) is never stuck behind claimed outbox
        # drains, which each run up to 20 s while mail keeps arriving.
        POSTWISE_WORKER_BATCH_SIZE="1",
        # 3,000 mails to one corporate domain at the default 60/min would keep a drain job
        # pacing (and a graceful stop waiting) for minutes; this test is about steps.
        POSTWISE_DELIVERY_OTHER_PER_MINUTE="1000000",
    )
    names = ["victim", "survivor"]
    logs = {n: (tmp_path / f"{n}.log").open("wb") for n in names}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for n in names:
            procs[n] = subprocess.Popen(
                postwise("worker", "--id", n),
                env=env,
                cwd=REPO,
                stdout=logs[n],
                stderr=subprocess.STDOUT,
            )
        held = (
            "SELECT count(*) FROM jobs WHERE status = 'running' AND locked_by = 'victim' "
            "AND task = 'workflows.wake'"
        )
        done = "SELECT count(*) FROM enrollments WHERE status <> 'active'"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if scalar(db, done) >= ENROLLMENTS // 5 and scalar(db, held) >= 1:
                break
            time.sleep(0.005)
        else:
            pytest.fail("the victim never held a wake batch")
        procs["victim"].send_signal(signal.SIGKILL)
        assert procs["victim"].wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 120
        while scalar(db, done) < ENROLLMENTS and time.monotonic() < deadline:
            assert procs["survivor"].poll() is None, (tmp_path / "survivor.log").read_text()
            time.sleep(0.2)
        procs["survivor"].send_signal(signal.SIGTERM)
        # A graceful stop lets the job in hand finish; an outbox drain may run ~20 s.
        assert procs["survivor"].wait(timeout=90) == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()
    # None lost: every journey ended at its exit step.
    assert scalar(db, "SELECT count(*) FROM enrollments WHERE exit_reason = 'done'") == ENROLLMENTS
    # None twice: one history row per enrollment and step, one message per enrollment.
    assert (
        scalar(
            db,
            "SELECT count(*) FROM (SELECT enrollment_id, step FROM enrollment_steps "
            "GROUP BY enrollment_id, step HAVING count(*) > 1) AS twice",
        )
        == 0
    )
    assert scalar(db, "SELECT count(*) FROM enrollment_steps WHERE step = 'note'") == ENROLLMENTS
    assert scalar(db, "SELECT count(*) FROM outbox WHERE workflow_key = 'once'") == ENROLLMENTS
    assert (
        scalar(db, "SELECT count(*) FROM contacts WHERE attributes->>'stage' = 'done'")
        == ENROLLMENTS
    )
    db.dispose()
