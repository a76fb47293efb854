"""Shared fixtures: a real database per test (SQLite always, PostgreSQL when configured) and the fake Slack API."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url

from tests.fakes.slack_api import FakeSlackApi

POSTGRES_URL = os.environ.get("AIOS_TEST_POSTGRES_URL")
POSTGRES_REQUIRED = os.environ.get("AIOS_REQUIRE_POSTGRES") == "1"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a throwaway PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/aios.db"
        return
    if not POSTGRES_URL:
        if POSTGRES_REQUIRED:
            pytest.fail("AIOS_REQUIRE_POSTGRES=1 but AIOS_TEST_POSTGRES_URL is not set")
        pytest.skip(
            "PostgreSQL tests need AIOS_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)"
        )
    async with throwaway_postgres(POSTGRES_URL) as url:
        yield url


class throwaway_postgres:
    def __init__(self, base_url: str) -> None:
        self.base = make_url(base_url)
        self.name = f"aios_test_{uuid.uuid4().hex[:12]}"

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
            await connection.execute(f'CREATE DATABASE "{self.name}"')
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
