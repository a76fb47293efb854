"""Alembic migrations, run from the code (``aios db upgrade`` and at every start)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """The keyword indexes (SQLite's memory_fts tables, PostgreSQL's text-search column and its index) are made by
    hand in a migration, not from the models, so schema comparisons leave them out."""
    if name is None:
        return True
    return not (type_ == "table" and name.startswith("memory_fts")) and name not in (
        "ix_memory_text_search",
        "text_search",
    )


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# Any constant will do: every replica takes the same PostgreSQL advisory lock around its migration.
MIGRATION_LOCK = 7_246_861_529


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Migrate to the newest schema. Replicas starting together take turns (a transaction-scoped advisory lock
    on PostgreSQL; SQLite's single writer on SQLite), so the second finds the work done.

    A store already at the newest schema is recognised without loading Alembic, which takes longer to import
    than a short command takes to run."""
    if await _current_revision(engine) == newest_revision():
        return
    from alembic import command

    def _upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        command.upgrade(alembic_config(connection), "head")

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def newest_revision() -> str:
    """The head's revision id, read from the file names: each migration is named after its revision id
    (``0005_ids_never_reused.py`` is revision 0005) and they are numbered in order. A test holds this against
    Alembic's own answer."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


async def _current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        try:
            revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except DBAPIError:  # no alembic_version table: a new database
            return None
    return None if revision is None else str(revision)
