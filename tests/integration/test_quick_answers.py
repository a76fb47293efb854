"""`/aios status`, `pending`, `cost` and `help` are answered in the ack (Slack shows it to the asker alone), from
reads that take no writer's turn: nothing is posted after the ack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import event, text

from bot import slack_app
from bot.bootstrap import Aios
from bot.queries import PENDING_LISTED, QUICK_ANSWER_MAX_AGE_SECONDS, quick_answers, status
from bot.shared_answers import SharedAnswers
from bot.slack_app import ANSWER_FOLLOWS, NOT_READ, QUICK_ANSWER_WAIT_SECONDS, build_slack_app
from bot.slash import HELP
from bot.web import build_web_app
from runtime.messages import PauseAgent
from storage.records import Approval, ProposedAction
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


async def acked(
    events: TestClient[Any, Any], words: str, response_url: str | None = "https://hooks.slack.test/commands/1"
) -> str:
    """The text of the ack to `/aios <words>` (Bolt sends an ack of text alone as the body)."""
    body, content_type = slash_command(words, user=REQUESTER, response_url=response_url)
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


async def test_an_answer_shows_a_change_made_here_at_once_and_one_made_elsewhere_within_a_second(
    aios: Aios, slack_events: TestClient[Any, Any]
) -> None:
    await ask(aios, "refund order 1001 $250 arrived broken")
    paused = f"Paused agents: content (by <@{MANAGER}>)"
    assert not (await acked(slack_events, "status")).endswith(paused)
    await aios.process(PauseAgent("content", MANAGER, CHANNEL))  # committed by this process
    assert (await acked(slack_events, "status")).endswith(paused)
    sent: list[str] = []

    def note(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(aios.engine.sync_engine, "before_cursor_execute", note)
    try:
        assert (await acked(slack_events, "status")).endswith(paused)  # asked again: the answer just read
    finally:
        event.remove(aios.engine.sync_engine, "before_cursor_execute", note)
    assert sent == []

    # Written beside this process's units of work, as another process (a worker, a replica) would.
    async with aios.engine.begin() as connection:
        await connection.execute(text("DELETE FROM agent_pause"))
    began = time.monotonic()
    while "Paused agents" in (said := await acked(slack_events, "status")):
        assert time.monotonic() - began <= QUICK_ANSWER_MAX_AGE_SECONDS
        await asyncio.sleep(0.05)
    assert said.startswith("*Runs by state* — awaiting_approval: 1.")


def ephemerals_since(slack_api: FakeSlackApi, posted: int) -> list[dict[str, Any]]:
    return [c.params for c in slack_api.calls[posted:] if c.method == "chat.postEphemeral"]


def responses_since(slack_api: FakeSlackApi, posted: int) -> list[dict[str, Any]]:
    return [c.params for c in slack_api.calls[posted:] if c.method == "response_url"]


async def test_a_read_waiting_on_a_lock_acks_in_time_and_the_answer_follows_privately(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any], database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's readers (WAL) wait for no writer: a PostgreSQL lock makes the read wait")
    await ask(aios, "refund order 1001 $250 arrived broken")
    posted = len(slack_api.calls)
    async with aios.engine.begin() as locker:
        await locker.execute(text("LOCK TABLE run IN ACCESS EXCLUSIVE MODE"))
        began = time.monotonic()
        assert await acked(slack_events, "status", slack_api.response_url) == ANSWER_FOLLOWS
        assert time.monotonic() - began < QUICK_ANSWER_WAIT_SECONDS + 0.5  # Slack waits 3 s
        assert responses_since(slack_api, posted) == []
    await aios.background.drain()  # the lock is released: the read ends and its answer is posted
    [answer] = responses_since(slack_api, posted)
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("*Runs by state* — awaiting_approval: 1. Approvals waiting: 1.")
    assert ephemerals_since(slack_api, posted) == []


class HeldReads:
    """The quick answers' reads held until released, as a read behind a lock or a full pool is."""

    def __init__(self, aios: Aios, monkeypatch: pytest.MonkeyPatch) -> None:
        self.released = asyncio.Event()
        self._answers = quick_answers(aios.units, aios.clock)
        monkeypatch.setattr(aios, "quick_answers", SharedAnswers(self._read))
        # Not 2 s a test: what is measured is what follows the ack, not how long it waited.
        monkeypatch.setattr(slack_app, "QUICK_ANSWER_WAIT_SECONDS", 0.2)

    async def _read(self, asked: tuple[str, str]) -> str:
        await self.released.wait()
        return await self._answers.ask(asked)


