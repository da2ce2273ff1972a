"""contact_change_batches

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 11:40:00

See docs/imports.md (How it is fast). A CSV import records the contacts it creates once
per batch here instead of one ``contact_changes`` row per contact: every contact a batch
creates carries the batch's instant as ``created_at``, so a contact's timeline finds its
"created by import" entry by that instant. ``ix_contacts_ws_status`` goes: a status has a
handful of values, so no query reads contacts through it, and every contact write paid for it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contact_change_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column(
            "workspace_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contact_change_batches_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_change_batches")),
    )
    with op.batch_alter_table("contact_change_batches", schema=None) as batch_op:
        batch_op.create_index("ix_contact_change_batches_ws_at", ["workspace_id", "at"])
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_ws_status")


def downgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index("ix_contacts_ws_status", ["workspace_id", "status"], unique=False)
    with op.batch_alter_table("contact_change_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_change_batches_ws_at")
    op.drop_table("contact_change_batches")
