"""The segment benchmark's data set, built inside PostgreSQL (``INSERT ... SELECT
generate_series``): no row crosses the network, so 20,000,000 events load in minutes.

One workspace ("Segment benchmark") holds ``companies`` companies, ``contacts`` contacts
(nine in ten at a company, companies drawn with a skew so a few are large accounts),
four lists with memberships, and ``events`` events over two years before ``now``:

===================  ======  ================================================================
name                 share   properties
===================  ======  ================================================================
Page Viewed          38 %    ``path``, ``name``; category pages add ``category``; 3 % are
                             the VIP rewards page (``path`` = ``/rewards/vip``); 5 % are
                             anonymous (no contact)
Product Viewed       8 %     ``category``, ``product_id``, ``price``
Product Added        4 %     ``category``, ``price``
Order Completed      1.5 %   ``total`` (1 to ~490, log-uniform), ``currency``
Trial Downloaded     0.5 %   ``product``
Email Sent           20 %    ``campaign_key``, ``outbox_id``
Email Delivered      19 %    ``campaign_key``, ``outbox_id``
Email Opened         7 %     ``campaign_key``, ``outbox_id``, ``machine`` (35 % true)
Email Clicked        2 %     ``campaign_key``, ``outbox_id``, ``machine`` (10 % true),
                             ``url`` (a category page), ``category``
===================  ======  ================================================================

Who does what is skewed (a power of a uniform draw, then scattered over the id range by a
prime stride, so the busy contacts are not simply the first ids): a few contacts are very
active, most are quiet; mail goes to nearly everyone, opens and clicks to fewer, shopping
to fewer still. Times lean towards ``now`` (the business grew), so windows of a day, a
week, a month and a year all hold realistic shares; they rise with the event id, so the
table is laid out in time order as an append-only tracking table is (a window's events
sit together on disk, while one contact's are spread over the whole table).

Secondary indexes are dropped for the load and rebuilt after it (that is many times
faster than maintaining them row by row); foreign-key triggers are skipped with
``session_replication_role = replica`` when the role may (the rows are consistent by
construction). ``VACUUM ANALYZE`` follows. The scale, ``now`` and ``GENERATOR_VERSION``
are stored in the workspace's settings: ``ensure`` reuses a database that already holds
the same scale and regenerates otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from postwise.storage import migrate
from postwise.storage.database import Database

GENERATOR_VERSION = 4
WORKSPACE_NAME = "Segment benchmark"
EVENT_CHUNK = 1_000_000
STRIDE = 104_729  # a prime: ``(k * STRIDE) % n`` scatters a skewed draw over 1..n

CATEGORIES = (
    "Science Fiction", "Mystery", "Romance", "History", "Cooking", "Travel",
    "Children", "Poetry", "Business", "Science", "Art", "Sports",
)  # fmt: skip
INDUSTRIES = (
    "Software", "Software", "SaaS", "Retail", "Manufacturing", "Finance", "Health",
    "Education", "Media", "Logistics",
)  # fmt: skip
SENIORITIES = (
    "intern", "entry", "entry", "entry", "senior", "senior", "senior", "manager", "manager",
    "director", "director", "vp", "c_level", "owner",
)  # fmt: skip
COUNTRIES = ("US", "US", "US", "DE", "GB", "FR", "NL", "PL", "ES", "IT", "CA", "SE")
FREE_MAIL = ("gmail.com", "yahoo.com", "outlook.com", "gmx.de")
LISTS = (("Newsletter", 0.70), ("Product updates", 0.30), ("Events", 0.15), ("Partners", 0.10))
VIP_PATH = "/rewards/vip"
# Cumulative shares of the event kinds (the table above); the rest are page views.
KINDS = (
    ("Product Viewed", 0.08),
    ("Product Added", 0.12),
    ("Order Completed", 0.135),
    ("Trial Downloaded", 0.14),
    ("Email Sent", 0.34),
    ("Email Delivered", 0.53),
    ("Email Opened", 0.60),
    ("Email Clicked", 0.62),
)


@dataclass(frozen=True)
class Scale:
    contacts: int
    companies: int
    events: int

    def as_dict(self) -> dict[str, int]:
        return {"contacts": self.contacts, "companies": self.companies, "events": self.events}


@dataclass(frozen=True)
class Dataset:
    workspace_id: int
    now: datetime
    scale: Scale
    load_seconds: float | None  # None: reused from an earlier run
    stored_load_seconds: float


def _array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values: tuple[str, ...], draw: str) -> str:
    """SQL choosing one of ``values`` by a uniform draw in [0, 1)."""
    return f"({_array(values)})[1 + floor({draw} * {len(values)})::int]"


def _skewed(n: str, exponent: float, draw: str = "random()") -> str:
    """SQL for an id in 1..n, low ranks likelier (``draw ** exponent``), scattered."""
    return f"(((floor({n} * power({draw}, {exponent})))::bigint * {STRIDE}) % {n}) + 1"


def _band(employees: str) -> str:
    floors = ((10001, "10001+"), (5001, "5001-10000"), (1001, "1001-5000"), (501, "501-1000"),
              (201, "201-500"), (51, "51-200"), (11, "11-50"))  # fmt: skip
    whens = " ".join(f"WHEN {employees} >= {f} THEN '{b}'" for f, b in floors)
    return f"CASE {whens} ELSE '1-10' END"


def _marker(conn: Connection) -> tuple[int, dict[str, Any]] | None:
    exists = conn.execute(text("SELECT to_regclass('public.workspaces')")).scalar()
    if exists is None:
        return None
    row = conn.execute(
        text("SELECT id, settings FROM workspaces WHERE name = :name"), {"name": WORKSPACE_NAME}
    ).first()
    if row is None or not isinstance(row.settings, dict):
        return None
    marker = row.settings.get("segment_benchmark")
    return (int(row.id), marker) if isinstance(marker, dict) else None


def ensure(db: Database, scale: Scale, *, regenerate: bool = False, log: Any = print) -> Dataset:
    """The data set at ``scale``: reused when the database already holds it, else built."""
    with db.engine.connect() as conn:
        found = _marker(conn)
    if found is not None and not regenerate:
        workspace_id, marker = found
        if marker.get("scale") == scale.as_dict() and marker.get("version") == GENERATOR_VERSION:
            migrate.upgrade(db)  # later migrations (e.g. new indexes) still apply
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            return Dataset(
                workspace_id,
                datetime.fromisoformat(marker["now"]),
                scale,
                None,
                float(marker["load_seconds"]),
            )
    return generate(db, scale, log=log)


def generate(db: Database, scale: Scale, *, log: Any = print) -> Dataset:
    """Wipe the database, migrate it, and load the data set (see the module docstring)."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(db)
    with db.engine.begin() as conn:
        conn.execute(text("SELECT setseed(0.4242)"))
        try:
            with conn.begin_nested():
                conn.execute(text("SET LOCAL session_replication_role = replica"))
        except Exception:  # not a superuser: foreign keys are checked, which is slower
            log("  (foreign-key checks stay on: the role may not set session_replication_role)")
        conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        workspace_id = int(
            conn.execute(
                text(
                    "INSERT INTO workspaces (name, created_at, settings) "
                    "VALUES (:name, :now, '{}') RETURNING id"
                ),
                {"name": WORKSPACE_NAME, "now": now},
            ).scalar_one()
        )
        rebuild = _drop_secondary_indexes(
            conn, ("companies", "contacts", "list_memberships", "events")
        )
        params = {"ws": workspace_id, "now": now}
        _load_companies(conn, scale, params)
        log(f"  companies: {scale.companies:,} ({time.perf_counter() - started:.0f} s)")
        _load_contacts(conn, scale, params)
        log(f"  contacts: {scale.contacts:,} ({time.perf_counter() - started:.0f} s)")
        _load_lists(conn, params)
        for first in range(1, scale.events + 1, EVENT_CHUNK):
            last = min(first + EVENT_CHUNK - 1, scale.events)
            _load_events(
                conn, scale, {**params, "first": first, "last": last, "total": scale.events}
            )
            log(f"  events: {last:,} ({time.perf_counter() - started:.0f} s)")
        for table in ("companies", "contacts", "events"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
            )
        for statement in rebuild:
            conn.execute(text(statement))
        log(f"  indexes rebuilt ({time.perf_counter() - started:.0f} s)")
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    seconds = time.perf_counter() - started
    log(f"  VACUUM ANALYZE done: loaded in {seconds:.0f} s")
    marker = {
        "scale": scale.as_dict(),
        "version": GENERATOR_VERSION,
        "now": now.isoformat(),
        "load_seconds": round(seconds, 1),
    }
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE workspaces SET settings = jsonb_build_object('segment_benchmark', "
                "CAST(:marker AS jsonb)) WHERE id = :ws"
            ),
            {"marker": _json(marker), "ws": workspace_id},
        )
    return Dataset(workspace_id, now, scale, seconds, seconds)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _drop_secondary_indexes(conn: Connection, tables: tuple[str, ...]) -> list[str]:
    """Drop indexes that back no constraint; returns the statements that recreate them."""
    rows = conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS ddl "
            "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relname = ANY(:tables) AND t.relnamespace = 'public'::regnamespace "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        ),
        {"tables": list(tables)},
    ).all()
    for row in rows:
        conn.execute(text(f"DROP INDEX {row.name}"))
    return [row.ddl for row in rows]


