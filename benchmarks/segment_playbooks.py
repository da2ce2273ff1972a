"""The playbook segments of the benchmark: each definition beside a hand-written query.

The hand-written SQL is what an engineer who knows the schema would write for a count
(GROUP BY / HAVING on the events of one name in one window, semi- and anti-joins,
``properties ->> 'key'`` with a cast), written without looking at the compiler's
output. It is an independent statement of what each segment means, so equal counts on
the generated data (``segment_data``) check the compiler, and the time ratio says what
the compiler's generality costs.

The definitions are the shipped playbooks (``postwise/segments/playbooks``); the SQL
takes ``:ws`` (workspace id) and ``:now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.segment_data import VIP_PATH
from postwise.segments import playbooks

CATEGORY = "Science Fiction"
# An email event counts as a person's unless it is labelled a machine's. Written as the
# predicate of the partial index ix_events_ws_human_engagement (migration 0010), as
# someone who knows the schema would, so that PostgreSQL can use it.
HUMAN = "e.type = 'email' AND NOT coalesce((e.properties -> 'machine') = 'true'::jsonb, false)"


@dataclass(frozen=True)
class Playbook:
    key: str
    title: str
    definition: dict[str, Any]
    hand_sql: str


HAND_SQL: dict[str, str] = {
    # Driven by the rarest condition (5+ human opens in 30 days); the others are probed
    # per reader by correlated subqueries, which PostgreSQL runs as nested loops.
    "high_value_customers": f"""
        WITH readers AS (
            SELECT e.contact_id FROM events e
            WHERE e.workspace_id = :ws AND e.name = 'Email Opened' AND {HUMAN}
              AND e.occurred_at >= :now - interval '30 days'
            GROUP BY e.contact_id
            HAVING count(*) >= 5
        )
        SELECT count(*) FROM readers r
        WHERE (SELECT sum((e.properties ->> 'total')::float8) FROM events e
               WHERE e.workspace_id = :ws AND e.name = 'Order Completed'
                 AND e.contact_id = r.contact_id
                 AND e.occurred_at >= :now - interval '365 days') > 500
          AND EXISTS (
            SELECT 1 FROM events e
            WHERE e.workspace_id = :ws AND e.name = 'Page Viewed'
              AND e.contact_id = r.contact_id AND e.properties ->> 'path' = '{VIP_PATH}')
    """,
    "cart_abandoners": """
        SELECT count(*) FROM (
            SELECT e.contact_id, max(e.occurred_at) AS added
            FROM events e
            WHERE e.workspace_id = :ws AND e.name = 'Product Added'
              AND e.occurred_at >= :now - interval '24 hours'
              AND e.contact_id IS NOT NULL
            GROUP BY e.contact_id
        ) AS carts
        WHERE NOT EXISTS (
            SELECT 1 FROM events o
            WHERE o.workspace_id = :ws AND o.contact_id = carts.contact_id
              AND o.name = 'Order Completed' AND o.occurred_at >= carts.added)
    """,
    # A segment's text tests ignore case (segments/compiler.py, unless case_sensitive), so
    # the same segment written by hand folds case too: lower() and ILIKE, as a person would.
    "product_interest": f"""
        WITH viewers AS (
            SELECT e.contact_id FROM events e
            WHERE e.workspace_id = :ws AND e.name = 'Product Viewed'
              AND lower(e.properties ->> 'category') = lower('{CATEGORY}')
              AND e.occurred_at >= :now - interval '30 days'
            GROUP BY e.contact_id
            HAVING count(*) >= 3
        )
        SELECT count(*) FROM viewers v
        WHERE EXISTS (
            SELECT 1 FROM events e
            WHERE e.workspace_id = :ws AND e.contact_id = v.contact_id
              AND e.name = 'Email Clicked' AND e.properties ->> 'url' ILIKE '%science-fiction%'
              AND e.properties ->> 'machine' = 'false'
              AND e.occurred_at >= :now - interval '30 days')
    """,
    "inactive": f"""
        SELECT count(*) FROM contacts c
        WHERE c.workspace_id = :ws
          AND NOT EXISTS (
            SELECT 1 FROM events e
            WHERE e.workspace_id = :ws AND e.contact_id = c.id
              AND e.name IN ('Email Opened', 'Email Clicked') AND {HUMAN}
              AND e.occurred_at >= :now - interval '90 days')
    """,
    "enterprise_decision_makers": """
        SELECT count(*) FROM contacts c JOIN companies co ON co.id = c.company_id
        WHERE c.workspace_id = :ws AND co.workspace_id = :ws
          AND co.employee_count > 1000 AND co.industry IN ('Software', 'SaaS')
          AND c.seniority IN ('director', 'vp', 'c_level', 'owner')
    """,
    "trial_not_purchased": """
        SELECT count(*) FROM (
            SELECT e.contact_id, max(e.occurred_at) AS downloaded
            FROM events e
            WHERE e.workspace_id = :ws AND e.name = 'Trial Downloaded'
              AND e.contact_id IS NOT NULL
            GROUP BY e.contact_id
        ) AS trials
        WHERE NOT EXISTS (
            SELECT 1 FROM events o
            WHERE o.workspace_id = :ws AND o.contact_id = trials.contact_id
              AND o.name = 'Order Completed' AND o.occurred_at >= trials.downloaded)
    """,
    "new_subscribers": """
        SELECT count(*) FROM contacts c
        WHERE c.workspace_id = :ws AND c.status = 'subscribed'
          AND c.created_at >= :now - interval '7 days' AND c.created_at <= :now
    """,
}


def load() -> list[Playbook]:
    """Every shipped playbook with its hand-written SQL."""
    return [
        Playbook(book.key, book.name, book.definition, HAND_SQL[book.key])
        for book in playbooks.all_playbooks()
    ]
