"""analytics_rollups, analytics_first_seen, analytics_watermarks, contact_engagement

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 09:43:05

See docs/analytics.md. Reports read hourly counters in ``analytics_rollups`` and never the
raw events; ``analytics_first_seen`` makes unique opens/clicks exact and incremental; the
watermark is moved in the same transaction as the counters, so a crashed rollup is redone
rather than counted twice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analytics_first_seen",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_key", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_analytics_first_seen_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_first_seen")),
        sa.UniqueConstraint(
            "workspace_id", "campaign_key", "contact_id", "kind", name="uq_analytics_first_seen_key"
        ),
    )
    op.create_table(
        "analytics_rollups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_key", sa.String(length=200), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("dimension_id", sa.String(length=255), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent", sa.BigInteger(), nullable=False),
        sa.Column("delivered", sa.BigInteger(), nullable=False),
        sa.Column("deferred", sa.BigInteger(), nullable=False),
        sa.Column("bounced_hard", sa.BigInteger(), nullable=False),
        sa.Column("bounced_soft", sa.BigInteger(), nullable=False),
        sa.Column("filter_blocked", sa.BigInteger(), nullable=False),
        sa.Column("opens_human", sa.BigInteger(), nullable=False),
        sa.Column("opens_machine", sa.BigInteger(), nullable=False),
        sa.Column("unique_opens_human", sa.BigInteger(), nullable=False),
        sa.Column("unique_opens_machine", sa.BigInteger(), nullable=False),
        sa.Column("clicks_human", sa.BigInteger(), nullable=False),
        sa.Column("clicks_machine", sa.BigInteger(), nullable=False),
        sa.Column("unique_clicks_human", sa.BigInteger(), nullable=False),
        sa.Column("unique_clicks_machine", sa.BigInteger(), nullable=False),
        sa.Column("conversions", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.Float(), nullable=False),
        sa.Column("unsubscribes", sa.BigInteger(), nullable=False),
        sa.Column("complaints", sa.BigInteger(), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_analytics_rollups_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_rollups")),
        sa.UniqueConstraint(
            "workspace_id",
            "campaign_key",
            "dimension",
            "dimension_id",
            "bucket",
            name="uq_analytics_rollups_key",
        ),
    )
    op.create_table(
        "analytics_watermarks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("events_rolled", sa.BigInteger(), nullable=False),
        sa.Column("last_attribution_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_analytics_watermarks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_watermarks")),
        sa.UniqueConstraint("workspace_id", name=op.f("uq_analytics_watermarks_workspace_id")),
    )
    op.create_table(
        "contact_engagement",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_engagement_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contact_engagement_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_engagement")),
        sa.UniqueConstraint(
            "workspace_id", "contact_id", name=op.f("uq_contact_engagement_workspace_id_contact_id")
        ),
    )
    with op.batch_alter_table("contact_engagement", schema=None) as batch_op:
        batch_op.create_index(
            "ix_contact_engagement_ws_score", ["workspace_id", "score"], unique=False
        )
    op.create_index(
        "ix_campaign_recipients_ws_outbox",
        "campaign_recipients",
        ["workspace_id", "outbox_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_recipients_ws_outbox", table_name="campaign_recipients")
    with op.batch_alter_table("contact_engagement", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_engagement_ws_score")

    op.drop_table("contact_engagement")
    op.drop_table("analytics_watermarks")
    op.drop_table("analytics_rollups")
    op.drop_table("analytics_first_seen")
