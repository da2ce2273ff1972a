"""Segment counts and real-time re-evaluation on PostgreSQL: ``python -m benchmarks segments``.

Needs a PostgreSQL database it may wipe (``--postgres`` or ``POSTWISE_BENCH_POSTGRES_URL``).

1. **Data** (``segment_data``): ``--contacts`` contacts, ``--companies`` companies and
   ``--events`` events built inside PostgreSQL, then ``VACUUM ANALYZE``. A database that
   already holds the same scale is reused (``--regenerate`` forces a new one); the load
   time printed is then the stored one.
2. **Full counts**: for each shipped playbook segment, ``SELECT count(*)`` over
   ``compile_members(...)`` beside a hand-written query for the same segment
   (``segment_playbooks``), in the same run, alternating, best of ``--repeat`` after a
   warm-up. The two counts must be equal (the run fails otherwise): an independent check
   of the compiler. Targets (issue 4): compiled <= 1.3x hand-written, every count < 2 s.
3. **Real-time**: the playbooks are saved as segments; for ``--incremental`` incoming
   events (name and contact drawn from stored events, so busy contacts and common names
   come up as often as they do in the data) one event is inserted and
   ``membership.reevaluate`` runs for its contact, which re-evaluates only the segments
   whose definitions name the event; each is rolled back. p50 and p99 of the
   re-evaluation alone, over all events and over those that touched a segment. Target:
   p99 < 5 ms. The stored membership is empty, so a matching contact *enters* (a stay
   and a ``segment.entered`` event are written) inside the measured time. A few
   unmeasured decisions per event name (other contacts) come first, as a long-running
   worker has made them: a process's first decision for a set of segments builds and
   compiles its statement (printed apart).

Figures are for one machine at one moment: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, func, insert, select, text
from sqlalchemy.orm import Session

from benchmarks.segment_data import Dataset, Scale, ensure
from benchmarks.segment_playbooks import Playbook, load
from postwise.segments import changes, membership, playbooks
from postwise.segments.compiler import compile_members
from postwise.segments.definition import parse_definition
from postwise.storage import tenancy
from postwise.storage.database import Database
from postwise.storage.tables import Event

TARGET_RATIO = 1.3
TARGET_SECONDS = 2.0
TARGET_P99_MS = 5.0
# unmeasured decisions per event name first: psycopg prepares a statement on its 5th use,
# and PostgreSQL plans a prepared one 5 times before it may keep a generic plan
WARM_UPS = 10
WARM_UP_SAMPLE = 3000  # events drawn to find them (rare names included)
STATEMENT_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class CountResult:
    key: str
    title: str
    hand_count: int
    compiled_count: int
    hand_ms: float
    compiled_ms: float
    compiled_jit_ms: float  # JIT compilation inside one run of the compiled query

    @property
    def equal(self) -> bool:
        return self.hand_count == self.compiled_count

    @property
    def ratio(self) -> float:
        return self.compiled_ms / self.hand_ms if self.hand_ms else float("inf")


@dataclass(frozen=True)
class IncrementalResult:
    events: int
    touching: int  # events whose name some segment references
    p50_ms: float
    p99_ms: float
    touching_p50_ms: float
    touching_p99_ms: float
    max_ms: float
    sql_share: float  # of the re-evaluation time, the part spent executing SQL
    statements: float  # SQL statements per re-evaluation, mean
    select1_p50_ms: float  # a bare ``SELECT 1`` round trip on the same machine, same moment
    select1_p99_ms: float
    cpu_ms: float = 0.0  # this process's CPU per re-evaluation, mean (less load-sensitive)
    server_cpu_ms: float | None = None  # the PostgreSQL backend's CPU per event (local only)
    warm_ups: tuple[float, ...] = ()  # unmeasured decisions before the timed ones (``_warm_up``)


def compiled_count_sql(book: Playbook, dataset: Dataset) -> Any:
    defn = parse_definition(book.definition)
    members = compile_members(defn, workspace_id=dataset.workspace_id, now=dataset.now)
    return select(func.count()).select_from(members.subquery())


def _timed(run: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    value = run()
    return value, (time.perf_counter() - started) * 1000


def measure_counts(
    db: Database, dataset: Dataset, *, repeat: int = 3, only: set[str] | None = None
) -> list[CountResult]:
    """Both queries of each playbook, alternately: a warm-up, then the best of ``repeat``."""
    params = {"ws": dataset.workspace_id, "now": dataset.now}
    out = []
    with db.engine.connect() as conn:
        conn.execute(text(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        conn.execute(text("SET jit = off"))  # as a refresh and a preview run them
        conn.commit()  # session settings outlive the rollbacks below
        for book in load():
            if only and book.key not in only:
                continue
            compiled = compiled_count_sql(book, dataset)
            hand = text(book.hand_sql)

            def run_hand(c: Connection = conn, q: Any = hand) -> int:
                return int(c.execute(q, params).scalar_one())

            def run_compiled(c: Connection = conn, q: Any = compiled) -> int:
                return int(c.execute(q).scalar_one())

            hand_times, compiled_times = [], []
            hand_count = compiled_count = -1
            for _ in range(repeat + 1):  # the first round warms the cache
                hand_count, ms = _timed(run_hand)
                hand_times.append(ms)
                compiled_count, ms = _timed(run_compiled)
                compiled_times.append(ms)
            out.append(
                CountResult(
                    book.key,
                    book.title,
                    hand_count,
                    compiled_count,
                    min(hand_times[1:] or hand_times),
                    min(compiled_times[1:] or compiled_times),
                    _jit_ms(conn, compiled),
                )
            )
            conn.rollback()
    return out


def _jit_ms(conn: Connection, statement: Any) -> float:
    """Milliseconds PostgreSQL spends JIT-compiling ``statement`` with JIT on (0 when
    it would not)."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    conn.execute(text("SET LOCAL jit = on"))
    plan = conn.exec_driver_sql(
        f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}", compiled.params
    ).scalar_one()
    doc = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
    return float(doc.get("JIT", {}).get("Timing", {}).get("Total", 0.0))