def _load_companies(conn: Connection, scale: Scale, params: dict[str, Any]) -> None:
    conn.execute(
        text(
            f"""
            INSERT INTO companies (id, workspace_id, domain, name, industry, employee_count,
                size_band, revenue_band, country, attributes, created_at, updated_at)
            SELECT g, :ws, 'company' || g || '.example', 'Company ' || g,
                {_pick(INDUSTRIES, "random()")}, e, {_band("e")},
                {_pick(("<1M", "1M-10M", "10M-50M", "50M-100M", "100M-500M"), "random()")},
                {_pick(COUNTRIES, "random()")},
                jsonb_build_object('tier', {_pick(("gold", "silver", "bronze"), "random()")}),
                :now - interval '1500 days' * random(), :now
            FROM (SELECT g, greatest(1, floor(exp(power(random(), 2) * ln(50000))))::int AS e
                  FROM generate_series(1, :n) AS g) AS s
            """
        ),
        {**params, "n": scale.companies},
    )


def _load_contacts(conn: Connection, scale: Scale, params: dict[str, Any]) -> None:
    # r1: has a company (90 %); r2: which (skewed); the rest: fields.
    company = _skewed(str(scale.companies), 2.0, "r2")
    conn.execute(
        text(
            f"""
            INSERT INTO contacts (id, workspace_id, email, email_domain, first_name, last_name,
                job_title, seniority, country, status, attributes, company_id, created_at,
                updated_at)
            SELECT g, :ws, 'person' || g || '@' || domain, domain,
                {_pick(("Ann", "Bob", "Carla", "Dieter", "Eva", "Farid", "Greta"), "random()")},
                {_pick(("Smith", "Müller", "Rossi", "Dubois", "Nowak", "García"), "random()")},
                {_pick(("CTO", "Head of Sales", "Engineer", "Buyer", "CEO"), "random()")},
                CASE WHEN random() < 0.1 THEN NULL ELSE {_pick(SENIORITIES, "random()")} END,
                {_pick(COUNTRIES, "random()")},
                CASE WHEN r3 < 0.88 THEN 'subscribed' WHEN r3 < 0.94 THEN 'unsubscribed'
                     WHEN r3 < 0.97 THEN 'bounced' WHEN r3 < 0.98 THEN 'complained'
                     ELSE 'pending' END,
                jsonb_build_object('plan', {_pick(("free", "team", "business"), "random()")},
                                   'seats', floor(random() * 500)::int),
                company_id, created, created
            FROM (
                SELECT g, r3, company_id,
                    :now - interval '1095 days' * power(random(), 1.3) AS created,
                    CASE WHEN company_id IS NULL
                         THEN {_pick(FREE_MAIL, "random()")}
                         ELSE 'company' || company_id || '.example' END AS domain
                FROM (
                    SELECT g, random() AS r3,
                        CASE WHEN r1 < 0.9 THEN {company} END AS company_id
                    FROM (SELECT g, random() AS r1, random() AS r2
                          FROM generate_series(1, :n) AS g) AS a
                ) AS b
            ) AS c
            """
        ),
        {**params, "n": scale.contacts},
    )


