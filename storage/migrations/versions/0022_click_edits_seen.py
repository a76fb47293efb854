"""click.edits_seen: how many edits of the request the clicked card showed

Revision ID: 0022
Revises: 0021
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("click") as batch:
        batch.add_column(sa.Column("edits_seen", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("click") as batch:
        batch.drop_column("edits_seen")
