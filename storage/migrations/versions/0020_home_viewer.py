"""home_viewer: who opened the app's Home tab, and the hash of the Home published to them last

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "home_viewer",
        sa.Column("user", sa.String(length=40), nullable=False),
        sa.Column("team", sa.String(length=40), nullable=False),
        sa.Column("last_published_hash", sa.String(length=64), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user"),
    )
    op.create_index(op.f("ix_home_viewer_opened_at"), "home_viewer", ["opened_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_home_viewer_opened_at"), table_name="home_viewer")
    op.drop_table("home_viewer")
