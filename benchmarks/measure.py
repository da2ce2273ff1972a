"""One measurement in a fresh process, printed as one JSON line (``python -m benchmarks``
starts it), so that peak RSS (``ru_maxrss``) belongs to that measurement alone.

Kinds:

``import``    the CSV importer on the whole file, then the same file again (a re-import);
``orm``       baseline: the first ``--rows`` rows through ``contacts.actions.upsert_contacts``
              (the ORM path behind the API), in batches of ``import_batch_size``, CSV
              parsing included;
``raw``       baseline: the rows straight into ``contacts`` — ``COPY`` on PostgreSQL,
              ``executemany`` on SQLite — with no validation, upsert, audit or companies:
              how fast this machine can store the rows at all;
``bulk_api``  ``POST /api/contacts/bulk`` with 1,000 contacts per call, in process
              (Starlette's TestClient: the HTTP stack without a network).

The database at ``--url`` is emptied first (SQLite: the file is replaced).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import insert, text

from postwise.contacts import actions
from postwise.contacts.attributes import define_attribute
from postwise.contacts.importer import ImportOptions, import_contacts
from postwise.core.settings import get_settings
from postwise.storage import migrate
from postwise.storage.database import Database
from postwise.storage.tables import Contact
from postwise.workspaces.actions import create_workspace

ATTRIBUTES = {"seats": "number", "plan": "string"}
T = TypeVar("T")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads): the client's cost, which a
    busy machine changes much less than it changes wall-clock rates."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ServerCPU:
    """CPU of the PostgreSQL backends behind an engine's connections, from ``/proc``
    (the server runs on this machine): the database's share of a figure, which the
    load changes much less than wall-clock rates. Each backend is read when its
    connection is opened and again just before it closes, or when asked.
    Background processes (WAL writer, checkpointer, autovacuum) are not counted."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        event.listen(engine, "connect", self._opened)
        event.listen(engine, "close", self._closing)
        event.listen(engine, "invalidate", self._invalidating)

    @staticmethod
    def _pid(dbapi_connection: Any) -> int:
        return int(dbapi_connection.info.backend_pid)

    def _read(self, pid: int) -> float | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _opened(self, dbapi_connection: Any, _record: Any) -> None:
        pid = self._pid(dbapi_connection)
        value = self._read(pid)
        if value is not None:
            self.start[pid] = self.last[pid] = value

    def _closing(self, dbapi_connection: Any, _record: Any) -> None:
        self._update(self._pid(dbapi_connection))

    def _invalidating(self, dbapi_connection: Any, _record: Any, _exc: Any) -> None:
        if dbapi_connection is not None:
            self._update(self._pid(dbapi_connection))

    def _update(self, pid: int) -> None:
        if pid in self.start:
            value = self._read(pid)
            if value is not None:
                self.last[pid] = value

    def seconds(self) -> float:
        """CPU seconds used so far by every backend seen."""
        for pid in list(self.start):
            self._update(pid)
        return sum(self.last[pid] - self.start[pid] for pid in self.start)


def load() -> float:
    return os.getloadavg()[0]


def fresh_database(url: str) -> Database:
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = Database(url)
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(db)
    return db


def workspace(db: Database) -> int:
    with db.system() as session:
        workspace_id = create_workspace(session, "Benchmark").workspace_id
    with db.tenant(workspace_id) as session:
        for name, kind in ATTRIBUTES.items():
            define_attribute(session, "contact", name, kind)
    return workspace_id


def records(path: Path, limit: int | None = None) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        yield from islice(csv.DictReader(handle), limit)


def as_api_row(record: dict[str, str]) -> dict[str, Any]:
    """A CSV record as the API takes a contact (company columns have no place there)."""
    row: dict[str, Any] = {
        k: v
        for k, v in record.items()
        if v and not k.startswith("company.") and k not in ATTRIBUTES
    }
    row["attributes"] = {k: record[k] for k in ATTRIBUTES if record[k]}
    return row


def batches(rows: Iterator[T], size: int) -> Iterator[list[T]]:
    while batch := list(islice(rows, size)):
        yield batch


