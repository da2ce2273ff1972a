"""outbox claim index

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24 12:40:00

See docs/delivery.md (Claiming). A claim takes the earliest due queued or deferred rows
in ``(next_attempt_at, id)`` order; with ``ix_outbox_due`` (status, next_attempt_at) the
database read every due row of both statuses and sorted them for each claim (12 ms per
claim of 200 with 20,000 queued). This partial index holds exactly the rows a claim
looks for, in the claim's order, so a claim reads its ``limit`` rows off the front.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING = "status IN ('queued', 'deferred')"


def upgrade() -> None:
    op.create_index(
        "ix_outbox_claim",
        "outbox",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text(_WAITING),
        sqlite_where=sa.text(_WAITING),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_claim", table_name="outbox")
