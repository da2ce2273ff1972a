"""campaigns, campaign_variants, campaign_recipients, campaign_attributions; outbox campaign index

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 09:21:45

See docs/campaigns.md. ``campaign_recipients`` is the audience snapshot, unique per
(campaign, contact) so a fan-out re-run after a crash adds nobody twice. The partial
outbox index serves pause/resume/cancel of one campaign's unsent rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("template_id", sa.String(length=200), nullable=True),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("from_name", sa.String(length=200), nullable=True),
        sa.Column("from_address", sa.String(length=320), nullable=True),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("sending_domain", sa.String(length=255), nullable=True),
        sa.Column(
            "utm",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "audience",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "schedule",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pace_per_minute", sa.Float(), nullable=True),
        sa.Column("goal_event", sa.String(length=200), nullable=True),
        sa.Column("attribution_window_hours", sa.Integer(), nullable=False),
        sa.Column("revenue_property", sa.String(length=200), nullable=True),
        sa.Column("credit", sa.String(length=16), nullable=False),
        sa.Column(
            "ab",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "ab_result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("winner_variant", sa.String(length=16), nullable=True),
        sa.Column(
            "guardrails",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("recipient_count", sa.Integer(), nullable=False),
        sa.Column("fanout_cursor", sa.BigInteger(), nullable=False),
        sa.Column("test_send_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaigns_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("workspace_id", "key", name=op.f("uq_campaigns_workspace_id_key")),
    )
    op.create_index("ix_campaigns_status_send_at", "campaigns", ["status", "send_at"], unique=False)
    op.create_table(
        "campaign_variants",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("from_name", sa.String(length=200), nullable=True),
        sa.Column("preheader", sa.Text(), nullable=True),
        sa.Column("template_id", sa.String(length=200), nullable=True),
        sa.Column("template_version", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_variants_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaign_variants_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_variants")),
        sa.UniqueConstraint(
            "campaign_id", "key", name=op.f("uq_campaign_variants_campaign_id_key")
        ),
    )
    op.create_table(
        "campaign_attributions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("campaign_key", sa.String(length=200), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("goal_event", sa.String(length=200), nullable=False),
        sa.Column("touch", sa.String(length=16), nullable=False),
        sa.Column("touch_event_id", sa.BigInteger(), nullable=False),
        sa.Column("touch_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("variant", sa.String(length=16), nullable=True),
        sa.Column("revenue", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_attributions_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_campaign_attributions_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaign_attributions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_attributions")),
        sa.UniqueConstraint(
            "workspace_id", "event_id", name=op.f("uq_campaign_attributions_workspace_id_event_id")
        ),
    )
    op.create_index(
        "ix_campaign_attributions_campaign",
        "campaign_attributions",
        ["campaign_id", "converted_at"],
        unique=False,
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("company_id", sa.BigInteger(), nullable=True),
        sa.Column("source_kind", sa.String(length=8), nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("phase", sa.String(length=8), nullable=False),
        sa.Column("variant", sa.String(length=16), nullable=True),
        sa.Column("outbox_id", sa.BigInteger(), nullable=True),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_recipients_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_campaign_recipients_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaign_recipients_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
        sa.UniqueConstraint(
            "campaign_id", "contact_id", name=op.f("uq_campaign_recipients_campaign_id_contact_id")
        ),
    )
    op.create_index(
        "ix_campaign_recipients_campaign_phase",
        "campaign_recipients",
        ["campaign_id", "phase", "variant"],
        unique=False,
    )
    op.create_index(
        "ix_campaign_recipients_ws_contact",
        "campaign_recipients",
        ["workspace_id", "contact_id"],
        unique=False,
    )
    op.create_index(
        "ix_outbox_ws_campaign_status",
        "outbox",
        ["workspace_id", "campaign_key", "status"],
        unique=False,
        postgresql_where=sa.text("campaign_key IS NOT NULL"),
        sqlite_where=sa.text("campaign_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_outbox_ws_campaign_status",
        table_name="outbox",
        postgresql_where=sa.text("campaign_key IS NOT NULL"),
        sqlite_where=sa.text("campaign_key IS NOT NULL"),
    )
    op.drop_index("ix_campaign_recipients_ws_contact", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_campaign_phase", table_name="campaign_recipients")
    op.drop_table("campaign_recipients")
    op.drop_index("ix_campaign_attributions_campaign", table_name="campaign_attributions")
    op.drop_table("campaign_attributions")
    op.drop_table("campaign_variants")
    op.drop_index("ix_campaigns_status_send_at", table_name="campaigns")
    op.drop_table("campaigns")