def measure_import(db: Database, path: Path, with_list: bool) -> dict[str, Any]:
    ws = workspace(db)
    rss_ready = peak_rss_mib()
    options = ImportOptions(list_name="Benchmark" if with_list else None)
    db.engine.dispose()  # every connection from here on is a new one, seen by ServerCPU
    server = ServerCPU(db.engine) if db.dialect == "postgresql" else None
    load_before, cpu = load(), cpu_seconds()
    first = import_contacts(db.engine, ws, path, options)
    cpu_first = cpu_seconds() - cpu
    server_first = server.seconds() if server else 0.0
    rss_first = peak_rss_mib()
    second = import_contacts(db.engine, ws, path, options)
    return {
        "client_cpu_us_per_row": 1e6 * cpu_first / max(first.rows, 1),
        "server_cpu_us_per_row": 1e6 * server_first / max(first.rows, 1),
        "load": [load_before, load()],
        "rows": first.rows,
        "created": first.created,
        "rejected": first.rejected,
        "seconds": first.seconds,
        "rows_per_second": first.rows_per_second,
        "reimport_unchanged": second.unchanged,
        "reimport_rows_per_second": second.rows_per_second,
        "rss_ready_mib": rss_ready,
        "peak_rss_mib": rss_first,
        "peak_rss_after_reimport_mib": peak_rss_mib(),
    }


def measure_orm(db: Database, path: Path, rows: int) -> dict[str, Any]:
    ws = workspace(db)
    size = get_settings().import_batch_size
    started = time.perf_counter()
    done = 0
    for batch in batches((as_api_row(r) for r in records(path, rows)), size):
        with db.tenant(ws) as session:
            done += len(actions.upsert_contacts(session, batch, source="import"))
    seconds = time.perf_counter() - started
    return {"rows": done, "seconds": seconds, "rows_per_second": done / seconds}


def measure_raw(db: Database, path: Path, rows: int | None) -> dict[str, Any]:
    ws = workspace(db)
    now = datetime.now(UTC)
    columns = ("workspace_id", "email", "email_domain", "first_name", "last_name", "job_title",
               "country", "status", "attributes", "created_at", "updated_at")  # fmt: skip

    def values(record: dict[str, str]) -> tuple[Any, ...]:
        attributes = {"seats": int(record["seats"]), "plan": record["plan"]}
        return (ws, record["email"], record["email"].split("@")[1], record["first_name"],
                record["last_name"], record["job_title"], record["country"], "subscribed",
                attributes, now, now)  # fmt: skip

    db.engine.dispose()
    server = ServerCPU(db.engine) if db.dialect == "postgresql" else None
    load_before, cpu = load(), cpu_seconds()
    started = time.perf_counter()
    done = 0
    for batch in batches((values(r) for r in records(path, rows)), 2000):
        if db.dialect == "postgresql":
            with db.engine.begin() as conn:
                driver: Any = conn.connection.driver_connection
                with (
                    driver.cursor() as cursor,
                    cursor.copy(f"COPY contacts ({', '.join(columns)}) FROM STDIN") as copy,
                ):
                    for row in batch:
                        copy.write_row((*row[:8], json.dumps(row[8]), *row[9:]))
        else:
            with db.engine.begin() as conn:
                conn.execute(
                    insert(Contact), [dict(zip(columns, row, strict=True)) for row in batch]
                )
        done += len(batch)
    seconds = time.perf_counter() - started
    return {
        "rows": done,
        "seconds": seconds,
        "rows_per_second": done / seconds,
        "client_cpu_us_per_row": 1e6 * (cpu_seconds() - cpu) / max(done, 1),
        "server_cpu_us_per_row": 1e6 * (server.seconds() if server else 0.0) / max(done, 1),
        "load": [load_before, load()],
    }


def measure_bulk_api(db: Database, path: Path, rows: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from postwise.api.app import create_app
    from postwise.core.settings import Settings

    with db.system() as session:
        created = create_workspace(session, "Benchmark")
    with db.tenant(created.workspace_id) as session:
        for name, kind in ATTRIBUTES.items():
            define_attribute(session, "contact", name, kind)
    app = create_app(Settings(database_url=db.url, log_level="WARNING"), db)
    client = TestClient(app, headers={"Authorization": f"Bearer {created.api_key}"})
    started = time.perf_counter()
    done = 0
    for batch in batches((as_api_row(r) for r in records(path, rows)), 1000):
        response = client.post("/api/contacts/bulk", json={"contacts": batch})
        response.raise_for_status()
        done += len(batch)
    seconds = time.perf_counter() - started
    client.close()
    return {"rows": done, "seconds": seconds, "rows_per_second": done / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("import", "orm", "raw", "bulk_api"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--list", action="store_true", help="import: subscribe to a list")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    db = fresh_database(args.url)
    try:
        if args.kind == "import":
            result = measure_import(db, args.file, args.list)
        elif args.kind == "orm":
            result = measure_orm(db, args.file, args.rows or 20_000)
        elif args.kind == "raw":
            result = measure_raw(db, args.file, args.rows)
        else:
            result = measure_bulk_api(db, args.file, args.rows or 20_000)
    finally:
        db.dispose()
    result["backend"] = db.dialect
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
