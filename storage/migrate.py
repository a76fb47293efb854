"""Alembic migrations, run from the code (``aios db upgrade`` and at every start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """The keyword indexes (SQLite's memory_fts tables, PostgreSQL's text-search index) are made by hand in a
    migration, not from the models, so schema comparisons leave them out."""
    if name is None:
        return True
    return not (type_ == "table" and name.startswith("memory_fts")) and name != "ix_memory_text_search"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# Any constant will do: every replica takes the same PostgreSQL advisory lock around its migration.
MIGRATION_LOCK = 7_246_861_529


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Migrate to the newest schema. Replicas starting together take turns (a transaction-scoped advisory lock
    on PostgreSQL; SQLite's single writer on SQLite), so the second finds the work done."""

    def _upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        command.upgrade(alembic_config(connection), "head")

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
