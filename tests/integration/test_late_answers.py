"""Answers that follow the ack — to `/aios why` and `replay`, `/aios calendar`, a click on a why answer's button
and "Explain this" — go through the payload's response_url when it is Slack's, which reaches the asker also
where chat.postEphemeral is refused (a channel the bot is not in, a direct message between people); by
chat.postEphemeral when the payload has no such URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient

from bot.bootstrap import Aios
from bot.slack_app import build_slack_app
from bot.slack_explain import EXPLAIN_CALLBACK_ID, NOT_MINE
from bot.web import build_web_app
from bot.why_blocks import WHY_OPEN_PREFIX
from tests.conftest import Clock
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, block_action, message_shortcut, sign, slash_command
from tests.integration.conftest import CHANNEL, REQUESTER, ask, start_aios

DM_BETWEEN_PEOPLE = "D0PEOPLE"  # a conversation the bot is not in: chat.postEphemeral is refused there


@pytest.fixture
async def slack_events(aios: Aios, slack_api: FakeSlackApi) -> AsyncIterator[TestClient[Any, Any]]:
    async with events_of(aios, slack_api) as test_client:
        yield test_client


def events_of(aios: Aios, slack_api: FakeSlackApi) -> TestClient[Any, Any]:
    """The real web app and Bolt listeners of the bot, to post signed Slack payloads to."""
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
    return TestClient(TestServer(app))


async def delivered(aios: Aios, events: TestClient[Any, Any], body: str, content_type: str) -> None:
    """The payload acked, and what it started after the ack done."""
    response = await events.post(
        "/slack/events", data=body, headers={"Content-Type": content_type, **sign(body)}
    )
    assert response.status == 200
    await aios.background.drain()


def said_since(slack_api: FakeSlackApi, posted: int) -> list[tuple[str, dict[str, Any]]]:
    """What the bot sent since, by method (a post to a response URL as ``response_url``)."""
    return [(c.method, c.params) for c in slack_api.calls[posted:] if c.method != "auth.test"]


def button_values(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def test_why_and_replay_answer_through_the_commands_response_url_with_their_blocks(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any]
) -> None:
    await ask(aios, "refund order 1001 $250 arrived broken")
    replay = f"replay R-1 {aios.policy.hash[:8]}"
    for words, starts in (("why AP-1", "*Why — R-1"), (replay, "Replay of R-1 under stored policy")):
        posted = len(slack_api.calls)
        body = slash_command(
            words, user=REQUESTER, channel=DM_BETWEEN_PEOPLE, response_url=slack_api.response_url
        )
        await delivered(aios, slack_events, *body)
        [(method, answer)] = said_since(slack_api, posted)
        assert method == "response_url", words
        assert (answer["response_type"], answer["replace_original"]) == ("ephemeral", False)
        assert answer["text"].startswith(starts) and answer["blocks"], words
    [why] = [c.params for c in slack_api.calls_to("response_url") if c.params["text"].startswith("*Why")]
    assert "R-1" in button_values(why["blocks"])


async def test_the_calendar_answers_through_the_commands_response_url(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any]
) -> None:
    posted = len(slack_api.calls)
    body = slash_command(
        "calendar", user=REQUESTER, channel=DM_BETWEEN_PEOPLE, response_url=slack_api.response_url
    )
    await delivered(aios, slack_events, *body)
    [(method, answer)] = said_since(slack_api, posted)
    assert (method, answer["response_type"]) == ("response_url", "ephemeral")
    assert answer["text"].startswith("Content calendar: ")
    assert answer["blocks"][0]["block_id"] == "aios_calendar_header"


async def test_a_why_button_and_explain_this_answer_through_the_payloads_response_url(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any]
) -> None:
    """The buttons of a why answer shown in a direct message between people are clicked there too."""
    await ask(aios, "refund order 1001 $250 arrived broken")
    posted = len(slack_api.calls)
    click = block_action(
        f"{WHY_OPEN_PREFIX}run",
        "R-1",
        user=REQUESTER,
        channel=DM_BETWEEN_PEOPLE,
        message_ts="1800000000.000001",
        response_url=slack_api.actions_url,
    )
    await delivered(aios, slack_events, *click)
    [(method, answer)] = said_since(slack_api, posted)
    assert method == "response_url" and answer["text"].startswith("*Why — R-1")
    assert answer["blocks"]

    posted = len(slack_api.calls)
    message = {"ts": "1800000000.000002", "text": "lunch?", "user": "U0BOB"}
    shortcut = message_shortcut(
        EXPLAIN_CALLBACK_ID,
        message,
        user=REQUESTER,
        channel=DM_BETWEEN_PEOPLE,
        response_url=slack_api.actions_url,
    )
    await delivered(aios, slack_events, *shortcut)
    assert said_since(slack_api, posted) == [
        (
            "response_url",
            {"text": NOT_MINE, "response_type": "ephemeral", "replace_original": False},
        )
    ]


@pytest.mark.parametrize("response_url", [None, "https://hooks.slack.test/commands/1"])
async def test_without_a_response_url_of_slacks_the_answer_is_posted_ephemeral(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any], response_url: str | None
) -> None:
    """No URL (a payload without one), or one that is not Slack's: the bot posts to no address a payload
    names unless it is Slack's."""
    await ask(aios, "refund order 1001 $250 arrived broken")
    posted = len(slack_api.calls)
    body = slash_command("why AP-1", user=REQUESTER, response_url=response_url)
    await delivered(aios, slack_events, *body)
    [(method, answer)] = said_since(slack_api, posted)
    assert method == "chat.postEphemeral"
    assert (answer["channel"], answer["user"]) == (CHANNEL, REQUESTER)
    assert answer["text"].startswith("*Why — R-1") and "R-1" in button_values(answer["blocks"])


