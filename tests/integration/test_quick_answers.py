"""`/aios status`, `pending`, `cost` and `help` are answered in the ack (Slack shows it to the asker alone), from
reads that take no writer's turn: nothing is posted after the ack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import event, text

from bot.bootstrap import Aios
from bot.queries import status
from bot.slack_app import NOT_READ, build_slack_app
from bot.slash import HELP
from bot.web import build_web_app
from runtime.messages import PauseAgent
from tests.conftest import Clock
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, sign, slash_command
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, ask


@pytest.fixture
async def slack_events(aios: Aios, slack_api: FakeSlackApi) -> AsyncIterator[TestClient[Any, Any]]:
    """The real web app and Bolt listeners of the bot, to post signed Slack payloads to."""
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def acked(events: TestClient[Any, Any], words: str) -> str:
    """The text of the ack to `/aios <words>` (Bolt sends an ack of text alone as the body)."""
    body, content_type = slash_command(words, user=REQUESTER)
    response = await events.post(
        "/slack/events", data=body, headers={"Content-Type": content_type, **sign(body)}
    )
    assert response.status == 200
    return await response.text()


async def test_status_pending_cost_and_help_are_the_ack_itself_and_nothing_is_posted_after(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any], clock: Clock
) -> None:
    await ask(aios, "refund order 1001 $250 arrived broken")
    await aios.process(PauseAgent("content", MANAGER, CHANNEL))
    clock.advance(
        minutes=7, seconds=30
    )  # the approval was stored a few (real) seconds after the clock was set
    posted = len(slack_api.calls)

    said = await acked(slack_events, "status")
    assert said.startswith("*Runs by state* — awaiting_approval: 1. Approvals waiting: 1.")
    assert "• `R-1` returns — awaiting_approval" in said
    assert said.endswith(f"Paused agents: content (by <@{MANAGER}>)")
    pending = await acked(slack_events, "pending")
    assert pending.startswith("*Approvals waiting*\n• `AP-1` shop.refund")
    assert f"asked by <@{REQUESTER}> 7 min ago, needs manager" in pending
    assert (await acked(slack_events, "cost week")).startswith("No model calls week")
    assert await acked(slack_events, "help") == HELP
    assert (await acked(slack_events, "pause")).startswith("Which agent?")

    await aios.background.drain()
    assert [c.method for c in slack_api.calls[posted:] if c.method != "auth.test"] == []  # Bolt's, once


async def test_status_is_read_in_one_statement_while_a_writer_holds_the_store(
    aios: Aios, slack_events: TestClient[Any, Any]
) -> None:
    await ask(aios, "refund order 1001 $250 arrived broken")
    sent: list[str] = []

    def note(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(statement)

    async with aios.units() as writer:
        # Begun: on SQLite, it holds the process's writer lock and the file's.
        await writer.session.connection()
        event.listen(aios.engine.sync_engine, "before_cursor_execute", note)
        try:
            async with asyncio.timeout(5):  # a read taking a writer's turn would wait for ever
                said = await acked(slack_events, "status")
        finally:
            event.remove(aios.engine.sync_engine, "before_cursor_execute", note)
    assert "Approvals waiting: 1." in said
    assert len(sent) == 1 and sent[0].startswith("SELECT")
    assert said == await status(aios.units)  # the same answer `aios chat` and the tests read


async def test_a_store_that_cannot_be_read_is_said_in_the_ack(
    aios: Aios, slack_events: TestClient[Any, Any]
) -> None:
    async with aios.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE run RENAME TO run_gone"))
    try:
        assert await acked(slack_events, "status") == NOT_READ
    finally:
        async with aios.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE run_gone RENAME TO run"))
