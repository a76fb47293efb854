"""`GET /healthz` reads a row of a real table of the store, without a writer's lock: a load balancer's checks
neither wait for writers nor make them wait, and a store that cannot be read (on SQLite: a file deleted, truncated
or overwritten under the running bot) is unhealthy."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

import bot.web as web_module
from bot.bootstrap import Aios
from bot.slack_app import build_slack_app
from bot.web import build_web_app
from storage import engine
from tests.conftest import Clock
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET
from tests.integration.conftest import start_aios


async def test_healthz_answers_while_a_writer_holds_the_store(aios: Aios, slack_api: FakeSlackApi) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
    async with TestClient(TestServer(app)) as web, aios.units() as writer:
        # Begun: on SQLite it holds the file's write lock, which a writing connection would wait 30 s for.
        await writer.session.connection()
        async with asyncio.timeout(5):
            response = await web.get("/healthz")
        assert response.status == 200
        assert (await response.json())["database"] == "ok"


@pytest.fixture
async def web(aios: Aios, slack_api: FakeSlackApi) -> AsyncIterator[TestClient[Any, Any]]:
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
    async with TestClient(TestServer(app)) as web:
        yield web


async def health(web: TestClient[Any, Any]) -> tuple[int, dict[str, Any]]:
    async with asyncio.timeout(5):
        response = await web.get("/healthz")
        return response.status, await response.json()


async def test_healthz_is_unhealthy_when_the_schemas_table_cannot_be_read(
    aios: Aios, web: TestClient[Any, Any]
) -> None:
    assert (await health(web))[0] == 200
    async with aios.engine.begin() as connection:
        await connection.execute(text("DROP TABLE alembic_version"))
    status, body = await health(web)
    assert status == 503
    assert body["ok"] is False


def truncated(path: Path) -> None:
    os.truncate(path, 0)


def overwritten(path: Path) -> None:
    with path.open("r+b") as file:
        file.seek(4096)  # past the header, over the pages of the tables
        file.write(os.urandom(path.stat().st_size - 4096))


def deleted(path: Path) -> None:
    path.unlink()


@contextmanager
def broken_file(path: Path, broken: Callable[[Path], None]) -> Iterator[None]:
    """The SQLite file broken meanwhile (and no other made in its place), then put back for the bot's shutdown."""
    checkpoint = sqlite3.connect(path)  # the pages in the file, as SQLite leaves them from time to time
    try:
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        checkpoint.close()
    kept = path.read_bytes()
    broken(path)
    try:
        yield
        assert broken is not deleted or not path.exists()
    finally:
        path.write_bytes(kept)


@pytest.mark.parametrize("broken", [truncated, overwritten, deleted])
async def test_healthz_is_unhealthy_when_the_sqlite_file_is_broken_under_the_running_bot(
    aios: Aios, web: TestClient[Any, Any], broken: Callable[[Path], None]
) -> None:
    if aios.engine.dialect.name != "sqlite":
        pytest.skip("a SQLite file")
    assert aios.engine.url.database is not None
    assert (await health(web))[0] == 200  # the pool's connections are open, their caches warm
    with broken_file(Path(aios.engine.url.database), broken):
        status, body = await health(web)
    assert status == 503
    assert body["ok"] is False


@pytest.mark.parametrize("written", ["{folder}//aios.db", "/{folder}/aios.db", "relative"])
async def test_healthz_reads_the_sqlite_file_wherever_its_url_puts_it(
    slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    """Paths as a template may leave them (a doubled slash, one at the start) or relative to where it started."""
    monkeypatch.chdir(tmp_path)
    path = "stores/aios.db" if written == "relative" else written.format(folder=tmp_path)
    aios = await start_aios(f"sqlite+aiosqlite:///{path}", slack_api, clock, tmp_path)
    try:
        client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
        app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
        monkeypatch.chdir(tmp_path / "stores" if written == "relative" else "/")  # moved on since it started
        async with TestClient(TestServer(app)) as web:
            assert await health(web) == (200, {"ok": True, "database": "ok", "planner": aios.llm.name})
    finally:
        await aios.close()


async def test_healthz_checks_arriving_together_share_one_read_of_the_store(
    aios: Aios, slack_api: FakeSlackApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read opens a connection of its own (on SQLite, a thread): a flood of checks opens a few, not one each."""
    reads = 0

    def counting(store: Any) -> Callable[[], Awaitable[str]]:
        read = engine.store_reader(store)

        async def counted() -> str:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.05)
            return await read()

        return counted

    monkeypatch.setattr(web_module, "store_reader", counting)
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
    async with TestClient(TestServer(app)) as web:
        answers = await asyncio.gather(*(health(web) for _ in range(50)))
    assert {status for status, _ in answers} == {200}
    assert 1 <= reads <= 3
