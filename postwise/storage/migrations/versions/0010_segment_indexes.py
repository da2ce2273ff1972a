"""Segment indexes on events: one name's events per contact; human opens and clicks

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 08:40:00

Segment SQL asks "which contacts did NAME (and when)": grouped per contact for a full
count, probed for one contact for real-time membership.

* ``(workspace_id, name, contact_id, occurred_at)``: one name's events in contact order,
  without their rows for existence, "not followed by" and first/last-time tests
  (index-only scans), and a per-contact probe. On 20,000,000 events the "trial
  downloaded, not purchased" count went from 2.4-3.8 s to 0.4-1.0 s.
* ``ix_events_ws_human_engagement``: opens and clicks that are not labelled a machine's,
  the human-only filter of every email engagement condition. That test reads JSON
  (``properties -> 'machine'``), so without this index each open of a window is read
  from the table; with it "opened 5+ in 30 days" and "no open or click in 90 days" are
  index-only. Partial, so sends, deliveries and machine opens cost no index write. Its
  predicate is the compiler's text for PostgreSQL (``jsonsql.json_is_true``): change
  both together. The SQLite predicate says the same in SQLite's JSON functions.

Sizes, timings and the insert cost: docs/segments.md (Benchmarks).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

HUMAN_ENGAGEMENT_PG = (
    "type = 'email' AND name IN ('Email Opened', 'Email Clicked') "
    "AND NOT coalesce((properties -> 'machine') = CAST('true' AS JSONB), false)"
)
HUMAN_ENGAGEMENT_SQLITE = (
    "type = 'email' AND name IN ('Email Opened', 'Email Clicked') "
    "AND coalesce(json_type(properties, '$.machine'), '') <> 'true'"
)

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_ws_name_contact_at",
            ["workspace_id", "name", "contact_id", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_events_ws_human_engagement",
            ["workspace_id", "name", "occurred_at", "contact_id"],
            unique=False,
            postgresql_where=sa.text(HUMAN_ENGAGEMENT_PG),
            sqlite_where=sa.text(HUMAN_ENGAGEMENT_SQLITE),
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_ws_human_engagement")
        batch_op.drop_index("ix_events_ws_name_contact_at")
