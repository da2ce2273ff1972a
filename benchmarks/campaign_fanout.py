"""Campaign fan-out on PostgreSQL: a 1,000,000-recipient campaign into snapshot + outbox.

``python -m benchmarks campaigns [--contacts N] [--database-url URL]``. Contacts and one
list holding all of them are generated inside PostgreSQL (``generate_series``); the
campaign is scheduled through ``lifecycle.schedule`` (all its checks) and fanned out by
``jobs.run_fanout_batch``, one committed batch per call exactly as the worker runs it
(``POSTWISE_CAMPAIGN_FANOUT_BATCH`` recipients each). The baseline in the same run is a
bare ``INSERT ... SELECT`` of the same number of rows from ``contacts`` into a copy of
the outbox table with its indexes (the floor for writing that many rows at all), and the
same insert into the real outbox, whose foreign keys are checked row by row.
The fan-out writes twice as much (snapshot and outbox) and evaluates the audience
(list membership, status, suppression), so a ratio near 2 is the expected shape.
Target: under 60 s for 1,000,000 recipients.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from sqlalchemy import text

from benchmarks.measure import fresh_database
from postwise.campaigns import jobs, lifecycle, store
from postwise.core.settings import Settings
from postwise.delivery import service
from postwise.messages import keys
from postwise.messages import store as templates
from postwise.storage.database import Database
from postwise.workspaces.actions import create_workspace

SECRET = "campaign-benchmark-secret"
INSERT = (
    "INSERT INTO bench_outbox (workspace_id, contact_id, email, kind, data, "
    "campaign_key, idempotency_key, status, attempts, next_attempt_at, created_at) "
    "SELECT workspace_id, id, email, 'marketing', '{}'::jsonb, 'bare', "
    "'bare:' || id, 'queued', 0, now(), now() FROM contacts WHERE workspace_id = :ws"
)


def _settings() -> Settings:
    return Settings(
        secret_key=SECRET,
        delivery_from_address="news@send.example",
        delivery_postal_address="1 Main St, Springfield",
    )


def setup(db: Database, contacts: int) -> tuple[int, int, int]:
    """(workspace, list, template) with ``contacts`` subscribed contacts on the list."""
    with db.system() as s:
        ws = create_workspace(s, "Campaign benchmark").workspace_id
    with db.tenant(ws) as s:
        template = templates.create_template(
            s,
            templates.TemplateInput(
                name="Launch",
                subject="Hello",
                html="<p>News <a href='https://x.example/'>x</a></p>",
            ),
        )
        keys.generate_dkim_key(s, SECRET.encode(), domain="send.example", selector="s1")
        template_id = template.id
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (workspace_id, email, email_domain, status, attributes, "
                "timezone, created_at, updated_at) "
                "SELECT :ws, 'p' || g || '@d' || (g % 5000) || '.example', "
                "'d' || (g % 5000) || '.example', "
                "CASE WHEN g % 50 = 0 THEN 'unsubscribed' ELSE 'subscribed' END, '{}'::jsonb, "
                "(ARRAY['Europe/Paris','America/New_York',NULL])[1 + g % 3], now(), now() "
                "FROM generate_series(1, :n) g"
            ),
            {"ws": ws, "n": contacts},
        )
        list_id = conn.execute(
            text(
                "INSERT INTO lists (workspace_id, name, description, double_opt_in, created_at) "
                "VALUES (:ws, 'Everyone', '', false, now()) RETURNING id"
            ),
            {"ws": ws},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO list_memberships (workspace_id, list_id, contact_id, status, "
                "created_at, updated_at) SELECT :ws, :list, id, 'subscribed', now(), now() "
                "FROM contacts WHERE workspace_id = :ws"
            ),
            {"ws": ws, "list": list_id},
        )
        conn.execute(text("ANALYZE contacts; ANALYZE list_memberships"))
    return ws, int(list_id), template_id


def baseline(db: Database, ws: int) -> dict[str, Any]:
    """A bare INSERT ... SELECT of one outbox-shaped row per contact, indexes included."""
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_outbox"))
        conn.execute(text("CREATE TABLE bench_outbox (LIKE outbox INCLUDING ALL)"))
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        rows = conn.execute(text(INSERT), {"ws": ws}).rowcount
    seconds = time.perf_counter() - t0
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_outbox"))
    # The same rows into the real outbox: its foreign keys are checked per row too.
    t0 = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(text(INSERT.replace("bench_outbox", "outbox")), {"ws": ws})
    real = time.perf_counter() - t0
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox WHERE campaign_key = 'bare'"))
        conn.execute(text("ANALYZE outbox"))
    return {"rows": rows, "seconds": round(seconds, 2), "real_outbox_seconds": round(real, 2)}


def fan_out(db: Database, ws: int, list_id: int, template_id: int) -> dict[str, Any]:
    with db.tenant(ws) as s:
        c = store.create_campaign(
            s,
            {
                "key": "big-launch",
                "name": "Big launch",
                "template_id": template_id,
                "sending_domain": "send.example",
                "audience": {"list_ids": [list_id]},
            },
        )
        lifecycle.schedule(s, c.id)
        cid = c.id
    t0 = time.perf_counter()
    batches = 0
    while True:
        batches += 1
        with db.tenant(ws) as s:
            if jobs.run_fanout_batch(s, cid):
                break
    seconds = time.perf_counter() - t0
    with db.tenant(ws) as s:
        count = store.get_campaign(s, cid).recipient_count
    with db.engine.connect() as conn:
        outbox = conn.execute(
            text("SELECT count(*) FROM outbox WHERE campaign_key = 'big-launch'")
        ).scalar_one()
    return {
        "recipients": count,
        "outbox_rows": outbox,
        "batches": batches,
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "POSTWISE_BENCH_POSTGRES_URL",
            "postgresql+psycopg://postgres@127.0.0.1/postwise_bench_campaigns",
        ),
    )
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    settings = _settings()
    # The checks build a real message with these settings (postal address, secret).
    lifecycle.get_settings = lambda: settings  # type: ignore[assignment]
    jobs.get_settings = lambda: settings  # type: ignore[assignment]
    service.get_settings = lambda: settings  # type: ignore[assignment]
    db = fresh_database(args.database_url)
    t0 = time.perf_counter()
    ws, list_id, template_id = setup(db, args.contacts)
    print(f"setup: {args.contacts} contacts in {time.perf_counter() - t0:.1f} s", flush=True)
    base = baseline(db, ws)
    print("baseline bare INSERT ... SELECT into an outbox copy", base, flush=True)
    result = fan_out(db, ws, list_id, template_id)
    result["batch"] = settings.campaign_fanout_batch
    result["ratio_to_baseline"] = round(result["seconds"] / max(base["seconds"], 1e-9), 2)
    result["ratio_to_real_outbox_insert"] = round(
        result["seconds"] / max(base["real_outbox_seconds"], 1e-9), 2
    )
    result["target_met"] = result["seconds"] < 60
    print("campaign fan-out", result, flush=True)
    db.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
