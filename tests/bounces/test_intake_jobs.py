"""The ``bounces.poll_imap`` job: workers poll a configured mailbox (a private Dovecot)
and keep one chain of polls going; without a mailbox nothing is scheduled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from postwise.bounces import jobs as bounce_jobs
from postwise.core import clock
from postwise.core.settings import Settings, get_settings
from postwise.jobs.registry import TaskRegistry
from postwise.jobs.runner import Worker
from postwise.storage.database import Database
from postwise.storage.tables import BounceRecord, Job
from tests.bounces.dovecot_peer import PASSWORD, USER, DovecotInstance, dovecot  # noqa: F401
from tests.bounces.scenario import SECRET, audience, dsn, verp

WORKER = Settings(worker_poll_seconds=0.05, worker_batch_size=10, job_lease_seconds=30)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("POSTWISE_SECRET_KEY", SECRET.decode())
    monkeypatch.setenv("POSTWISE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_without_a_mailbox_no_poll_is_scheduled(db: Database, env: pytest.MonkeyPatch) -> None:
    env.delenv("POSTWISE_BOUNCE_IMAP_HOST", raising=False)
    with db.system() as s:
        assert bounce_jobs.ensure_poll_scheduled(s) is None


def test_workers_poll_the_mailbox_and_schedule_the_next_poll(
    db: Database,
    env: pytest.MonkeyPatch,
    dovecot: DovecotInstance,  # noqa: F811
) -> None:
    for name, value in {
        "HOST": "127.0.0.1",
        "PORT": str(dovecot.port),
        "TLS": "none",
        "USERNAME": USER,
        "PASSWORD": PASSWORD,
        "POLL_SECONDS": "60",
    }.items():
        env.setenv(f"POSTWISE_BOUNCE_IMAP_{name}", value)
    get_settings.cache_clear()
    people = audience(db, ["ann@corp.example"])
    dovecot.append(dsn("ann@corp.example", return_path=verp(people.outbox["ann@corp.example"])))
    with db.system() as s:
        first = bounce_jobs.ensure_poll_scheduled(s)
        assert first is not None
        assert bounce_jobs.ensure_poll_scheduled(s) == first  # one chain, whoever starts
    registry = TaskRegistry()
    registry.register(bounce_jobs.POLL, bounce_jobs.poll)
    assert Worker(db, WORKER, registry=registry).run_until_idle() == 1
    with db.tenant(people.workspace_id) as s:
        record = s.scalars(select(BounceRecord)).one()
        assert (record.email, record.source) == ("ann@corp.example", "imap")
    with db.system() as s:
        queued = s.scalars(select(Job).where(Job.task == bounce_jobs.POLL, Job.status == "queued"))
        [following] = queued.all()
        wait = following.run_at - clock.utcnow()
        assert timedelta(seconds=50) < wait <= timedelta(seconds=60)
