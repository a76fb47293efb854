"""rejection_reason.owner: the lease of the process planning the reason's revision

Revision ID: 0023
Revises: 0022
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rejection_reason") as batch:
        batch.add_column(sa.Column("owner", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rejection_reason") as batch:
        batch.drop_column("owner")
