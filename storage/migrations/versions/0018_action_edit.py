"""action_edit: a person's change to a waiting action's parameters, stored before Slack gets its ack

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "action_edit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=True),
        sa.Column("user", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("params_before", sa.JSON(), nullable=True),
        sa.Column("params_after", sa.JSON(), nullable=False),
        sa.Column("changed", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["proposed_action.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_action_edit_approval_id"), "action_edit", ["approval_id"])
    op.create_index(op.f("ix_action_edit_action_id"), "action_edit", ["action_id"])
    op.create_index(op.f("ix_action_edit_processed_at"), "action_edit", ["processed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_action_edit_processed_at"), table_name="action_edit")
    op.drop_index(op.f("ix_action_edit_action_id"), table_name="action_edit")
    op.drop_index(op.f("ix_action_edit_approval_id"), table_name="action_edit")
    op.drop_table("action_edit")
