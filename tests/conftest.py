"""Shared fixtures: a real database per test (SQLite always, PostgreSQL when configured) and the fake Slack API."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.fakes.slack_api import FakeSlackApi

POSTGRES_URL = os.environ.get("AIOS_TEST_POSTGRES_URL")
POSTGRES_REQUIRED = os.environ.get("AIOS_REQUIRE_POSTGRES") == "1"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a throwaway PostgreSQL database dropped afterwards. It holds the newest
    schema already, copied from one migrated per test process (migrating every test's database from nothing took
    a good part of the suite's time: on PostgreSQL, created, migrated and dropped, 480-530 ms a database against
    150-230 ms created from a migrated template, with as much written to the WAL either way, 5 MB, as
    CREATE DATABASE copies template1 too); a test marked ``empty_database`` gets it empty, to migrate itself."""
    empty = request.node.get_closest_marker("empty_database") is not None
    if request.param == "sqlite":
        path = Path(tmp_path) / "aios.db"
        if not empty:
            shutil.copyfile(await _migrated_sqlite(), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if not POSTGRES_URL:
        if POSTGRES_REQUIRED:
            pytest.fail("AIOS_REQUIRE_POSTGRES=1 but AIOS_TEST_POSTGRES_URL is not set")
        pytest.skip(
            "PostgreSQL tests need AIOS_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)"
        )
    template = None if empty else await _migrated_postgres(POSTGRES_URL)
    async with throwaway_postgres(POSTGRES_URL, template=template) as url:
        yield url


# Per test process: the migrated SQLite file, the migrated PostgreSQL database.
_templates: dict[str, str] = {}


async def _migrate(url: str) -> None:
    from storage.engine import create_engine
    from storage.migrate import upgrade_to_head

    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


async def _migrated_sqlite() -> Path:
    if "sqlite" not in _templates:
        path = Path(tempfile.mkdtemp(prefix="aios-template-")) / "aios.db"
        await _migrate(f"sqlite+aiosqlite:///{path}")
        _templates["sqlite"] = str(path)
    return Path(_templates["sqlite"])


async def _migrated_postgres(base_url: str) -> str:
    """A database at the newest schema that each test's database is created from (CREATE DATABASE … TEMPLATE,
    which needs no one else connected to it: each test process has its own), dropped when the process ends."""
    if "postgresql" not in _templates:
        template = throwaway_postgres(base_url)
        url = await template.__aenter__()
        _dropped_at_exit.append(template)  # a migration that fails leaves it too
        await _migrate(url)
        _templates["postgresql"] = template.name
    return _templates["postgresql"]


_dropped_at_exit: list[throwaway_postgres] = []


@pytest.fixture(scope="session", autouse=True)
def _drop_templates() -> Iterator[None]:
    yield
    import asyncio

    for template in _dropped_at_exit:
        asyncio.run(template.__aexit__())


class throwaway_postgres:
    def __init__(self, base_url: str, *, template: str | None = None) -> None:
        self.base = make_url(base_url)
        self.name = f"aios_test_{uuid.uuid4().hex[:12]}"
        self.template = template

    def _dsn(self, database: str) -> str:
        return self.base.set(drivername="postgresql", database=database).render_as_string(hide_password=False)

    async def __aenter__(self) -> str:
        import asyncpg

        try:
            connection = await asyncpg.connect(self._dsn(self.base.database or "postgres"), timeout=10)
        except (OSError, asyncpg.PostgresError) as exc:
            message = f"PostgreSQL at {self.base.render_as_string()} is unreachable: {exc}"
            if POSTGRES_REQUIRED:
                pytest.fail(message)
            pytest.skip(message)
        try:
            copied = f' TEMPLATE "{self.template}"' if self.template else ""
            await connection.execute(f'CREATE DATABASE "{self.name}"{copied}')
        finally:
            await connection.close()
        return self.base.set(drivername="postgresql+asyncpg", database=self.name).render_as_string(
            hide_password=False
        )

    async def __aexit__(self, *exc: object) -> None:
        import asyncpg

        connection = await asyncpg.connect(self._dsn(self.base.database or "postgres"), timeout=10)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await connection.close()


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as api:
        yield api


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()
