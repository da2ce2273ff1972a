"""Campaign report from rollups on PostgreSQL, for a 1,000,000-recipient campaign.

``python -m benchmarks report [--recipients N] [--database-url URL]``. Contacts, the
audience snapshot and the email events (sent and delivered for everyone, human opens for
20%, machine opens for 10%, human clicks for 5%, spread over 48 hours and 5,000 domains,
two variants) are generated inside PostgreSQL. The events are rolled up by
``analytics.rollup.roll_up`` exactly as the job does (committed batches; timed), then
the full campaign report (totals, KPIs, five breakdowns, hourly series) is read from the
rollups. The baseline in the same run is what a report without rollups must do: one
aggregate over the raw events of the campaign (totals with exact uniques, and the
per-domain table through the snapshot). Target: the report under 200 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from benchmarks.measure import fresh_database
from postwise.analytics import report, rollup
from postwise.storage.database import Database
from postwise.storage.tables import Campaign
from postwise.workspaces.actions import create_workspace

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
EVENTS = (
    "INSERT INTO events (workspace_id, contact_id, type, name, properties, context, "
    "occurred_at, received_at) "
    "SELECT :ws, c.id, 'email', :name, jsonb_build_object('outbox_id', c.id, "
    "'campaign_key', 'launch', 'email', c.email, 'machine', :machine), '{}'::jsonb, "
    ":t0 + ((c.id % 48) * interval '1 hour') + :offset * interval '1 minute', :t0 "
    "FROM contacts c WHERE c.workspace_id = :ws AND c.id % :modulo = :rest"
)
BASELINE = """
SELECT count(*) FILTER (WHERE e.name = 'Email Sent') AS sent,
       count(*) FILTER (WHERE e.name = 'Email Delivered') AS delivered,
       count(*) FILTER (WHERE e.name = 'Email Opened' AND NOT m) AS opens_human,
       count(*) FILTER (WHERE e.name = 'Email Opened' AND m) AS opens_machine,
       count(DISTINCT e.contact_id) FILTER (WHERE e.name = 'Email Opened' AND NOT m) AS u_open,
       count(DISTINCT e.contact_id) FILTER (WHERE e.name = 'Email Clicked' AND NOT m) AS u_click
FROM (SELECT *, coalesce((properties->>'machine')::boolean, false) AS m FROM events
      WHERE workspace_id = :ws AND properties->>'campaign_key' = 'launch') e
"""
BASELINE_DOMAINS = """
SELECT r.domain, count(*) FILTER (WHERE e.name = 'Email Sent'),
       count(DISTINCT e.contact_id) FILTER (WHERE e.name = 'Email Opened'
             AND NOT coalesce((e.properties->>'machine')::boolean, false))
FROM events e JOIN campaign_recipients r
  ON r.workspace_id = e.workspace_id AND r.outbox_id = (e.properties->>'outbox_id')::bigint
WHERE e.workspace_id = :ws AND e.properties->>'campaign_key' = 'launch'
GROUP BY r.domain
"""


def setup(db: Database, recipients: int) -> tuple[int, int, int]:
    with db.system() as s:
        ws = create_workspace(s, "Report benchmark").workspace_id
    with db.tenant(ws) as s:
        campaign = Campaign(key="launch", name="Launch", status="sent", recipient_count=recipients)
        s.add(campaign)
        s.flush()
        campaign_id = campaign.id
    events = 0
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (workspace_id, email, email_domain, status, attributes, "
                "created_at, updated_at) "
                "SELECT :ws, 'p' || g || '@d' || (g % 5000) || '.example', "
                "'d' || (g % 5000) || '.example', 'subscribed', '{}'::jsonb, now(), now() "
                "FROM generate_series(1, :n) g"
            ),
            {"ws": ws, "n": recipients},
        )
        conn.execute(
            text(
                "INSERT INTO campaign_recipients (workspace_id, campaign_id, contact_id, email, "
                "domain, source_kind, source_id, phase, variant, outbox_id, created_at) "
                "SELECT :ws, :cid, id, email, email_domain, 'list', 1, 'test', "
                "CASE WHEN id % 2 = 0 THEN 'A' ELSE 'B' END, id, now() "
                "FROM contacts WHERE workspace_id = :ws"
            ),
            {"ws": ws, "cid": campaign_id},
        )
        plan = [  # name, machine, minutes after the hour, modulo, rest
            ("Email Sent", False, 0, 1, 0),
            ("Email Delivered", False, 1, 1, 0),
            ("Email Opened", False, 20, 5, 0),
            ("Email Opened", True, 2, 10, 1),
            ("Email Clicked", False, 25, 20, 0),
        ]
        for name, machine, offset, modulo, rest in plan:
            events += conn.execute(
                text(EVENTS),
                {
                    "ws": ws,
                    "name": name,
                    "machine": machine,
                    "t0": T0,
                    "offset": offset,
                    "modulo": modulo,
                    "rest": rest,
                },
            ).rowcount
        conn.execute(text("ANALYZE events; ANALYZE campaign_recipients"))
    return ws, campaign_id, events


def roll(db: Database, ws: int, batch: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    total = batches = 0
    while True:
        with db.tenant(ws) as s:
            done = rollup.roll_up(s, limit=batch).events
        if done == 0:
            break
        total += done
        batches += 1
    seconds = time.perf_counter() - t0
    return {
        "events": total,
        "batches": batches,
        "seconds": round(seconds, 1),
        "events_per_s": round(total / seconds),
    }


def timed(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "POSTWISE_BENCH_POSTGRES_URL",
            "postgresql+psycopg://postgres@127.0.0.1/postwise_bench_report",
        ),
    )
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    args = parser.parse_args(argv)
    db = fresh_database(args.database_url)
    t0 = time.perf_counter()
    ws, campaign_id, events = setup(db, args.recipients)
    print(
        f"setup: {args.recipients} recipients, {events} events in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    print("rollup", roll(db, ws, args.batch), flush=True)
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM analytics_rollups")).scalar_one()

    def from_rollups() -> None:
        with db.tenant(ws) as s:
            report.campaign_report(s, campaign_id)

    def from_events() -> None:
        with db.engine.connect() as conn:
            conn.execute(text(BASELINE), {"ws": ws}).one()
            conn.execute(text(BASELINE_DOMAINS), {"ws": ws}).all()

    from_rollups()
    with db.tenant(ws) as s:
        check = report.campaign_report(s, campaign_id).totals
    report_ms = timed(from_rollups, 20)
    baseline_ms = timed(from_events, 3)
    print(
        "campaign report",
        {
            "rollup_rows": rows,
            "report_ms_median": round(report_ms, 1),
            "raw_events_baseline_ms_median": round(baseline_ms, 1),
            "ratio": round(baseline_ms / max(report_ms, 1e-9), 1),
            "target_met": report_ms < 200,
            "sent": check["sent"],
            "unique_opens_human": check["unique_opens_human"],
        },
        flush=True,
    )
    db.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
