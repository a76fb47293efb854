"""ids of deleted rows are never handed out again

Revision ID: 0005
Revises: 0004

Memories are the rows that get deleted (forget, expiry, summaries). SQLite without AUTOINCREMENT gives the next
row the highest id in use plus one, so forgetting the newest memory handed its id to the next one; the table is
rebuilt with AUTOINCREMENT. PostgreSQL sequences never hand out a number twice: nothing to do there.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The keyword index's triggers (from 0002): dropped with the old table, so made again on the new one.
FTS_TRIGGERS = {
    "memory_fts_insert": "AFTER INSERT ON memory BEGIN "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END",
    "memory_fts_delete": "AFTER DELETE ON memory BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "memory_fts_update": "AFTER UPDATE OF text ON memory BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END",
}


def _rebuild_memory(autoincrement: bool) -> None:
    for name in FTS_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    # Rows keep their ids, so the external-content keyword index still points at the right rows.
    with op.batch_alter_table(
        "memory", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
    for name, body in FTS_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")
    op.execute("INSERT INTO memory_fts(memory_fts) VALUES ('rebuild')")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _rebuild_memory(autoincrement=True)
    # Count on from the highest id ever shown: a memory forgotten before this migration may still be named
    # in a run's `memories_used` (and so in `/aios why`), even though its row is gone.
    op.execute("DELETE FROM sqlite_sequence WHERE name = 'memory'")
    op.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'memory', COALESCE(MAX(id), 0) FROM ("
        "SELECT id FROM memory UNION ALL "
        "SELECT CAST(used.value AS INTEGER) FROM run, json_each(run.memories_used) AS used)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _rebuild_memory(autoincrement=False)
