"""CLTV uplift on PostgreSQL: what the daily job costs, and what a request costs instead.

``python -m benchmarks uplift [--contacts N] [--database-url URL]``. Generated inside
PostgreSQL: N contacts (default 1,000,000) in 2,000 companies over 8 size bands x 10
industries, a third of them reached by a segmented campaign (snapshot rows with outbox
ids, reach times over 30 days), and one ``Order Completed`` with revenue for 8% of the
contacts (reached ones buy a little more). Timed: ``uplift.refresh`` as the job runs it
(wall time and this process's CPU time, so the figure per contact survives a loaded
machine), then reading the stored result as ``GET /api/analytics/uplift`` does (median
of 20). The ratio is what computing at request time would cost over reading the stored
row, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from benchmarks.measure import fresh_database
from postwise.analytics import uplift
from postwise.storage.database import Database
from postwise.storage.tables import Campaign
from postwise.workspaces.actions import create_workspace

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
BANDS = ("1-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000", "5001-10000", "10001+")


def setup(db: Database, contacts: int) -> tuple[int, dict[str, int]]:
    with db.system() as s:
        ws = create_workspace(s, "Uplift benchmark").workspace_id
    with db.tenant(ws) as s:
        campaign = Campaign(key="spring", name="Spring", status="sent", recipient_count=0)
        s.add(campaign)
        s.flush()
        campaign_id = campaign.id
    counts = {}
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO companies (workspace_id, domain, size_band, industry, attributes, "
                "created_at, updated_at) "
                "SELECT :ws, 'c' || g || '.example', (CAST(:bands AS text[]))[1 + g % 8], "
                "'industry-' || (g % 10), '{}'::jsonb, :early, :early "
                "FROM generate_series(1, 2000) g"
            ),
            {"ws": ws, "bands": list(BANDS), "early": T0 - timedelta(days=60)},
        )
        counts["contacts"] = conn.execute(
            text(
                "INSERT INTO contacts (workspace_id, email, email_domain, status, attributes, "
                "company_id, created_at, updated_at) "
                "SELECT :ws, 'p' || g || '@' || c.domain, c.domain, 'subscribed', '{}'::jsonb, "
                "c.id, :early, :early FROM generate_series(1, :n) g "
                "JOIN companies c ON c.workspace_id = :ws "
                "AND c.domain = 'c' || (g % 2000 + 1) || '.example'"
            ),
            {"ws": ws, "n": contacts, "early": T0 - timedelta(days=60)},
        ).rowcount
        counts["reached"] = conn.execute(
            text(
                "INSERT INTO campaign_recipients (workspace_id, campaign_id, contact_id, email, "
                "domain, source_kind, source_id, phase, outbox_id, scheduled_for, created_at) "
                "SELECT :ws, :cid, id, email, email_domain, 'segment', 1, 'all', id, "
                ":t0 + (id % 30) * interval '1 day', :t0 "
                "FROM contacts WHERE workspace_id = :ws AND id % 3 = 0"
            ),
            {"ws": ws, "cid": campaign_id, "t0": T0},
        ).rowcount
        counts["orders"] = conn.execute(
            text(
                "INSERT INTO events (workspace_id, contact_id, type, name, properties, context, "
                "occurred_at, received_at) "
                "SELECT :ws, id, 'track', 'Order Completed', "
                "jsonb_build_object('revenue', 100 + (id % 7) * 10 + CASE WHEN id % 3 = 0 "
                "THEN 25 ELSE 0 END), '{}'::jsonb, "
                ":t0 + (31 + id % 20) * interval '1 day', :t0 + (31 + id % 20) * interval '1 day' "
                "FROM contacts WHERE workspace_id = :ws AND id % 25 IN (0, 1)"
            ),
            {"ws": ws, "t0": T0},
        ).rowcount
        conn.execute(text("ANALYZE companies; ANALYZE contacts; ANALYZE campaign_recipients"))
        conn.execute(text("ANALYZE events"))
    return ws, counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "POSTWISE_BENCH_POSTGRES_URL",
            "postgresql+psycopg://postgres@127.0.0.1/postwise_bench_uplift",
        ),
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    db = fresh_database(args.database_url)
    started = time.perf_counter()
    ws, counts = setup(db, args.contacts)
    print(f"setup: {counts} in {time.perf_counter() - started:.1f} s", flush=True)
    params = uplift.Params("Order Completed", "revenue", 90)

    wall, cpu = time.perf_counter(), time.process_time()
    with db.tenant(ws) as s:
        result = uplift.refresh(s, params, as_of=T0 + timedelta(days=200))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    def read() -> None:
        with db.tenant(ws) as s:
            uplift.stored(s, params)

    read()
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        read()
        times.append(time.perf_counter() - t0)
    read_ms = statistics.median(times) * 1000
    print(
        "uplift",
        {
            "contacts": counts["contacts"],
            "reached": result["reached"],
            "comparison": result["comparison"],
            "orders": counts["orders"],
            "compute_s": round(wall, 2),
            "compute_cpu_s_client": round(cpu, 2),
            "cpu_us_per_contact": round(cpu / max(counts["contacts"], 1) * 1e6, 2),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "stored_read_ms_median": round(read_ms, 2),
            "ratio_compute_vs_read": round(wall * 1000 / max(read_ms, 1e-9)),
            "uplift": result["uplift"],
            "uplift_ci95": result["uplift_ci95"],
        },
        flush=True,
    )
    db.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
