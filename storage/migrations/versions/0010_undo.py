"""/aios undo: the action an undo takes back, and people's requests to undo (one claim per attempt)

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: no action before this revision undoes another (compensations keep using `compensates`).
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in place; Alembic would rebuild the whole table for it.
        op.execute(
            "ALTER TABLE proposed_action ADD COLUMN undoes_action_id INTEGER REFERENCES proposed_action (id)"
        )
    else:
        op.add_column(
            "proposed_action",
            sa.Column("undoes_action_id", sa.Integer(), sa.ForeignKey("proposed_action.id"), nullable=True),
        )
    op.create_index(op.f("ix_proposed_action_undoes_action_id"), "proposed_action", ["undoes_action_id"])
    op.create_table(
        "undo_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("intent_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["proposed_action.id"]),
        sa.ForeignKeyConstraint(["intent_id"], ["intent.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id", "attempt", name="uq_undo_request_attempt"),
    )
    op.create_index(op.f("ix_undo_request_intent_id"), "undo_request", ["intent_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_undo_request_intent_id"), table_name="undo_request")
    op.drop_table("undo_request")
    op.drop_index(op.f("ix_proposed_action_undoes_action_id"), table_name="proposed_action")
    with op.batch_alter_table("proposed_action") as batch:
        batch.drop_column("undoes_action_id")
