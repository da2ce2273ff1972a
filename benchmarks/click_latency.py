"""Click redirect latency (``/c/{token}``) at a fixed request rate, beside a bare redirect.

``python -m benchmarks clicks`` (or ``python -m benchmarks.click_latency``) needs a
PostgreSQL database it may wipe (``--postgres`` or ``POSTWISE_BENCH_POSTGRES_URL``). It

* migrates the database and stores ``--messages`` sent outbox rows (one contact each,
  three links each, sent an hour ago) and signs a real click token for every link;
* starts ONE uvicorn process serving the Postwise app plus ``GET /bare/{token}``, a bare
  Starlette endpoint that answers the same 302 without looking at anything: the cost of
  the HTTP stack and middleware alone, measured in the same run;
* runs an **open-loop** load generator in another process (asyncio, raw HTTP/1.1 over
  ``--connections`` keep-alive sockets): request *i* is due at ``start + i / rate``
  whether or not earlier ones have been answered, and its latency counts from that due
  time, so a slow server shows as latency instead of as a lower request rate
  (no coordinated omission);
* alternates bare and click phases (``--rounds`` each, ``--seconds`` long) and prints
  p50/p95/p99/max latency, the achieved rate and the load average for each, and the
  ratio of the best click p99 to the best bare p99.

Figures only: nothing asserts a speed. Target (issue 3): p99 under 20 ms at 500 requests/s.
The machine's other users show in ``os.getloadavg()``, printed beside every phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.tracking_ingest import _cpu_seconds, _free_port, _wait_for

SECRET = "click-latency-benchmark-secret"
TARGET_P99_MS = 20.0
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
REQUEST = "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + USER_AGENT + "\r\n\r\n"
LINKS = ["https://shop.example/spring", "https://shop.example/pricing", "https://docs.example/a"]


# --- the server process -------------------------------------------------------------


def serve(url: str, port: int) -> None:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import RedirectResponse

    from postwise.api.app import create_app
    from postwise.api.routes.email_tracking import NO_CACHE
    from postwise.core.logging import configure_logging
    from postwise.core.settings import Settings

    async def bare(request: Request) -> RedirectResponse:
        return RedirectResponse(LINKS[0], status_code=302, headers=NO_CACHE)

    settings = Settings(database_url=url, secret_key=SECRET)
    configure_logging(settings)  # as `postwise serve` does; POSTWISE_LOG_LEVEL=WARNING
    app = create_app(settings)
    app.add_route("/bare/{token}", bare, methods=["GET"])
    from postwise.cli.runtime import settle_gc

    settle_gc()  # as `postwise serve` does
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the load generator (another process) -------------------------------------------


async def _open_loop(
    port: int, paths: list[str], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0

    async def one(path: str, due: float) -> None:
        nonlocal errors
        reader, writer = await pool.get()
        try:
            writer.write(REQUEST.format(path=path).encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
            pool.put_nowait((reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(paths[i % len(paths)], due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": total,
        "answered": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "rate": len(latencies) / elapsed,
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "max": latencies[-1] * 1000,
    }


def generate(port: int, paths_file: str, rate: float, seconds: float, connections: int) -> None:
    paths = json.loads(Path(paths_file).read_text())
    result = asyncio.run(_open_loop(port, paths, rate, seconds, connections))
    print(json.dumps(result), flush=True)


# --- the parent ---------------------------------------------------------------------


def _prepare(url: str, messages: int) -> list[str]:
    """Sent outbox rows with their link lists; the click path of each link, shuffled."""
    from sqlalchemy import insert, select, text

    from postwise.core import clock
    from postwise.storage import migrate
    from postwise.storage.database import Database
    from postwise.storage.tables import Contact, OutboxMessage
    from postwise.tracking.tokens import TokenKind, TokenSigner
    from postwise.workspaces.actions import create_workspace

    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(db)
    with db.system() as session:
        ws = create_workspace(session, "Bench").workspace_id
    now = clock.utcnow()
    sent = now - timedelta(hours=1)
    with db.engine.begin() as conn:
        emails = [f"reader{i}@corp{i % 97}.example" for i in range(messages)]
        conn.execute(
            insert(Contact),
            [
                {"workspace_id": ws, "email": e, "email_domain": e.split("@")[1],
                 "status": "subscribed", "attributes": {}, "created_at": now, "updated_at": now}
                for e in emails
            ],
        )  # fmt: skip
        ids = {r.email: r.id for r in conn.execute(select(Contact.email, Contact.id))}
        conn.execute(
            insert(OutboxMessage),
            [
                {"workspace_id": ws, "contact_id": ids[e], "email": e, "kind": "marketing",
                 "campaign_key": "spring", "status": "sent", "attempts": 1, "data": {},
                 "next_attempt_at": sent, "created_at": sent, "sent_at": sent, "links": LINKS}
                for e in emails
            ],
        )  # fmt: skip
        outbox_ids = list(conn.execute(select(OutboxMessage.id)).scalars())
    db.dispose()
    signer = TokenSigner(SECRET.encode())
    paths = [
        f"/c/{signer.sign(TokenKind.CLICK, oid, index)}"
        for oid in outbox_ids
        for index in range(len(LINKS))
    ]
    random.Random(7).shuffle(paths)
    return paths


def _phase(port: int, paths: list[str], args: argparse.Namespace, server: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(paths, handle)
    cpu = _cpu_seconds(server)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.click_latency", "generate", "--port", str(port),
             "--paths", handle.name, "--rate", str(args.rate), "--seconds", str(args.seconds),
             "--connections", str(args.connections)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(handle.name)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["server_cpu_ms"] = (_cpu_seconds(server) - cpu) * 1000 / max(1, result["answered"])
    result["load"] = os.getloadavg()[0]
    return result


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"  {name:<16} p50 {r['p50']:6.2f} ms  p95 {r['p95']:6.2f}  p99 {r['p99']:6.2f}  "
        f"max {r['max']:7.2f}  {r['rate']:5.0f} req/s  statuses {r['statuses']}  "
        f"errors {r['errors']}  server CPU {r['server_cpu_ms']:.2f} ms/req  load {r['load']:.2f}"
    )


def _stored_clicks(url: str) -> int:
    from sqlalchemy import text

    from postwise.storage.database import Database

    db = Database(url)
    with db.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM events WHERE name = 'Email Clicked'"))
        found = int(count.scalar_one())
    db.dispose()
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.click_latency", description=__doc__)
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve", "generate"])
    parser.add_argument("--postgres", default=os.environ.get("POSTWISE_BENCH_POSTGRES_URL", ""))
    parser.add_argument("--rate", type=float, default=500.0, help="Requests per second.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of each phase.")
    parser.add_argument("--rounds", type=int, default=2, help="Bare and click phases each.")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--messages", type=int, default=5000, help="Sent outbox rows.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--paths", default="")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve(args.postgres, args.port)
        return
    if args.mode == "generate":
        generate(args.port, args.paths, args.rate, args.seconds, args.connections)
        return
    if not args.postgres:
        print("\n(click latency skipped: set POSTWISE_BENCH_POSTGRES_URL to a database to wipe)")
        return
    print("\n== /c/{token} click redirect latency (PostgreSQL, one uvicorn process) ==", flush=True)
    clicks = _prepare(args.postgres, args.messages)
    bare = [p.replace("/c/", "/bare/", 1) for p in clicks]
    port = _free_port()
    env = {**os.environ, "POSTWISE_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.click_latency", "serve", "--postgres", args.postgres,
         "--port", str(port)],
        env=env,
    )  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {"bare": [], "clicks": []}
    try:
        _wait_for(port, server)
        warm = argparse.Namespace(**{**vars(args), "seconds": 1.0})
        _phase(port, clicks[-200:], warm, server.pid)
        per_phase = int(args.rate * args.seconds)
        for n in range(args.rounds):
            results["bare"].append(_phase(port, bare, args, server.pid))
            offset = (n * per_phase) % len(clicks)
            rotated = clicks[offset:] + clicks[:offset]
            results["clicks"].append(_phase(port, rotated, args, server.pid))
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"  open loop at {args.rate:.0f} requests/s for {args.seconds:.0f} s per phase, "
        f"{args.connections} keep-alive connections, {os.cpu_count()} CPUs shared by server, "
        "generator and PostgreSQL (and whatever else runs: see load)"
    )
    for name in ("bare", "clicks"):
        for n, r in enumerate(results[name]):
            print(_line(f"{'bare redirect' if name == 'bare' else '/c/ click'} #{n + 1}", r))
    best_bare = min(r["p99"] for r in results["bare"])
    best_click = min(r["p99"] for r in results["clicks"])
    print(f"  best p99: bare {best_bare:.2f} ms, click {best_click:.2f} ms, "
          f"ratio {best_click / best_bare:.1f}")  # fmt: skip
    print(f"  stored {_stored_clicks(args.postgres):,} click events (warm-up included)")
    print(f"  target: p99 < {TARGET_P99_MS:.0f} ms at {args.rate:.0f}/s -> {best_click:.2f} ms")


if __name__ == "__main__":
    main()
