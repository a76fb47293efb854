"""`GET /healthz` reads without a writer's lock: a load balancer's checks neither wait for writers nor make them
wait."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient

from bot.bootstrap import Aios
from bot.slack_app import build_slack_app
from bot.web import build_web_app
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET


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