async def test_an_answer_read_late_reaches_the_asker_where_the_bot_may_not_post(
    aios: Aios,
    slack_api: FakeSlackApi,
    slack_events: TestClient[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asked in a channel the bot is not in (or a direct message between people), where chat.postEphemeral is
    refused: the answer follows through the command's response_url, which reaches the asker anywhere."""
    await ask(aios, "refund order 1001 $250 arrived broken")
    held = HeldReads(aios, monkeypatch)
    slack_api.fail_next("chat.postEphemeral", "channel_not_found")
    posted = len(slack_api.calls)
    assert await acked(slack_events, "status", slack_api.response_url) == ANSWER_FOLLOWS
    held.released.set()
    await aios.background.drain()
    assert [c.method for c in slack_api.calls[posted:] if c.method != "auth.test"] == ["response_url"]
    [answer] = responses_since(slack_api, posted)
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("*Runs by state* — awaiting_approval: 1. Approvals waiting: 1.")


async def test_an_answer_read_late_to_a_command_without_a_response_url_is_posted_ephemeral(
    aios: Aios,
    slack_api: FakeSlackApi,
    slack_events: TestClient[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = HeldReads(aios, monkeypatch)
    posted = len(slack_api.calls)
    assert await acked(slack_events, "help", response_url=None) == ANSWER_FOLLOWS
    held.released.set()
    await aios.background.drain()
    [answer] = ephemerals_since(slack_api, posted)
    assert (answer["user"], answer["channel"], answer["text"]) == (REQUESTER, CHANNEL, HELP)
    assert responses_since(slack_api, posted) == []


async def test_a_read_that_fails_for_any_reason_is_said_in_the_ack_and_logged(
    aios: Aios, slack_events: TestClient[Any, Any]
) -> None:
    """A stored value the answer cannot be made from (roles that are not a list) is no store outage: still an
    answer the asker sees, and the failure logged with its traceback."""
    await ask(aios, "refund order 1001 $250 arrived broken")
    async with aios.engine.begin() as connection:
        await connection.execute(text("UPDATE approval SET approver_roles = '5'"))
    with structlog.testing.capture_logs() as logged:
        assert await acked(slack_events, "pending") == NOT_READ
    [failed] = [e for e in logged if e["event"] == "query_failed"]
    assert failed["command"] == "pending" and failed["exc_info"] is True


async def test_a_read_cancelled_at_shutdown_is_still_answered_in_the_ack(
    aios: Aios, slack_events: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    HeldReads(aios, monkeypatch)
    monkeypatch.setattr(slack_app, "QUICK_ANSWER_WAIT_SECONDS", 5.0)
    asked = asyncio.create_task(acked(slack_events, "status"))
    await asyncio.sleep(0.2)
    await aios.quick_answers.close()  # as Aios.close does, with the read still held
    assert await asked == NOT_READ


async def test_pending_lists_the_oldest_waiting_approvals_and_counts_the_rest(
    aios: Aios, slack_events: TestClient[Any, Any]
) -> None:
    await ask(aios, "refund order 1001 $250 arrived broken")
    more = PENDING_LISTED + 4
    async with aios.units() as uow:
        approval = await uow.get(Approval, 1)
        assert approval is not None
        action = await uow.get(ProposedAction, approval.action_id)
        assert action is not None
        for order in range(more):
            copy = ProposedAction.model_validate(action.model_dump(exclude={"id"}))
            copy.params = {**action.params, "order_id": str(2000 + order)}
            uow.session.add(copy)
            await uow.session.flush()
            uow.session.add(
                Approval.model_validate({**approval.model_dump(exclude={"id"}), "action_id": copy.id})
            )
        await uow.commit()

    said = await acked(slack_events, "pending")
    lines = said.splitlines()
    assert lines[0] == "*Approvals waiting*"
    assert [line.split("`")[1] for line in lines[1:-1]] == [f"AP-{n}" for n in range(1, PENDING_LISTED + 1)]
    assert (
        lines[-1]
        == f"…and {more + 1 - PENDING_LISTED} more, newer: they are listed here as these are decided."
    )
