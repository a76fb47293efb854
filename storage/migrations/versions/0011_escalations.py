"""escalations: runs handed to people instead of a guess (who was asked, why, what, and how it ended)

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("question", sa.String(), nullable=False),
        sa.Column("asked", sa.JSON(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("thread_ts", sa.String(length=40), nullable=True),
        sa.Column("message_ts", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("resolved_by", sa.String(length=40), nullable=True),
        sa.Column("answer", sa.String(), nullable=True),
        sa.Column("answer_run_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.ForeignKeyConstraint(["answer_run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )
    op.create_index(op.f("ix_escalation_thread_ts"), "escalation", ["thread_ts"])
    op.create_index(op.f("ix_escalation_status"), "escalation", ["status"])
    op.create_index(op.f("ix_escalation_created_at"), "escalation", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_escalation_created_at"), table_name="escalation")
    op.drop_index(op.f("ix_escalation_status"), table_name="escalation")
    op.drop_index(op.f("ix_escalation_thread_ts"), table_name="escalation")
    op.drop_table("escalation")