async def test_an_answer_slack_refuses_at_the_response_url_is_posted_ephemeral_instead(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any]
) -> None:
    """An expired or used-up URL (or Slack's hooks unreachable) still leaves the asker an answer where the bot can
    post one."""
    slack_api.fail_next("response_url", "expired_url")
    posted = len(slack_api.calls)
    body = slash_command("replay R-404", user=REQUESTER, response_url=slack_api.response_url)
    await delivered(aios, slack_events, *body)
    [(refused, _), (method, answer)] = said_since(slack_api, posted)
    assert (refused, method) == ("response_url", "chat.postEphemeral")
    assert (answer["channel"], answer["user"]) == (CHANNEL, REQUESTER) and "R-404" in answer["text"]


async def test_an_answer_refused_both_ways_is_logged_with_both_refusals(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any]
) -> None:
    slack_api.fail_next("response_url", "expired_url")
    slack_api.fail_next("chat.postEphemeral", "channel_not_found")
    body = slash_command("replay R-404", user=REQUESTER, response_url=slack_api.response_url)
    with structlog.testing.capture_logs() as logged:
        await delivered(aios, slack_events, *body)
    [refused] = [e for e in logged if e["event"] == "answer_not_delivered"]
    assert refused["user"] == REQUESTER
    assert "404 expired_url" in refused["error"] and "channel_not_found" in refused["error"]
    assert slack_api.response_url not in refused["error"]
    assert [e for e in logged if e["event"] == "background_work_failed"] == []


async def test_explain_this_in_a_thread_answers_in_that_thread_and_through_the_url_where_the_bot_is_not(
    aios: Aios, slack_api: FakeSlackApi, slack_events: TestClient[Any, Any]
) -> None:
    """A response URL's answer shows in the channel, not the thread it was asked in: in a thread the answer is
    posted there with chat.postEphemeral, and through the URL only when Slack refuses that."""
    message = {"ts": "1800000000.000009", "thread_ts": "1800000000.000001", "text": "lunch?", "user": "U0BOB"}
    for refusal in (None, "not_in_channel"):
        if refusal:
            slack_api.fail_next("chat.postEphemeral", refusal)
        posted = len(slack_api.calls)
        shortcut = message_shortcut(
            EXPLAIN_CALLBACK_ID, message, user=REQUESTER, response_url=slack_api.actions_url
        )
        await delivered(aios, slack_events, *shortcut)
        said = said_since(slack_api, posted)
        assert said[0][0] == "chat.postEphemeral" and said[0][1]["thread_ts"] == "1800000000.000001"
        if refusal:
            assert [method for method, _ in said] == ["chat.postEphemeral", "response_url"]
            assert said[1][1]["text"] == NOT_MINE
        else:
            assert len(said) == 1 and said[0][1]["text"] == NOT_MINE


async def test_an_answer_through_a_response_url_has_the_secrets_taken_out(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    """As every other message the bot shows: here a secret pasted into the command comes back in its answer."""
    secret = "xapp-1-A0AIOS-7Hq2xP9wLm4Zt"
    aios = await start_aios(database_url, slack_api, clock, tmp_path, SLACK_APP_TOKEN=secret)
    try:
        await ask(aios, "refund order 1001 $250 arrived broken")
        async with events_of(aios, slack_api) as events:
            body = slash_command(f"replay R-1 {secret}", user=REQUESTER, response_url=slack_api.response_url)
            await delivered(aios, events, *body)
    finally:
        await aios.close()
    [answer] = [c.params for c in slack_api.calls_to("response_url")]
    assert "is not a policy hash prefix" in answer["text"]
    assert secret not in answer["text"] and "SLACK_APP_TOKEN" in answer["text"]
