"""workflow_routed_events

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24 11:40:00

See docs/workflows.md (real time). The ``workflows.route`` job claims each event it hands
to workflows by inserting its id here (``ON CONFLICT DO NOTHING``): every event of a
batch is routed, and exactly once, however route jobs of overlapping windows interleave.
Rows go with their event (``ON DELETE CASCADE``: retention and erasure).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflow_routed_events",
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["events.id"],
            name=op.f("fk_workflow_routed_events_event_id_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_workflow_routed_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_workflow_routed_events")),
    )


def downgrade() -> None:
    op.drop_table("workflow_routed_events")
