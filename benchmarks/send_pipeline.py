"""Sending to Postfix's ``smtp-sink``: ``python -m benchmarks send``.

Two measurements, one sink per run, on PostgreSQL (``--database-url``; its schema is
dropped and re-created):

* **throughput**: ``--messages`` messages go out of the outbox through
  ``postwise outbox deliver`` processes using the relay transport over 16 connections,
  beside ``smtp-source`` pushing as many messages of the same size over as many
  connections in the same run (the physical limit of the machine). The **full
  pipeline** is what the issue measures: each row names a stored template (the
  newsletter starter with 12 articles, ~20 KB; CSS inlined once per template version)
  and a contact with a company, and is built at send time: personalized render, links,
  headers, MIME, DKIM with the workspace's stored key (RSA-2048, then Ed25519), SMTP.
  Runs: RSA with 1 and 2 processes, Ed25519 with 1, and the same messages prebuilt
  (bytes on the row: claim, screen, fence, SMTP, settle only) with 1 for comparison.
  Each line gives wall msg/s, the ratio to smtp-source, the worker processes' CPU per
  message (user + system, start-up included: the figure that holds on a loaded
  machine), the deliverer's own CPU per message per stage, and the CPU of the
  database's PostgreSQL backends per message (a local server, read from /proc).
* **crash** (``--crash``): the sink dumps every message; two delivery processes run
  with a 10 s lease while one of them is SIGKILLed at random moments (``--kills``
  times) and restarted. Afterwards every Message-ID is counted at the sink: missing
  ones are lost mail, extra copies are the duplicate window (the sink's 250 arrived,
  the worker died before its commit).

Figures only: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import insert, select, text

from postwise.core import clock
from postwise.delivery import outbox
from postwise.messages import starters
from postwise.messages.keys import generate_dkim_key
from postwise.messages.store import TemplateInput, create_template
from postwise.storage import migrate
from postwise.storage.database import Database
from postwise.storage.tables import Company, Contact, OutboxMessage
from postwise.workspaces.actions import create_workspace

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
CONNECTIONS = 16
SECRET = "bench"
SENDING_DOMAIN = "send.example"
COMPANIES = 500
STAGES = ("claim", "screen", "build", "fence", "settle", "loop")
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE | re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int, dump_dir: Path | None) -> subprocess.Popen[bytes]:
    args = (
        [SMTP_SINK, "-u", "nobody", "-R", str(dump_dir)]
        if dump_dir
        else [SMTP_SINK, "-u", "nobody"]
    )
    if dump_dir is not None:
        args += ["-d", "%Y%m%d%H/%M."]
    args += [f"127.0.0.1:{port}", "1024"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("smtp-sink did not start")


def body(size: int) -> bytes:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    return line * max(1, size // len(line))


def fresh_database(url: str) -> Database:
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(db)
    return db


def seed(db: Database, n: int, size: int, tag: str) -> int:
    with db.system() as s:
        ws = create_workspace(s, f"bench {tag} {time.time_ns()}").workspace_id
    payload = body(size)
    rows = []
    for i in range(n):
        rcpt = f"r{i}@corp{i % 50}.example"
        mid = f"<{tag}.{i}@send.example>"
        raw = (
            f"From: News <news@send.example>\r\nTo: <{rcpt}>\r\nSubject: bench {i}\r\n"
            f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        ).encode() + payload
        rows.append(
            {
                "workspace_id": ws,
                "email": rcpt,
                "kind": "transactional",
                "data": {},
                "raw": raw,
                "mail_from": "bounces@send.example",
                "message_id": mid,
                "status": "queued",
                "attempts": 0,
            }
        )
        if len(rows) == 2000:
            with db.system() as s:
                s.execute(insert(OutboxMessage), rows)
            rows = []
    if rows:
        with db.system() as s:
            s.execute(insert(OutboxMessage), rows)
    return ws


def seed_full(db: Database, n: int, tag: str, algorithm: str) -> int:
    """``n`` contacts (with companies) and one outbox row each naming a stored newsletter
    template, in a workspace whose DKIM key for the sending domain is ``algorithm``."""
    with db.system() as s:
        ws = create_workspace(s, f"bench {tag} {time.time_ns()}").workspace_id
    starter = starters.load("newsletter")
    with db.tenant(ws) as s:
        generate_dkim_key(
            s, SECRET.encode(), domain=SENDING_DOMAIN, selector=f"{tag}1", algorithm=algorithm
        )
        template_id = create_template(
            s,
            TemplateInput(
                name="newsletter",
                subject=starter.source.subject,
                preheader=starter.source.preheader,
                html=starter.source.html,
            ),
        ).id
    data = starters.sample_data("newsletter", articles=12)
    now = clock.utcnow()
    with db.engine.begin() as conn:
        conn.execute(
            insert(Company),
            [
                {"workspace_id": ws, "domain": f"corp{i}.example", "name": f"Corp {i}",
                 "attributes": {}, "created_at": now, "updated_at": now}
                for i in range(COMPANIES)
            ],
        )  # fmt: skip
        companies = dict(
            conn.execute(select(Company.domain, Company.id).where(Company.workspace_id == ws)).all()
        )
        for start in range(0, n, 5000):
            chunk = range(start, min(n, start + 5000))
            conn.execute(
                insert(Contact),
                [
                    {"workspace_id": ws, "email": f"r{i}@corp{i % COMPANIES}.example",
                     "email_domain": f"corp{i % COMPANIES}.example", "first_name": f"Reader{i}",
                     "last_name": "Bench", "company_id": companies[f"corp{i % COMPANIES}.example"],
                     "status": "subscribed", "attributes": {}, "created_at": now,
                     "updated_at": now}
                    for i in chunk
                ],
            )  # fmt: skip
        contacts = conn.execute(
            select(Contact.id, Contact.email).where(Contact.workspace_id == ws).order_by(Contact.id)
        ).all()
        for start in range(0, n, 5000):
            conn.execute(
                insert(OutboxMessage),
                [
                    {"workspace_id": ws, "contact_id": cid, "email": email, "kind": "marketing",
                     "template_id": str(template_id), "data": data, "campaign_key": tag,
                     "status": "queued", "attempts": 0, "next_attempt_at": now,
                     "created_at": now}
                    for cid, email in contacts[start : start + 5000]
                ],
            )  # fmt: skip
    return ws


def worker_env(url: str, port: int, lease: float) -> dict[str, str]:
    return {
        **os.environ,
        "POSTWISE_DATABASE_URL": url,
        "POSTWISE_DELIVERY_TRANSPORT": "relay",
        "POSTWISE_RELAY_HOST": "127.0.0.1",
        "POSTWISE_RELAY_PORT": str(port),
        "POSTWISE_RELAY_TLS": "none",
        "POSTWISE_RELAY_POOL_SIZE": str(CONNECTIONS),
        "POSTWISE_DELIVERY_CONCURRENCY": str(CONNECTIONS),
        "POSTWISE_DELIVERY_BATCH_SIZE": "200",
        "POSTWISE_DELIVERY_LEASE_SECONDS": str(lease),
        "POSTWISE_DELIVERY_GLOBAL_PER_SECOND": "1000000",
        "POSTWISE_DELIVERY_OTHER_PER_MINUTE": "100000000",
        "POSTWISE_DELIVERY_OTHER_CONNECTIONS": "1000",
        "POSTWISE_LOG_LEVEL": "WARNING",
        "POSTWISE_SECRET_KEY": SECRET,
        "POSTWISE_DELIVERY_FROM_ADDRESS": f"news@{SENDING_DOMAIN}",
        "POSTWISE_DELIVERY_BOUNCE_DOMAIN": f"bounces.{SENDING_DOMAIN}",
        "POSTWISE_DELIVERY_POSTAL_ADDRESS": "Acme Ltd, 1 Main Street, Springfield",
        "POSTWISE_BASE_URL": "https://t.send.example",
    }


def spawn_worker(
    env: dict[str, str], name: str, output: int | None = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "postwise.cli.main", "outbox", "deliver", "--id", name],
        env=env,
        stdout=output,
    )


def pending(db: Database) -> int:
    with db.system() as s:
        counts = outbox.stats(s)
    return sum(counts.get(k, 0) for k in ("queued", "sending", "deferred"))


def any_pending(db: Database) -> bool:
    """Whether a row is still to send: one index probe per status, where ``pending``
    counts every row (a scan of the whole outbox each time the waiting loop asks)."""
    with db.engine.connect() as conn:
        return (
            conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'queued') "
                    "OR EXISTS (SELECT 1 FROM outbox WHERE status = 'sending') "
                    "OR EXISTS (SELECT 1 FROM outbox WHERE status = 'deferred')"
                )
            ).scalar_one()
            is True
        )


def stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=30)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


class BackendCpu:
    """CPU seconds of the workers' PostgreSQL backends (a local server: /proc), sampled
    while they run; each backend's last reading counts. Client backends of this database
    started after the workers only: not other databases' (other users of the server),
    not autovacuum (which the freshly seeded tables set off). ``None`` when /proc cannot
    be read."""

    TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: dict[int, float] = {}
        self.readable = True
        # Backends started from now on are the workers' (this process reuses its one).
        with db.engine.connect() as conn:
            self.since = conn.execute(text("SELECT now()")).scalar_one()

    def sample(self) -> None:
        with self.db.engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                    "AND backend_start >= :since"
                ),
                {"since": self.since},
            ).scalars()
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    self.readable = False
                    continue
                self.seen[pid] = (int(fields[11]) + int(fields[12])) / self.TICK

    def total(self) -> float | None:
        return sum(self.seen.values()) if self.readable and self.seen else None


def run_workers(
    db: Database, env: dict[str, str], count: int
) -> tuple[float, float, dict[str, float], float | None]:
    """Wall seconds to empty the outbox, the CPU seconds (user + system) the worker
    processes used (on a shared, loaded machine the CPU time per message is the figure
    that does not depend on what else runs), the deliverers' CPU seconds per stage
    (their final JSON line, ``Totals.cpu``) and their PostgreSQL backends' CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    backends = BackendCpu(db)
    started = time.perf_counter()
    workers = [spawn_worker(env, f"bench-{i}", subprocess.PIPE) for i in range(count)]
    try:
        polls = 0
        while any_pending(db):
            time.sleep(0.05)
            polls += 1
            if polls % 4 == 0:
                backends.sample()
        backends.sample()
        took = time.perf_counter() - started
    finally:
        stop_all(workers)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stages: dict[str, float] = {}
    for w in workers:
        out = w.stdout.read().decode() if w.stdout else ""
        # The CLI's console wraps its JSON line at the terminal width: join it back.
        last = out[out.rfind("\n{") + 1 :] if "\n{" in out else out
        if last.startswith("{"):
            for stage, seconds in json.loads(" ".join(last.splitlines())).get("cpu", {}).items():
                stages[stage] = stages.get(stage, 0.0) + seconds
    return took, cpu, stages, backends.total()


