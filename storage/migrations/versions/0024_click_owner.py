"""click.owner, action_edit.owner: the lease of the process deciding the click or the edit;
rejection_reason.received_by: the lease of the process that stored the reason

Revision ID: 0024
Revises: 0023
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("click", "action_edit"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner", sa.Integer(), nullable=True))
    with op.batch_alter_table("rejection_reason") as batch:
        batch.add_column(sa.Column("received_by", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rejection_reason") as batch:
        batch.drop_column("received_by")
    for table in ("click", "action_edit"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("owner")
