"""analytics_uplift

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 11:45:00

See docs/analytics.md (CLTV uplift). The ``analytics.uplift`` job computes the revenue
uplift of contacts reached by segmented campaigns over matched contacts that were not,
once a day or on demand, and stores the result here per (event, revenue property,
window): the API and ``postwise report uplift`` read one row instead of scanning events.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_uplift",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event", sa.String(length=255), nullable=False),
        sa.Column("revenue_property", sa.String(length=255), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_analytics_uplift_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_uplift")),
        sa.UniqueConstraint(
            "workspace_id",
            "event",
            "revenue_property",
            "window_days",
            name="uq_analytics_uplift_params",
        ),
    )


def downgrade() -> None:
    op.drop_table("analytics_uplift")
