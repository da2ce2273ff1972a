"""``postwise serve`` and ``postwise run``: how the platform starts.

``serve`` is the production shape: the API alone, against a database an operator has
migrated on purpose (workers run as their own processes). ``run`` is the embedded
shape behind ``make run``: it migrates, optionally loads demo data, and runs the API,
the background worker and the mail capture server in one process, so a laptop needs
nothing else and no mail leaves it.

Both bind the API socket themselves before anything starts, so a taken port is one
clear error, and port 0 (any free port) works and is reported.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
from contextlib import ExitStack
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

import structlog
import typer
import uvicorn
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from postwise.cli.context import console, err_console, fail, open_database, user_errors
from postwise.core.settings import Settings, get_settings
from postwise.storage import migrate
from postwise.storage.database import Database

if TYPE_CHECKING:
    from fastapi import FastAPI

    from postwise.bounces.inbound import InboundServer
    from postwise.jobs.runner import Worker

WORKER_STOP_SECONDS = 30
log = structlog.get_logger(__name__)


def _reason(exc: OSError) -> str:
    """The OS's short reason; asyncio wraps it in a long sentence of its own."""
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc.strerror or exc)  # getaddrinfo errors have negative codes


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        fail(
            f"cannot listen for HTTP on {host}:{port} ({_reason(exc)}); "
            "pick another address with POSTWISE_API_HOST / POSTWISE_API_PORT"
        )


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _safe_url(db: Database) -> str:
    return make_url(db.url).render_as_string(hide_password=True)


def _check_schema(db: Database) -> None:
    """Refuse to serve a schema this code was not written for; migrating is a deliberate act."""
    try:
        current, head = migrate.current_revision(db), migrate.head_revision(db)
    except SQLAlchemyError as exc:
        fail(f"cannot reach the database at {_safe_url(db)}: {type(exc).__name__}")
    if current != head:
        fail(
            f"the database at {_safe_url(db)} is at revision {current or 'none (empty)'}, "
            f"this version of Postwise needs {head}: run `postwise db upgrade` first"
        )


