"""the audit chain: one hash-linked entry per write of a proposed action, decision, approval, vote,
capability, execution, execution attempt or policy version; existing records get a first entry each, so an
upgraded store verifies

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("record_table", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.String(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_entry_record", "audit_entry", ["record_table", "record_id"])
    op.create_index(op.f("ix_audit_entry_recorded_at"), "audit_entry", ["recorded_at"])
    # The hashing is the running code's, so that the first entries and every later one agree.
    from storage.audit import genesis

    genesis(op.get_bind())


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_entry_recorded_at"), table_name="audit_entry")
    op.drop_index("ix_audit_entry_record", table_name="audit_entry")
    op.drop_table("audit_entry")
