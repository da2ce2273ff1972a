"""tracking: events keep the userId and client clock; identities map anonymous ids

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("original_timestamp", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_events_ws_user", ["workspace_id", "user_id"], unique=False)

    op.create_table(
        "identities",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("anonymous_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("contact_id", BIG_ID, nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workspace_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_identities_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_identities_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
        sa.UniqueConstraint(
            "workspace_id", "anonymous_id", name=op.f("uq_identities_workspace_id_anonymous_id")
        ),
    )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index("ix_identities_ws_user", ["workspace_id", "user_id"], unique=False)
        batch_op.create_index(
            "ix_identities_ws_contact", ["workspace_id", "contact_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index("ix_identities_ws_contact")
        batch_op.drop_index("ix_identities_ws_user")
    op.drop_table("identities")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_ws_user")
        batch_op.drop_column("original_timestamp")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("user_id")