def settle_gc() -> None:
    """Tune the cyclic garbage collector for serving, once everything is imported.

    ``gc.freeze`` moves the ~200,000 objects of the loaded code (FastAPI, SQLAlchemy,
    Pydantic models) out of the collector's sight, so a full collection no longer walks
    them; a young generation of 10,000 allocations instead of 700 makes collections rarer
    while each still only walks what is alive. A 100-event ``/v1/batch`` allocates about
    a thousand containers: with the defaults the collector took some 0.4 ms of CPU per
    batch (docs/tracking.md). Memory is still freed by reference counting as before.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _serve_api(app: FastAPI, sock: socket.socket) -> None:
    """Run uvicorn on ``sock`` until SIGINT or SIGTERM, then return normally.

    uvicorn re-raises the signal it caught once it has shut down; with the default
    handlers that would kill the process (SIGTERM) or raise KeyboardInterrupt
    (SIGINT) before the caller could stop its other parts. The handlers installed
    here, and restored by uvicorn before it re-raises, only ask the server to exit.
    """
    config = uvicorn.Config(app, log_config=None, access_log=False, server_header=False)
    server = uvicorn.Server(config)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    settle_gc()
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def serve(
    host: str | None = typer.Option(None, help="Address to bind (default POSTWISE_API_HOST)."),
    port: int | None = typer.Option(None, help="Port to bind (default POSTWISE_API_PORT)."),
) -> None:
    """Serve the API (production): needs a migrated database; run workers separately."""
    from postwise.api.app import create_app

    settings = get_settings()
    db = open_database()
    _check_schema(db)
    if db.dialect == "sqlite":
        err_console.print(
            "[yellow]note:[/] serving from SQLite; `postwise run` also starts the worker "
            "and mail capture, and production belongs on PostgreSQL"
        )
    bind_host = host or settings.api_host
    sock = _listen(bind_host, settings.api_port if port is None else port)
    log.info("api listening", host=bind_host, port=sock.getsockname()[1], pid=os.getpid())
    try:
        _serve_api(create_app(settings, db), sock)
    finally:
        db.dispose()


@dataclass(frozen=True)
class DemoAccess:
    workspace_id: int
    name: str
    api_key: str
    write_key: str
    fresh_keys: bool  # True when keys were issued for this start, not at loading


def _demo_access(db: Database) -> DemoAccess:
    """Load the demo once; on later starts issue new keys, since stored keys are hashed."""
    from postwise.demo import loader
    from postwise.segments import playbooks
    from postwise.workspaces import actions
    from postwise.workspaces.scopes import Scope

    existing = loader.find_demo_workspace(db)
    if existing is None:
        console.print("loading demo data (first start only) ...")
        result = loader.load_demo(db)
        console.print(
            ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in result.counts.items())
        )
        with db.tenant(result.workspace_id) as session:
            # The playbook segments, filled by the worker's first refresh jobs.
            playbooks.seed(session)
        return DemoAccess(result.workspace_id, result.name, result.api_key, result.write_key, False)
    with db.system() as session:
        admin = actions.create_api_key(
            session, existing.workspace_id, [Scope.ADMIN.value], name="postwise run (restart)"
        )
        write = actions.create_api_key(
            session,
            existing.workspace_id,
            [Scope.TRACK.value],
            name="postwise run (restart)",
            kind="write",
        )
    return DemoAccess(existing.workspace_id, existing.name, admin.key, write.key, True)


def _panel(
    settings: Settings,
    db: Database,
    api: str,
    smtp: str,
    demo: DemoAccess | None,
    inbound: InboundServer | None = None,
) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(no_wrap=True, overflow="ignore")
    grid.add_row("API", api)
    grid.add_row("API docs", f"{api}/docs")
    grid.add_row("Mail capture", f"smtp://{smtp}  (nothing leaves this machine)")
    grid.add_row("Captured mail", f"{api}/api/captured-messages")
    if settings.delivery_transport == "capture":
        grid.add_row(
            "Outbox mail", f"{api}/api/outbox/captured  ({settings.resolved_capture_dir()})"
        )
    else:
        grid.add_row("Outbox mail", f"sent through {settings.delivery_transport}")
    if inbound is not None:
        grid.add_row(
            "Bounces (SMTP)",
            f"smtp://{inbound.host}:{inbound.port}  (for {settings.delivery_bounce_domain})",
        )
    grid.add_row("Database", _safe_url(db))
    if demo is not None:
        grid.add_row("", "")
        grid.add_row("Demo workspace", f"{demo.workspace_id} ({demo.name})")
        grid.add_row("Admin API key", demo.api_key)
        grid.add_row("Tracking write key", demo.write_key)
        if demo.fresh_keys:
            grid.add_row("", "[dim]issued for this start (stored keys are hashed and cannot be")
            grid.add_row("", "[dim]shown again); keys from earlier starts keep working[/]")
    else:
        grid.add_row("", "")
        grid.add_row("Next", "postwise workspace create NAME  (or restart with --demo)")
    grid.add_row("", "")
    grid.add_row("Stop", "Ctrl-C")
    return Panel(grid, title=f"Postwise is running ({settings.environment})", expand=False)


def _start_worker(db: Database, settings: Settings) -> Worker:
    """The tasks and daily housekeeping of ``postwise worker``, on a thread of this process."""
    from postwise.analytics import jobs as analytics_jobs
    from postwise.bounces import jobs as bounce_jobs
    from postwise.cli.worker import TASK_MODULES
    from postwise.delivery import service as delivery_service
    from postwise.jobs import builtin
    from postwise.jobs.runner import Worker
    from postwise.segments import jobs as segment_jobs
    from postwise.tracking import retention

    for name in TASK_MODULES:
        importlib.import_module(name)
    with db.system() as session:
        builtin.ensure_cleanup_scheduled(session)
        delivery_service.kick(session)  # mail left queued by the last run goes out
        retention.ensure_purge_scheduled(session)
        segment_jobs.ensure_sweep_scheduled(session)
        bounce_jobs.ensure_poll_scheduled(session, settings)
        analytics_jobs.ensure_sweep_scheduled(session)
    worker = Worker(db, settings=settings)
    worker.start_in_thread()
    return worker


def _start_inbound(db: Database, settings: Settings) -> InboundServer:
    """The bounce listener for the VERP domain (``postwise inbound``), on its own thread."""
    from postwise.bounces import intake
    from postwise.bounces.inbound import InboundServer

    server = InboundServer(
        intake.Context.from_settings(settings, db),
        settings.delivery_bounce_domain,
        settings.inbound_smtp_host,
        settings.inbound_smtp_port,
        settings.inbound_max_bytes,
    )
    try:
        server.start()
    except OSError as exc:
        fail(
            f"cannot listen for SMTP bounces on {settings.inbound_smtp_host}:"
            f"{settings.inbound_smtp_port} ({_reason(exc)}); "
            "pick another port with POSTWISE_INBOUND_SMTP_PORT"
        )
    return server


def _stop_worker(worker: Worker) -> None:
    if not worker.stop(timeout=WORKER_STOP_SECONDS):
        err_console.print(
            f"[yellow]note:[/] the worker was still busy after {WORKER_STOP_SECONDS}s; "
            "its job is retried on the next start once its lease expires"
        )


def run(
    demo: bool = typer.Option(False, "--demo", help="Load demo data on first start."),
) -> None:
    """Run everything in one process: API, worker and mail capture, migrating first."""
    from postwise.api.app import create_app
    from postwise.delivery.capture import CaptureServer

    settings = get_settings()
    db = open_database()
    try:
        migrate.upgrade(db)
    except SQLAlchemyError as exc:
        fail(f"cannot migrate the database at {_safe_url(db)}: {type(exc).__name__}")
    with user_errors():
        access = _demo_access(db) if demo else None

    with ExitStack() as running:  # stops, in reverse order, whatever did start
        running.callback(db.dispose)
        sock = _listen(settings.api_host, settings.api_port)
        running.callback(sock.close)
        capture = CaptureServer(db, settings.capture_smtp_host, settings.capture_smtp_port)
        try:
            capture.start()
        except OSError as exc:
            fail(
                f"cannot listen for SMTP on {settings.capture_smtp_host}:"
                f"{settings.capture_smtp_port} ({_reason(exc)}); "
                "pick another port with POSTWISE_CAPTURE_SMTP_PORT"
            )
        running.callback(capture.stop)
        inbound = _start_inbound(db, settings)
        running.callback(inbound.stop)
        running.callback(_stop_worker, _start_worker(db, settings))
        api = _url(settings.api_host, sock.getsockname()[1])
        smtp = _url(capture.host, capture.port).removeprefix("http://")
        console.print(_panel(settings, db, api, smtp, access, inbound))
        _serve_api(create_app(settings, db), sock)
    console.print("Postwise stopped.")