def _seed_segments(db: Database, workspace_id: int) -> None:
    """The shipped playbooks as the workspace's only segments (a reused database may hold
    older versions of them); no membership is computed."""
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM segments WHERE workspace_id = :ws"), {"ws": workspace_id})
    with db.tenant(workspace_id) as session:
        playbooks.seed(session, refresh=False)


def _sample_events(conn: Connection, dataset: Dataset, n: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    ids = [rng.randrange(1, dataset.scale.events + 1) for _ in range(n * 2)]
    rows = list(
        conn.execute(
            text(
                "SELECT id, contact_id, type, name, properties FROM events "
                "WHERE workspace_id = :ws AND id = ANY(:ids) AND contact_id IS NOT NULL"
            ),
            {"ws": dataset.workspace_id, "ids": ids},
        )
    )
    rng.shuffle(rows)
    return rows[:n]


class _SqlClock:
    """Time spent in ``cursor.execute`` on an engine, and how many statements ran."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.seconds = 0.0
        self.statements = 0
        # sums over the run (``seconds``/``statements`` are per event) and CPU
        self.total_seconds = 0.0
        self.total_statements = 0
        self.cpu_seconds = 0.0
        self.server_cpu = 0.0
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.seconds += time.perf_counter() - self._started
        self.statements += 1

    def reset(self) -> None:
        self.seconds, self.statements = 0.0, 0

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def measure_incremental(
    db: Database, dataset: Dataset, *, events: int = 2000, seed: int = 7
) -> IncrementalResult:
    """Insert one event and re-evaluate its contact, per sampled event, each committed as
    a worker's job is; what they wrote is deleted afterwards.

    Committed, not rolled back: psycopg prepares a statement on its 5th use on a
    connection but forgets what a rolled-back transaction (or savepoint) prepared, so
    rolling back every event measured planning on every statement, which a worker's
    committed jobs do not pay."""
    _seed_segments(db, dataset.workspace_id)
    with db.engine.connect() as conn:
        sample = _sample_events(conn, dataset, events, seed)
        measured = {int(row.contact_id) for row in sample}
        spare = [
            row
            for row in _sample_events(conn, dataset, WARM_UP_SAMPLE, seed + 1)
            if int(row.contact_id) not in measured
        ]
    select1 = _round_trips(db, events)
    all_ms: list[float] = []
    touching_ms: list[float] = []
    clock = _SqlClock(db.engine)
    with db.engine.connect() as conn:
        backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        last_event = conn.execute(
            text("SELECT coalesce(max(id), 0) FROM events WHERE workspace_id = :ws"),
            {"ws": dataset.workspace_id},
        ).scalar_one()
        conn.commit()
        try:
            warm = _warm_up(conn, dataset, spare)
            _measure_each(conn, dataset, sample, backend, clock, all_ms, touching_ms, db)
        finally:
            _clean_up(conn, dataset.workspace_id, last_event)
    clock.close()
    return IncrementalResult(
        len(all_ms),
        len(touching_ms),
        _pct(all_ms, 50),
        _pct(all_ms, 99),
        _pct(touching_ms, 50),
        _pct(touching_ms, 99),
        max(all_ms, default=0.0),
        clock.total_seconds * 1000 / sum(all_ms) if all_ms else 0.0,
        clock.total_statements / len(all_ms) if all_ms else 0.0,
        _pct(select1, 50),
        _pct(select1, 99),
        clock.cpu_seconds * 1000 / len(all_ms) if all_ms else 0.0,
        clock.server_cpu * 1000 / len(all_ms) if all_ms and _process_cpu(backend) else None,
        tuple(warm),
    )


def _clean_up(conn: Connection, workspace_id: int, last_event: int) -> None:
    """Take out what the measured events wrote: the events, stays and counts."""
    conn.rollback()
    params = {"ws": workspace_id, "last": last_event}
    conn.execute(text("DELETE FROM events WHERE workspace_id = :ws AND id > :last"), params)
    conn.execute(text("DELETE FROM segment_memberships WHERE workspace_id = :ws"), params)
    conn.execute(text("UPDATE segments SET member_count = 0 WHERE workspace_id = :ws"), params)
    conn.commit()


def _measure_each(
    conn: Connection,
    dataset: Dataset,
    sample: list[Any],
    backend: int,
    clock: _SqlClock,
    all_ms: list[float],
    touching_ms: list[float],
    db: Database,
) -> None:
    """The timed loop of ``measure_incremental``; sums go into ``clock``."""
    for row in sample:
        ms = _decide(conn, dataset, row, clock, backend)
        all_ms.append(ms)
        if _touches(db, dataset, row.name):
            touching_ms.append(ms)


def _decide(
    conn: Connection,
    dataset: Dataset,
    row: Any,
    clock: _SqlClock | None = None,
    backend: int = 0,
) -> float:
    """Insert ``row`` as a new event, re-evaluate its contact and commit, as a worker's
    job does; the milliseconds of the re-evaluation alone, whose statements and CPU
    (this process's and the backend's) are added to ``clock``."""
    transaction = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint")
    tenancy.bind(session, dataset.workspace_id)
    try:
        session.execute(
            insert(Event).values(
                workspace_id=dataset.workspace_id,
                contact_id=row.contact_id,
                type=row.type,
                name=row.name,
                properties=row.properties,
                context={},
                occurred_at=dataset.now,
                received_at=dataset.now,
            )
        )
        if clock is not None:
            clock.reset()
        server_started = _process_cpu(backend) if clock is not None else 0.0
        started, cpu_started = time.perf_counter(), time.process_time()
        membership.reevaluate(
            session, {int(row.contact_id): {f"event:{row.name}"}}, now=dataset.now
        )
        ms = (time.perf_counter() - started) * 1000
        if clock is not None:
            clock.cpu_seconds += time.process_time() - cpu_started
            clock.server_cpu += _process_cpu(backend) - server_started
            clock.total_seconds += clock.seconds
            clock.total_statements += clock.statements
        # The segment.entered notes would queue workflow routing jobs: not
        # what is measured here, and nothing to leave behind.
        changes.discard(session)
        session.commit()
        transaction.commit()
    finally:
        session.close()
        if transaction.is_active:
            transaction.rollback()
    return ms


def _warm_up(conn: Connection, dataset: Dataset, sample: list[Any]) -> list[float]:
    """``WARM_UPS`` unmeasured decisions per event name (other events than the measured
    ones, so their pages are not warmed): what a long-running worker paid once, when it
    first met each set of segments. The first decision of a set builds its merged
    references, its statement and SQLAlchemy's compiled form (5-16 ms, measured on the
    1M/20M data); psycopg prepares a statement on its 5th use and PostgreSQL plans it
    5 more times before it may keep a generic plan. Their milliseconds are
    returned, to be printed apart."""
    by_name: dict[str, int] = {}
    out = []
    for row in sample:
        if by_name.get(row.name, 0) >= WARM_UPS:
            continue
        by_name[row.name] = by_name.get(row.name, 0) + 1
        out.append(_decide(conn, dataset, row))
    return out


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local process so far; 0 when it is not local
    (the database on another machine) or /proc is missing. Clock ticks: 10 ms."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round_trips(db: Database, n: int) -> list[float]:
    """``SELECT 1`` latencies: the floor under any per-event figure on this machine now."""
    out = []
    with db.engine.connect() as conn:
        for _ in range(max(n, 1)):
            started = time.perf_counter()
            conn.exec_driver_sql("SELECT 1").scalar()
            out.append((time.perf_counter() - started) * 1000)
    return out


_TRIGGERS: dict[str, bool] = {}


def _touches(db: Database, dataset: Dataset, name: str) -> bool:
    """Does any saved playbook segment name this event? (cached per name)"""
    if name not in _TRIGGERS:
        from postwise.segments import catalog

        with db.tenant(dataset.workspace_id) as session:
            key = f"event:{name}"
            _TRIGGERS[name] = any(s.triggered_by({key}) for s in catalog.load(session))
    return _TRIGGERS[name]


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def print_counts(results: list[CountResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Playbook segments: full count, compiled vs hand-written SQL")
    for header in ("segment", "members", "equal", "hand-written ms", "compiled ms", "ratio",
                   f"<= {TARGET_RATIO}x", f"< {TARGET_SECONDS:.0f} s", "JIT ms"):  # fmt: skip
        table.add_column(header, justify="left" if header == "segment" else "right")
    for r in results:
        table.add_row(
            r.title,
            f"{r.compiled_count:,}" if r.equal else f"{r.compiled_count:,} vs {r.hand_count:,}",
            "yes" if r.equal else "NO",
            f"{r.hand_ms:,.1f}",
            f"{r.compiled_ms:,.1f}",
            f"{r.ratio:.2f}",
            "yes" if r.ratio <= TARGET_RATIO else "no",
            "yes" if r.compiled_ms < TARGET_SECONDS * 1000 else "no",
            f"{r.compiled_jit_ms:,.0f}",
        )
    Console(width=150).print(table)
    print(
        "Both queries run with jit = off, as refresh and preview run the compiled one; "
        "JIT ms: what JIT compilation would add to one run of the compiled query with "
        "PostgreSQL's default jit = on (EXPLAIN ANALYZE)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks segments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--companies", type=int, default=None, help="default: contacts / 50")
    parser.add_argument("--regenerate", action="store_true", help="build the data set anew")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per query (best kept)")
    parser.add_argument("--incremental", type=int, default=2000, help="incoming events to time")
    parser.add_argument("--only", default="", help="comma-separated playbook keys")
    parser.add_argument(
        "--postgres", default=os.environ.get("POSTWISE_BENCH_POSTGRES_URL", ""),
        help="A PostgreSQL URL whose database may be wiped (POSTWISE_BENCH_POSTGRES_URL).",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.postgres:
        print("(segments skipped: set POSTWISE_BENCH_POSTGRES_URL to a database to wipe)")
        return
    import logging

    logging.disable(logging.WARNING)
    scale = Scale(args.contacts, args.companies or max(args.contacts // 50, 1), args.events)
    db = Database(args.postgres)
    try:
        print(f"{load_average()} (before)", flush=True)
        dataset = ensure(db, scale, regenerate=args.regenerate)
        how = "generated now" if dataset.load_seconds is not None else "reused; load time of then"
        print(
            f"data: {scale.contacts:,} contacts, {scale.companies:,} companies, "
            f"{scale.events:,} events; loaded in {dataset.stored_load_seconds:,.0f} s ({how}); "
            f"segments evaluated at {dataset.now.isoformat()}",
            flush=True,
        )
        only = {k for k in args.only.split(",") if k} or None
        results = measure_counts(db, dataset, repeat=args.repeat, only=only)
        print_counts(results)
        print(f"{load_average()} (after the counts)", flush=True)
        if args.incremental:
            inc = measure_incremental(db, dataset, events=args.incremental)
            print(
                f"real-time re-evaluation per incoming event ({inc.events:,} events): "
                f"p50 {inc.p50_ms:.2f} ms, p99 {inc.p99_ms:.2f} ms (max {inc.max_ms:.1f}); "
                f"events some segment names ({inc.touching:,}): p50 "
                f"{inc.touching_p50_ms:.2f} ms, p99 {inc.touching_p99_ms:.2f} ms "
                f"(target p99 < {TARGET_P99_MS:.0f} ms); {inc.statements:.1f} SQL statements "
                f"per event, {100 * inc.sql_share:.0f} % of the time in SQL, the rest in Python; "
                f"{inc.cpu_ms:.2f} ms of this process's CPU per event"
                + (
                    f" and {inc.server_cpu_ms:.2f} ms of the PostgreSQL backend's; "
                    if inc.server_cpu_ms is not None
                    else "; "
                )
                + f"a bare SELECT 1 round trip meanwhile: p50 {inc.select1_p50_ms:.2f} ms, "
                f"p99 {inc.select1_p99_ms:.2f} ms"
            )
            if inc.warm_ups:
                print(
                    f"before the timed events, {len(inc.warm_ups)} unmeasured warm-up "
                    f"decisions ({WARM_UPS} per event name, other contacts), as a worker "
                    "pays once per process: its first decision for a set of segments "
                    "builds and compiles its statement, psycopg prepares it on the 5th use, "
                    "PostgreSQL may keep a generic plan after 5 more; "
                    f"they took p50 {_pct(list(inc.warm_ups), 50):.2f} ms, "
                    f"max {max(inc.warm_ups):.1f} ms"
                )
            print(f"{load_average()} (after)", flush=True)
    finally:
        db.dispose()
    wrong = [r.key for r in results if not r.equal]
    if wrong:
        raise SystemExit(f"compiled and hand-written counts differ for: {', '.join(wrong)}")


if __name__ == "__main__":
    main()
