"""CSV import and bulk API throughput: ``python -m benchmarks imports`` (part of ``make bench``).

For SQLite, and for PostgreSQL when ``POSTWISE_BENCH_POSTGRES_URL`` (or ``--postgres``)
names a database it may wipe, this measures, each in a fresh process (``measure.py``):

* the importer on generated files of each ``--sizes`` (default 100,000 and 1,000,000
  rows, no list), then the same file again; once more at the smallest size with every
  row subscribed to a list (consent and membership rows on top);
* two baselines run in the same invocation on the same rows: ``upsert_contacts``, the
  ORM path behind the API (on the first ``--baseline-rows``), and a raw insert of the
  rows into ``contacts`` (COPY / executemany, nothing else: the machine's ceiling);
* ``POST /api/contacts/bulk`` with 1,000 contacts per call.

Rates are printed with their ratio to the baselines, and the importer's peak RSS per
size shows whether memory grows with the file. On a shared machine wall-clock rates
swing with the load, so each figure also shows the client process's CPU per row (user +
system, all threads), on PostgreSQL the database's (its backends serving the import,
read from ``/proc``: the server must run on this machine, else it reads 0), and the load
average before>after it. Figures only: nothing here
asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.datagen import write_contacts

TARGET_ROWS_PER_SECOND = 25_000
TARGET_RSS_MIB = 250


def measure(kind: str, url: str, path: Path, *extra: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.measure", kind, "--url", url, "--file", str(path)]
    # measure.py runs each figure in a fresh process: peak RSS is then that figure's.
    env = {**os.environ, "POSTWISE_LOG_LEVEL": "WARNING"}
    done = subprocess.run([*command, *extra], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {url} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def data_file(directory: Path, rows: int) -> Path:
    path = directory / f"contacts-{rows}.csv"
    if not path.exists():
        print(f"  generating {path.name} ...", flush=True)
        write_contacts(path.with_suffix(".partial"), rows).rename(path)
    return path


def bench_backend(name: str, url: str, files: dict[int, Path], baseline_rows: int) -> None:
    smallest = min(files)
    print(f"\n== {name} ==", flush=True)
    orm = measure("orm", url, files[smallest], "--rows", str(baseline_rows))
    raw = measure("raw", url, files[smallest])
    print(
        f"  baselines: upsert_contacts (ORM path) {orm['rows_per_second']:,.0f} rows/s "
        f"on {orm['rows']:,} rows; raw insert {raw['rows_per_second']:,.0f} rows/s "
        f"on {raw['rows']:,} rows (client CPU {raw['client_cpu_us_per_row']:.1f} us/row, "
        f"database {raw['server_cpu_us_per_row']:.1f}, load {raw['load'][0]:.1f})",
        flush=True,
    )
    runs = [(f"import {size:,}", measure("import", url, path)) for size, path in files.items()]
    runs.append((f"import {smallest:,} + list", measure("import", url, files[smallest], "--list")))
    header = (
        f"  {'measurement':<22}{'rows/s':>10}{'x ORM':>8}{'% raw':>8}"
        f"{'re-import/s':>13}{'RSS ready':>11}{'peak RSS':>10}{'CPU us/row':>12}"
        f"{'DB us/row':>11}{'load':>11}"
    )
    print(header)
    for label, r in runs:
        rate = r["rows_per_second"]
        print(
            f"  {label:<22}{rate:>10,.0f}{rate / orm['rows_per_second']:>8.1f}"
            f"{100 * rate / raw['rows_per_second']:>7.0f}%"
            f"{r['reimport_rows_per_second']:>13,.0f}"
            f"{r['rss_ready_mib']:>9.0f}MB{r['peak_rss_mib']:>8.0f}MB"
            f"{r['client_cpu_us_per_row']:>12.1f}{r['server_cpu_us_per_row']:>11.1f}"
            f"{r['load'][0]:>6.1f}>{r['load'][1]:<4.1f}"
        )
    bulk = measure("bulk_api", url, files[smallest], "--rows", str(baseline_rows))
    print(
        f"  bulk API (POST /api/contacts/bulk, 1,000 per call): "
        f"{bulk['rows_per_second']:,.0f} contacts/s = "
        f"{bulk['rows_per_second'] / orm['rows_per_second']:.2f} x ORM baseline"
    )
    if name == "PostgreSQL":
        largest = runs[len(files) - 1][1]
        peaks = [r["peak_rss_mib"] for _, r in runs[: len(files)]]
        cpu = largest["client_cpu_us_per_row"] + largest["server_cpu_us_per_row"]
        cores = os.cpu_count() or 1
        print(
            f"  CPU per row at {max(files):,} rows: client {largest['client_cpu_us_per_row']:.1f}"
            f" + database {largest['server_cpu_us_per_row']:.1f} = {cpu:.1f} us; on {cores} "
            f"cores, fully overlapped, that allows at most {cores * 1e6 / cpu:,.0f} rows/s "
            f"(the target needs <= {cores * 1e6 / TARGET_ROWS_PER_SECOND:.0f} us)"
        )
        print(
            f"  target: >= {TARGET_ROWS_PER_SECOND:,} rows/s -> "
            f"{largest['rows_per_second']:,.0f} at {max(files):,} rows; peak RSS < "
            f"{TARGET_RSS_MIB} MB -> {max(peaks):.0f} MB "
            f"(growth from {min(files):,} to {max(files):,} rows: "
            f"{peaks[-1] - peaks[0]:+.0f} MB)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks imports", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="Rows per file, comma-separated.")
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "postwise-bench",
        help="Where generated files and the SQLite database go (files are reused).",
    )  # fmt: skip
    parser.add_argument(
        "--postgres", default=os.environ.get("POSTWISE_BENCH_POSTGRES_URL", ""),
        help="A PostgreSQL URL whose database may be wiped (POSTWISE_BENCH_POSTGRES_URL).",
    )  # fmt: skip
    parser.add_argument(
        "--backends", default="sqlite,postgresql",
        help="Which databases to measure, comma-separated (postgresql needs --postgres).",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    print(f"data in {args.data}; {os.cpu_count()} CPUs", flush=True)
    files = {size: data_file(args.data, size) for size in sizes}
    backends = {name.strip() for name in args.backends.split(",")}
    if "sqlite" in backends:
        bench_backend("SQLite", f"sqlite:///{args.data / 'bench.db'}", files, args.baseline_rows)
    if "postgresql" not in backends:
        return
    if args.postgres:
        bench_backend("PostgreSQL", args.postgres, files, args.baseline_rows)
    else:
        print("\n(PostgreSQL skipped: set POSTWISE_BENCH_POSTGRES_URL to a database to wipe)")


if __name__ == "__main__":
    main()
