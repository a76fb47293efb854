"""`aios serve` with PostgreSQL gone (its connections cut and refused): every Slack request still gets a clear
answer, and an event it could not store is answered so that Slack delivers it again."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from sqlalchemy import make_url

from bot.queries import QUICK_ANSWER_MAX_AGE_SECONDS
from bot.slack_app import NOT_READ, NOT_STORED
from bot.slash import HELP
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, sign, slash_command
from tests.fakes.tcp_proxy import TcpProxy

REQUESTER = "U0ALICE"


async def post(url: str, body: str, content_type: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/slack/events",
            data=body,
            headers={"Content-Type": content_type, **sign(body)},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response,
    ):
        return response.status, await response.text()


async def test_with_postgresql_down_quick_answers_and_intents_are_answered_and_a_mention_is_asked_again(
    postgres_database: str,
) -> None:
    database = make_url(postgres_database)
    with (
        TcpProxy(database.host or "127.0.0.1", database.port or 5432) as proxy,
        FakeSlackApi() as slack,
        running_aios_serve(
            aios_env(database.set(host="127.0.0.1", port=proxy.port).render_as_string(False), slack.url)
        ) as serve,
    ):
        assert (await post(serve.url, *slash_command("status", user=REQUESTER)))[1].startswith("No runs yet")
        proxy.close()
        await asyncio.sleep(QUICK_ANSWER_MAX_AGE_SECONDS)  # past the time the answer just read is given again

        for words in ("status", "pending", "cost week"):
            assert await post(serve.url, *slash_command(words, user=REQUESTER)) == (200, NOT_READ)
        assert await post(serve.url, *slash_command("help", user=REQUESTER)) == (200, HELP)
        intent = slash_command("refund $5 on order 1002", user=REQUESTER)
        assert await post(serve.url, *intent) == (200, NOT_STORED)
        mention = app_mention("refund $5 on order 1002", user=REQUESTER, ts="1700000001.000100")
        assert (await post(serve.url, *mention))[0] == 503  # Slack delivers it again later
        records = [json.loads(line) for line in serve.log.read_text().splitlines() if line.strip()]
    failures = {r["event"] for r in records if r.get("level") == "error"}
    assert {"query_not_answered", "intent_not_stored", "slack_listener_failed"} <= failures
