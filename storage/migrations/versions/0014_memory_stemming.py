"""memory_stemming: the SQLite keyword index stems English words and folds case and accents, so "refund" finds
"refunded" (PostgreSQL's index already does, through the english text search configuration)

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STEMMING = "porter unicode61 remove_diacritics 2"
PLAIN = "unicode61"


def upgrade() -> None:
    _rebuild_fts(STEMMING)


def downgrade() -> None:
    _rebuild_fts(PLAIN)


def _rebuild_fts(tokenize: str) -> None:
    """Replace memory_fts with one that tokenizes so, refilled from the memory table (it is external-content)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in ("memory_fts_insert", "memory_fts_delete", "memory_fts_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS memory_fts")
    op.execute(
        f"CREATE VIRTUAL TABLE memory_fts USING fts5(text, content='memory', content_rowid='id', "
        f"tokenize='{tokenize}')"
    )
    op.execute("INSERT INTO memory_fts(memory_fts) VALUES ('rebuild')")
    op.execute(
        "CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory BEGIN "
        "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END"
    )
    op.execute(
        "CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory BEGIN "
        "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); END"
    )
    op.execute(
        "CREATE TRIGGER memory_fts_update AFTER UPDATE OF text ON memory BEGIN "
        "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); "
        "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END"
    )