def smtp_source(port: int, n: int, size: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            SMTP_SOURCE,
            "-s",
            str(CONNECTIONS),
            "-m",
            str(n),
            "-l",
            str(size),
            "-f",
            "a@send.example",
            "-t",
            "b@corp.example",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


RUNS = (  # (label, workers, how the rows are made)
    ("full RSA-2048  x1", 1, "rsa"),
    ("full RSA-2048  x2", 2, "rsa"),
    ("full Ed25519   x1", 1, "ed25519"),
    ("prebuilt       x1", 1, "prebuilt"),
)


def throughput(url: str, n: int, size: int, only: list[str] | None) -> None:
    port = free_port()
    sink = start_sink(port, None)
    uptime = Path("/proc/loadavg")
    try:
        limit = smtp_source(port, n, size)
        print(
            f"smtp-source            {n:>7,} msgs  {limit:7.2f} s  {n / limit:8.0f} msg/s  "
            f"({CONNECTIONS} connections, {size:,} B)",
            flush=True,
        )
        db = fresh_database(url)
        for label, workers, how in RUNS:
            if only and how not in only:
                continue
            load = uptime.read_text().split()[0] if uptime.exists() else "?"
            if how == "prebuilt":
                seed(db, n, size, f"w{workers}")
            else:
                seed_full(db, n, f"{how[:3]}{workers}", how)
            took, cpu, stages, server = run_workers(db, worker_env(url, port, 60), workers)
            with db.system() as s:
                counts = outbox.stats(s)
            rate = n / took
            print(
                f"{label}      {n:>7,} msgs  {took:7.2f} s  {rate:8.0f} msg/s  "
                f"({rate / (n / limit):.1%} of smtp-source; load {load}; worker CPU "
                f"{1e6 * cpu / n:,.0f} us per message; outbox {counts})",
                flush=True,
            )
            known = {k: v for k, v in stages.items() if k in STAGES}
            print(
                "    deliverer CPU per message: "
                + ", ".join(f"{k} {1e6 * known.get(k, 0.0) / n:,.0f}" for k in STAGES)
                + f" us (sum {1e6 * sum(known.values()) / n:,.0f}; loop = event loop: "
                "SMTP, pacing, scheduling)",
                flush=True,
            )
            print(
                "    PostgreSQL backends of this database: "
                + (f"{1e6 * server / n:,.0f} us CPU per message" if server else "not readable"),
                flush=True,
            )
            with db.engine.begin() as conn:
                conn.execute(text("DELETE FROM events"))
                conn.execute(text("DELETE FROM outbox"))
        db.dispose()
    finally:
        sink.terminate()
        sink.wait()


def crash(url: str, n: int, size: int, kills: int, seed_value: int) -> None:
    rng = random.Random(seed_value)
    dump = Path(tempfile.mkdtemp(prefix="postwise-sink-"))
    dump.chmod(0o777)
    port = free_port()
    sink = start_sink(port, dump)
    db = fresh_database(url)
    try:
        seed(db, n, size, "crash")
        env = worker_env(url, port, 10)
        workers = [spawn_worker(env, "crash-a"), spawn_worker(env, "crash-b")]
        killed = 0
        started = time.perf_counter()
        while pending(db) > n * 0.97:  # both processes started and sending
            time.sleep(0.1)
        while pending(db):
            time.sleep(rng.uniform(0.5, 3.0))
            if killed < kills and pending(db) > n // 10:
                victim = rng.randrange(2)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                killed += 1
                print(
                    f"  SIGKILL worker {victim} at {time.perf_counter() - started:.1f} s, "
                    f"{pending(db):,} pending"
                )
                workers[victim] = spawn_worker(env, f"crash-{victim}-{killed}")
        took = time.perf_counter() - started
        stop_all(workers)
        time.sleep(0.5)
        seen: Counter[bytes] = Counter()
        for path in dump.rglob("*"):
            if path.is_file():
                match = MESSAGE_ID.search(path.read_bytes())
                if match:
                    seen[match.group(1)] += 1
        expected = {f"<crash.{i}@send.example>".encode() for i in range(n)}
        missing = len(expected - set(seen))
        duplicates = sum(c - 1 for c in seen.values() if c > 1)
        with db.system() as s:
            counts = outbox.stats(s)
        print(
            f"crash: {n:,} messages, {killed} SIGKILLs, {took:.1f} s; outbox {counts}; "
            f"at the sink: {len(seen):,} distinct, {missing} missing, {duplicates} duplicated"
        )
    finally:
        sink.terminate()
        sink.wait()
        db.dispose()
        shutil.rmtree(dump, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "POSTWISE_BENCH_POSTGRES_URL",
            "postgresql+psycopg://postgres@127.0.0.1/postwise_bench_send",
        ),
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--crash", action="store_true", help="run the crash-safety measurement")
    parser.add_argument("--crash-messages", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only",
        action="append",
        choices=["rsa", "ed25519", "prebuilt"],
        help="run only these kinds of rows (repeatable); default: all four runs",
    )
    args = parser.parse_args(argv)
    for binary in (SMTP_SINK, SMTP_SOURCE):
        if not Path(binary).exists():
            raise SystemExit(f"{binary} is missing: apt-get install postfix")
    if args.crash:
        crash(args.database_url, args.crash_messages, 2000, args.kills, args.seed)
    else:
        throughput(args.database_url, args.messages, args.size, args.only)


if __name__ == "__main__":
    main(sys.argv[1:])
