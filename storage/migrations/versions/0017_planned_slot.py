"""planned_slot: the posts a content calendar planned, each written with the executed draft that carries its time

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "planned_slot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("angle", sa.String(), nullable=False),
        sa.Column("planned_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("zone", sa.String(length=60), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["proposed_action.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("action_id"),
    )
    op.create_index(op.f("ix_planned_slot_team_id"), "planned_slot", ["team_id"])
    op.create_index(op.f("ix_planned_slot_planned_for"), "planned_slot", ["planned_for"])


def downgrade() -> None:
    op.drop_index(op.f("ix_planned_slot_planned_for"), table_name="planned_slot")
    op.drop_index(op.f("ix_planned_slot_team_id"), table_name="planned_slot")
    op.drop_table("planned_slot")
