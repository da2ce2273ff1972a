"""``/v1/batch`` ingestion throughput beside a bare endpoint, on one uvicorn process.

``python -m benchmarks.tracking_ingest`` (also run by ``python -m benchmarks``) needs a
PostgreSQL database it may wipe (``--postgres`` or ``POSTWISE_BENCH_POSTGRES_URL``). It

* migrates the database and creates a workspace with a tracking write key;
* starts ONE uvicorn process serving the Postwise app plus ``POST /bare/batch``, a bare
  Starlette endpoint that only parses the JSON body and answers 200;
* starts ``--generators`` load-generator processes (httpx, keep-alive, ``--connections``
  concurrent connections each, loopback only), each sending a bounded number of
  pre-built batches of ``--batch-size`` events with unique messageIds, released together;
* measures the bare endpoint and ``/v1/batch`` alternately (``--rounds`` each, best
  kept) and prints events/s for both, their ratio, and checks every event was stored.

Figures only: nothing asserts a speed. Targets (docs/tracking.md): >= 10,000 events/s
and >= half the bare endpoint's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TARGET_EVENTS_PER_SECOND = 10_000
TARGET_RATIO = 0.5
BARE_PATH = "/bare/batch"
INGEST_PATH = "/v1/batch"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``): the server's cost per
    request, which other load on the machine disturbs far less than its rate."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends_cpu(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the benchmark's database
    (not this query's own): what the database spends per batch, whoever else loads the
    machine. Needs PostgreSQL on this host (``/proc``); empty otherwise."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    query = (
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(parsed.render_as_string(hide_password=False)) as conn:
        pids = [row[0] for row in conn.execute(query)]
    found: dict[int, float] = {}
    for pid in pids:
        try:
            found[pid] = _cpu_seconds(pid)
        except OSError:
            continue
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the server process -------------------------------------------------------------


def serve(url: str, port: int) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from postwise.api.app import create_app
    from postwise.cli.runtime import settle_gc
    from postwise.core.logging import configure_logging
    from postwise.core.settings import Settings

    async def bare(request: Request) -> JSONResponse:
        json.loads(await request.body())
        return JSONResponse({"success": True})

    settings = Settings(
        database_url=url, tracking_rate_per_second=1e9, tracking_rate_burst=1_000_000_000
    )
    configure_logging(settings)  # as `postwise serve` does; POSTWISE_LOG_LEVEL=WARNING
    app = create_app(settings)
    # First in the routing table, so the baseline pays no matching past Postwise's routes.
    app.router.routes.insert(0, Route(BARE_PATH, bare, methods=["POST"]))
    settle_gc()  # as `postwise serve` does
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- a load-generator process -------------------------------------------------------


def _batch(size: int, serial: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    events: list[dict[str, Any]] = []
    for i in range(size):
        visitor = f"anon-{serial % 997}-{i % 13}"
        common = {
            "anonymousId": visitor,
            "messageId": str(uuid.uuid4()),
            "timestamp": now,
            "context": {
                "library": {"name": "analytics-python", "version": "2.3.4"},
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
                "page": {"url": "https://acme.test/pricing?utm_source=newsletter",
                         "referrer": "https://news.test/"},
                "campaign": {"source": "newsletter", "medium": "email", "name": "nov"},
            },
        }  # fmt: skip
        if i % 3 == 0:
            page = {"url": "https://acme.test/pricing", "title": "Pricing"}
            events.append({**common, "type": "page", "name": "Pricing", "properties": page})
        else:
            added = {"sku": f"SKU-{i}", "price": 49.0, "quantity": 1}
            events.append(
                {**common, "type": "track", "event": "Product Added", "properties": added}
            )
    return json.dumps({"batch": events, "sentAt": now}).encode()


async def _send(url: str, bodies: list[bytes], connections: int, key: str) -> int:
    import httpx

    headers = {"Content-Type": "application/json"}
    auth = httpx.BasicAuth(key, "")
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    failures = 0
    pending = iter(bodies)
    async with httpx.AsyncClient(limits=limits, timeout=120, auth=auth, headers=headers) as client:

        async def worker() -> None:
            nonlocal failures
            for body in pending:
                response = await client.post(url, content=body)
                if response.status_code != 200:
                    failures += 1
                    if failures == 1:
                        print(response.status_code, response.text[:300], file=sys.stderr)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return failures


def generate(url: str, key: str, batches: int, size: int, connections: int, seed: int) -> None:
    bodies = [_batch(size, seed * 1_000_000 + n) for n in range(batches)]
    print("ready", flush=True)
    sys.stdin.readline()  # released by the parent together with the other generators
    started = time.perf_counter()
    failures = asyncio.run(_send(url, bodies, connections, key))
    elapsed = time.perf_counter() - started
    print(json.dumps({"requests": batches, "failures": failures, "seconds": elapsed}), flush=True)


# --- the parent ---------------------------------------------------------------------


def _prepare(url: str) -> str:
    from sqlalchemy import text

    from postwise.storage import migrate
    from postwise.storage.database import Database
    from postwise.workspaces.actions import create_workspace

    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(db)
    with db.system() as session:
        key = create_workspace(session, "Bench").write_key
    db.dispose()
    return key


def _stored_events(url: str) -> int:
    from sqlalchemy import text

    from postwise.storage.database import Database

    db = Database(url)
    with db.engine.connect() as conn:
        count = int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
    db.dispose()
    return count


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the benchmark server exited during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the benchmark server did not start")


def _round(
    url: str, key: str, args: argparse.Namespace, seed: int, server: int
) -> tuple[float, float, float]:
    """(events per second, server CPU milliseconds per 1,000 events, PostgreSQL backend CPU
    milliseconds per batch)."""
    command = [sys.executable, "-m", "benchmarks.tracking_ingest", "generate", "--target", url,
               "--key", key, "--batches", str(args.batches), "--batch-size", str(args.batch_size),
               "--connections", str(args.connections)]  # fmt: skip
    generators = [
        subprocess.Popen(
            [*command, "--seed", str(seed * 100 + g)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for g in range(args.generators)
    ]
    for generator in generators:
        assert generator.stdout is not None
        if generator.stdout.readline().strip() != "ready":
            raise SystemExit("a load generator failed to start")
    backends = _backends_cpu(args.postgres)
    started = time.perf_counter()
    cpu = _cpu_seconds(server)
    for generator in generators:
        assert generator.stdin is not None
        generator.stdin.write("go\n")
        generator.stdin.flush()
    results = []
    for generator in generators:
        out, _ = generator.communicate()
        results.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(server) - cpu
    after = _backends_cpu(args.postgres)  # empty (nan below) when PostgreSQL runs elsewhere
    backend_cpu = sum(t - backends.get(pid, 0.0) for pid, t in after.items()) if after else math.nan
    failures = sum(r["failures"] for r in results)
    if failures:
        raise SystemExit(f"{failures} requests to {url} failed")
    events = args.generators * args.batches * args.batch_size
    batches = args.generators * args.batches
    return events / elapsed, cpu * 1000 / events * 1000, backend_cpu * 1000 / batches


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tracking_ingest", description=__doc__
    )
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve", "generate"])
    parser.add_argument("--postgres", default=os.environ.get("POSTWISE_BENCH_POSTGRES_URL", ""))
    parser.add_argument("--batches", type=int, default=150, help="Batches per generator per round.")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8, help="Per generator.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--target", default="")
    parser.add_argument("--key", default="")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve(args.postgres, args.port)
        return
    if args.mode == "generate":
        generate(args.target, args.key, args.batches, args.batch_size, args.connections, args.seed)
        return
    if not args.postgres:
        print("\n(tracking ingest skipped: set POSTWISE_BENCH_POSTGRES_URL to a database to wipe)")
        return
    print("\n== /v1/batch ingestion (PostgreSQL, one uvicorn process) ==", flush=True)
    key = _prepare(args.postgres)
    port = _free_port()
    env = {**os.environ, "POSTWISE_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.tracking_ingest", "serve", "--postgres", args.postgres,
         "--port", str(port)],
        env=env,
    )  # fmt: skip
    try:
        _wait_for(port, server)
        base = f"http://127.0.0.1:{port}"
        bare: list[float] = []
        ingest: list[float] = []
        bare_cpu: list[float] = []
        ingest_cpu: list[float] = []
        database_cpu: list[float] = []
        loads: list[float] = []
        for n in range(args.rounds):
            rate, cpu, _ = _round(base + BARE_PATH, key, args, 2 * n, server.pid)
            bare.append(rate)
            bare_cpu.append(cpu)
            rate, cpu, backend = _round(base + INGEST_PATH, key, args, 2 * n + 1, server.pid)
            ingest.append(rate)
            ingest_cpu.append(cpu)
            database_cpu.append(backend)
            loads.append(os.getloadavg()[0])
    finally:
        server.terminate()
        server.wait(30)
    sent = args.rounds * args.generators * args.batches * args.batch_size
    stored = _stored_events(args.postgres)
    best_bare, best_ingest = max(bare), max(ingest)
    print(
        f"  {args.generators} generators x {args.connections} connections, "
        f"{args.batch_size} events per batch, {os.cpu_count()} CPUs (shared by server, "
        "generators and PostgreSQL)"
    )
    print(f"  bare JSON endpoint : {best_bare:>9,.0f} events/s  (rounds: "
          f"{', '.join(f'{r:,.0f}' for r in bare)})")  # fmt: skip
    print(f"  /v1/batch ingest   : {best_ingest:>9,.0f} events/s  (rounds: "
          f"{', '.join(f'{r:,.0f}' for r in ingest)})")  # fmt: skip
    print(f"  ratio ingest/bare  : {best_ingest / best_bare:.2f}")
    print(f"  server CPU per 1,000 events: bare {min(bare_cpu):.1f} ms, ingest "
          f"{min(ingest_cpu):.1f} ms (best round; ingest/bare "
          f"{min(ingest_cpu) / min(bare_cpu):.1f}x); load average per round: "
          f"{', '.join(f'{x:.1f}' for x in loads)}")  # fmt: skip
    print(f"  PostgreSQL backends' CPU per {args.batch_size}-event batch: "
          f"{min(database_cpu):.2f} ms (best round; rounds: "
          f"{', '.join(f'{x:.2f}' for x in database_cpu)})")  # fmt: skip
    print(f"  stored {stored:,} of {sent:,} events sent")
    print(
        f"  target: >= {TARGET_EVENTS_PER_SECOND:,} events/s -> {best_ingest:,.0f}; "
        f">= {TARGET_RATIO:.0%} of bare -> {best_ingest / best_bare:.0%}"
    )


if __name__ == "__main__":
    main()
