"""Ids that people see are never given to a second row: `M-3` in an old `/aios why` still means that memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore
from storage.migrate import alembic_config, upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory

# These tests migrate their databases themselves, from nothing or from an older schema.
pytestmark = pytest.mark.empty_database

TEAM = "T0IDS"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def test_a_forgotten_memorys_id_is_not_given_to_the_next(engine: AsyncEngine) -> None:
    await upgrade_to_head(engine)
    memory = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine))
    first, _ = await memory.remember(TEAM, "Ana prefers email")
    newest, _ = await memory.remember(TEAM, "Ben prefers phone")
    assert await memory.forget(TEAM, newest)
    after, _ = await memory.remember(TEAM, "Cleo prefers post")
    assert after > newest > first
    [hit] = await memory.search(TEAM, "Cleo")
    assert hit.id == after  # the keyword index follows the rebuilt table


async def test_the_upgrade_counts_on_from_ids_forgotten_before_it(
    database_url: str, engine: AsyncEngine
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL sequences never handed out an id twice; the migration does nothing there")

    def migrate(connection: Connection, revision: str) -> None:
        command.upgrade(alembic_config(connection), revision)

    async with engine.begin() as connection:
        await connection.run_sync(migrate, "0004")
    memory = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine))
    kept, _ = await memory.remember(TEAM, "Ana prefers email")
    gone, _ = await memory.remember(TEAM, "Ben prefers phone")
    assert await memory.forget(TEAM, gone)
    # An older run told people it used M-7, a memory forgotten long ago.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO intent (source, team_id, channel, user, text, status, created_at) "
                "VALUES ('console', 'T0IDS', 'C1', 'U1', 'x', 'done', '2026-01-01')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO run (intent_id, agent, status, rationale, created_at, updated_at, memories_used) "
                "VALUES (1, 'returns', 'completed', '', '2026-01-01', '2026-01-01', '[7]')"
            )
        )
    await upgrade_to_head(engine)
    added, _ = await memory.remember(TEAM, "Cleo prefers post")
    assert added == 8
    assert [hit.id for hit in await memory.search(TEAM, "Ana")] == [kept]
