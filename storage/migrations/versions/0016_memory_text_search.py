"""memory_text_search: PostgreSQL keeps each memory's tsvector (english) in a generated column with the GIN index
on it, so that ranking a match no longer parses its text again (to_tsvector per matching row, for the recheck and
for ts_rank_cd, took most of a keyword search's time)

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE memory ADD COLUMN text_search tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED"
    )
    op.execute("DROP INDEX IF EXISTS ix_memory_text_search")
    op.execute("CREATE INDEX ix_memory_text_search ON memory USING gin (text_search)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_memory_text_search")
    op.execute("ALTER TABLE memory DROP COLUMN text_search")
    op.execute("CREATE INDEX ix_memory_text_search ON memory USING gin (to_tsvector('english', text))")
