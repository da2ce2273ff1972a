"""Crash safety on PostgreSQL: two ``postwise outbox deliver`` processes send to Postfix's
``smtp-sink`` while one is SIGKILLed mid-run and restarted. Every message arrives; the
copies that arrive twice are only those in flight when the worker died (the sink's 250
came, the settle did not commit), never more than the dead worker had in hand.
(``python -m benchmarks send --crash`` runs the same with 20,000 messages.)"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import insert

from postwise.delivery import outbox
from postwise.storage.database import Database
from postwise.storage.tables import OutboxMessage
from postwise.workspaces.actions import create_workspace

from .postfix_peer import SMTP_SINK, free_port, require, wait_for_port

N = 1500
CONCURRENCY = 4
RECORD_GROUP = 8  # deliverer.Policy.record_group
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE | re.IGNORECASE)


def pending(db: Database) -> int:
    with db.system() as s:
        counts = outbox.stats(s)
    return sum(counts.get(k, 0) for k in ("queued", "sending", "deferred"))


@pytest.mark.slow
def test_a_killed_worker_loses_no_message(postgres_url: str) -> None:
    require(SMTP_SINK)
    db = Database(postgres_url)
    dump = Path(tempfile.mkdtemp(prefix="postwise-sink-"))
    dump.chmod(0o777)
    port = free_port()
    sink = subprocess.Popen(
        [
            str(SMTP_SINK),
            "-u",
            "nobody",
            "-R",
            str(dump),
            "-d",
            "%H/%M.",
            f"127.0.0.1:{port}",
            "64",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_for_port(port)
        with db.system() as s:
            ws = create_workspace(s, "Crash").workspace_id
            s.execute(
                insert(OutboxMessage),
                [
                    {
                        "workspace_id": ws,
                        "email": f"r{i}@corp{i % 7}.example",
                        "kind": "transactional",
                        "data": {},
                        "raw": f"Message-ID: <c{i}@send.example>\r\n\r\n{i}\r\n".encode(),
                        "mail_from": "b@send.example",
                        "status": "queued",
                        "attempts": 0,
                    }
                    for i in range(N)
                ],
            )
        env = {
            **os.environ,
            "POSTWISE_DATABASE_URL": postgres_url,
            "POSTWISE_DELIVERY_TRANSPORT": "relay",
            "POSTWISE_RELAY_HOST": "127.0.0.1",
            "POSTWISE_RELAY_PORT": str(port),
            "POSTWISE_RELAY_TLS": "none",
            "POSTWISE_DELIVERY_CONCURRENCY": str(CONCURRENCY),
            "POSTWISE_DELIVERY_BATCH_SIZE": "50",
            "POSTWISE_DELIVERY_LEASE_SECONDS": "6",
            "POSTWISE_DELIVERY_OTHER_PER_MINUTE": "10000000",
            "POSTWISE_DELIVERY_OTHER_CONNECTIONS": "100",
            "POSTWISE_SECRET_KEY": "crash test",
            "POSTWISE_LOG_LEVEL": "ERROR",
        }

        def spawn(name: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "postwise.cli.main", "outbox", "deliver", "--id", name],
                env=env,
                stdout=subprocess.DEVNULL,
            )

        workers = [spawn("a"), spawn("b")]
        deadline = time.monotonic() + 180
        while pending(db) > N * 0.8 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        workers[0] = spawn("a2")
        while pending(db) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pending(db) == 0, "delivery did not finish in time"
        with db.system() as s:
            assert outbox.stats(s) == {"sent": N}
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=30)
        seen: Counter[bytes] = Counter()
        for path in dump.rglob("*"):
            if path.is_file():
                found = MESSAGE_ID.search(path.read_bytes())
                if found:
                    seen[found.group(1)] += 1
        missing = {f"<c{i}@send.example>".encode() for i in range(N)} - set(seen)
        duplicates = sum(c - 1 for c in seen.values())
        assert missing == set()
        assert duplicates <= CONCURRENCY + RECORD_GROUP, f"{duplicates} duplicates"
        print(f"crash test: {N} messages, 1 SIGKILL, 0 missing, {duplicates} duplicated")
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        sink.terminate()
        sink.wait()
        db.dispose()
        shutil.rmtree(dump, ignore_errors=True)