def _load_lists(conn: Connection, params: dict[str, Any]) -> None:
    for name, share in LISTS:
        list_id = conn.execute(
            text(
                "INSERT INTO lists (workspace_id, name, description, double_opt_in, created_at) "
                "VALUES (:ws, :name, '', false, :now - interval '1500 days') RETURNING id"
            ),
            {**params, "name": name},
        ).scalar_one()
        conn.execute(
            text(
                """
                INSERT INTO list_memberships (workspace_id, list_id, contact_id, status,
                    created_at, updated_at)
                SELECT :ws, :list, id,
                    CASE WHEN random() < 0.9 THEN 'subscribed' ELSE 'unsubscribed' END,
                    created_at, created_at
                FROM contacts WHERE workspace_id = :ws AND random() < :share
                """
            ),
            {**params, "list": list_id, "share": share},
        )


def _event_sql(contacts: int) -> str:
    n = str(contacts)
    shop = _skewed(n, 2.2, "r2")  # page views, carts, orders, trials: the few busy ones
    mail = _skewed(n, 1.0, "r2")  # sends and deliveries: nearly uniform
    opens = _skewed(n, 2.5, "r2")  # engaged readers open most of the mail
    clicks = _skewed(n, 2.0, "r2")
    kind_case = " ".join(f"WHEN r1 < {share} THEN '{name}'" for name, share in KINDS)
    category = _pick(CATEGORIES, "power(r4, 1.7)")
    slug = f"lower(replace({category}, ' ', '-'))"
    campaign = "'campaign-' || floor(power(r4, 0.7) * 120)::int"
    return f"""
        INSERT INTO events (id, workspace_id, contact_id, anonymous_id, type, name, properties,
            context, occurred_at, received_at)
        SELECT g, :ws, contact_id, anonymous_id, type, name, properties, '{{}}'::jsonb,
            occurred_at, occurred_at
        FROM (
            SELECT g, name,
                CASE WHEN name = 'Page Viewed' THEN 'page'
                     WHEN name LIKE 'Email %' THEN 'email' ELSE 'track' END AS type,
                CASE WHEN name = 'Page Viewed' AND r5 < 0.05 THEN NULL
                     WHEN name IN ('Email Sent', 'Email Delivered') THEN {mail}
                     WHEN name = 'Email Opened' THEN {opens}
                     WHEN name = 'Email Clicked' THEN {clicks}
                     ELSE {shop} END AS contact_id,
                CASE WHEN name = 'Page Viewed' AND r5 < 0.05
                     THEN 'anon-' || floor(r2 * 500000)::int END AS anonymous_id,
                CASE name
                    WHEN 'Page Viewed' THEN
                        CASE WHEN r3 < 0.03
                             THEN jsonb_build_object('path', '{VIP_PATH}', 'name', 'VIP Rewards')
                             WHEN r3 < 0.5
                             THEN jsonb_build_object('path', '/c/' || {slug},
                                                     'name', 'Category', 'category', {category})
                             WHEN r3 < 0.6 THEN jsonb_build_object('path', '/', 'name', 'Home')
                             ELSE jsonb_build_object('path', '/p/' || floor(r4 * 5000)::int,
                                                     'name', 'Product')
                        END
                    WHEN 'Product Viewed' THEN jsonb_build_object(
                        'category', {category}, 'product_id', floor(r3 * 5000)::int,
                        'price', round((5 + r3 * 60)::numeric, 2))
                    WHEN 'Product Added' THEN jsonb_build_object(
                        'category', {category}, 'price', round((5 + r3 * 60)::numeric, 2))
                    WHEN 'Order Completed' THEN jsonb_build_object(
                        'total', round(exp(r3 * 6.2)::numeric, 2), 'currency', 'USD')
                    WHEN 'Trial Downloaded' THEN jsonb_build_object(
                        'product', {_pick(("Desktop", "Server", "Mobile"), "r3")})
                    WHEN 'Email Opened' THEN jsonb_build_object(
                        'campaign_key', {campaign}, 'outbox_id', g, 'machine', r3 < 0.35)
                    WHEN 'Email Clicked' THEN jsonb_build_object(
                        'campaign_key', {campaign}, 'outbox_id', g, 'machine', r3 < 0.1,
                        'url', 'https://shop.example/c/' || {slug}, 'link_index', 0,
                        'category', {category})
                    ELSE jsonb_build_object('campaign_key', {campaign}, 'outbox_id', g)
                END AS properties,
                :now - interval '730 days' * power((CAST(:total AS float8) - g + r6) / :total, 1.4)
                    AS occurred_at
            FROM (
                SELECT g, r1, r2, r3, r4, r5, r6,
                    CASE {kind_case} ELSE 'Page Viewed' END AS name
                FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
                             random() AS r5, random() AS r6
                      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
                     ) AS draws
            ) AS named
        ) AS rows
    """


def _load_events(conn: Connection, scale: Scale, params: dict[str, Any]) -> None:
    conn.execute(text(_event_sql(scale.contacts)), params)
