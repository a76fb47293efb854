"""The Alembic migrations build exactly the schema the records describe, on every backend."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlmodel import SQLModel

import storage.records  # noqa: F401  (the tables)
from storage.engine import create_engine
from storage.migrate import include_name, upgrade_to_head

# These tests migrate their databases themselves, from nothing or from an older schema.
pytestmark = pytest.mark.empty_database


async def test_migrations_match_the_records_and_run_twice(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)  # every start runs it: the second time is a no-op

        def differences(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"include_name": include_name})
            return list(compare_metadata(context, SQLModel.metadata))

        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
