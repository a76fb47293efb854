"""Agents escalate to a person instead of guessing: the whole bot, Claude through the fake Messages API, Slack
through the fake Web API, clicks through the real Bolt app and web server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import col, select

from bot.blocks import TAKE_OVER_ACTION_ID
from bot.bootstrap import Aios
from bot.digest import build_digest, digest_message
from bot.explain import explain
from bot.queries import status
from bot.slack_app import build_slack_app
from bot.web import build_web_app
from runtime.messages import TakeOverRun
from storage.records import Escalation, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import TOKEN, ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, block_action, sign
from tests.integration.conftest import CHANNEL, MANAGER, OTHER_MANAGER, REQUESTER, ask, start_aios

THREAD = "1700000000.000100"
UNSURE = ToolUse(
    "escalate_to_human",
    {
        "reason": "Memory says order 1003 was already refunded in full last week, but the request asks again.",
        "question": "Should order 1003 be refunded a second time, and how much?",
    },
)
REFUND_1003 = ToolUse("shop_refund", {"order_id": 1003, "amount": 129.0, "reason": "arrived cracked"})


async def runs(aios: Aios) -> list[Run]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(Run).order_by(col(Run.id)))).all())


async def escalations(aios: Aios) -> list[Escalation]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(Escalation).order_by(col(Escalation.id)))).all())


async def actions(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(ProposedAction).order_by(col(ProposedAction.id)))).all())


def escalation_posts(slack_api: FakeSlackApi) -> list[ApiCall]:
    return [
        c
        for c in slack_api.calls_to("chat.postMessage")
        if any(
            e.get("action_id") == TAKE_OVER_ACTION_ID
            for b in c.params.get("blocks") or []
            if b.get("type") == "actions"
            for e in b["elements"]
        )
    ]


async def escalated_by_claude(aios: Aios, anthropic_api: FakeAnthropicApi) -> None:
    # The model escalates and, in the same turn, also calls a refund: the escalation wins, nothing is proposed.
    anthropic_api.script(Reply("I'm not sure about this one.", (UNSURE, REFUND_1003)))
    await ask(aios, "refund order 1003, the blender arrived cracked")


async def test_an_escalation_asks_the_managers_and_proposes_nothing(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    await escalated_by_claude(claude_aios, anthropic_api)

    [request] = anthropic_api.requests
    assert [t["name"] for t in request["tools"]] == ["shop_refund", "email_send", "escalate_to_human"]
    [run] = await runs(claude_aios)
    assert (run.agent, run.status) == ("returns", "escalated")
    assert await actions(claude_aios) == [] and slack_api.approval_requests() == []
    [escalation] = await escalations(claude_aios)
    assert (escalation.run_id, escalation.agent, escalation.status) == (run.id, "returns", "open")
    assert escalation.asked == [MANAGER, OTHER_MANAGER]
    assert escalation.question == "Should order 1003 be refunded a second time, and how much?"
    [post] = escalation_posts(slack_api)
    assert post.params["thread_ts"] == THREAD and escalation.message_ts == post.response["ts"]
    text = post.params["text"]
    assert f"<@{MANAGER}>" in text and f"<@{OTHER_MANAGER}>" in text
    assert "already refunded in full last week" in text and "refunded a second time" in text

    why = await explain(claude_aios.units, f"R-{run.id}")
    assert "(run escalated)" in why and "*Escalated* by the returns agent" in why
    assert f"<@{MANAGER}>" in why and "refunded a second time" in why and "waiting for a person" in why


async def test_an_answer_in_the_thread_is_planned_by_the_agent_that_asked_with_the_thread_as_history(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    await escalated_by_claude(claude_aios, anthropic_api)
    slack_api.add_human_message(
        CHANNEL, THREAD, THREAD, REQUESTER, "refund order 1003, the blender arrived cracked"
    )
    anthropic_api.script(Reply("The manager says refund it in full.", (REFUND_1003,)))
    answer = "yes, it's a new one: go ahead with the full $129"
    await ask(claude_aios, answer, user=MANAGER, message_ts="1800000100.000001")

    # No routing call: the answer went straight to the agent that asked, with the thread as its history.
    planning = anthropic_api.requests[-1]
    assert len(anthropic_api.requests) == 2 and planning["model"] == "claude-sonnet-4-6"
    said = [(m["role"], str(m["content"])) for m in planning["messages"]]
    assert said[-1] == ("user", answer)
    earlier = "\n".join(content for _, content in said[:-1])
    assert "the blender arrived cracked" in earlier and "refunded a second time" in earlier
    assert any(role == "assistant" and "refunded a second time" in content for role, content in said)

    first, second = await runs(claude_aios)
    assert (first.status, second.agent, second.status) == ("person_answered", "returns", "awaiting_approval")
    [escalation] = await escalations(claude_aios)
    assert (escalation.status, escalation.resolved_by, escalation.answer, escalation.answer_run_id) == (
        "answered",
        MANAGER,
        answer,
        second.id,
    )
    [refund] = await actions(claude_aios)
    assert (refund.run_id, refund.name, refund.status) == (second.id, "shop.refund", "awaiting_approval")
    [update] = [c for c in slack_api.calls_to("chat.update") if c.params["ts"] == escalation.message_ts]
    assert "Answered* by <@U0MANAGER>" in str(update.params["blocks"])
    assert TAKE_OVER_ACTION_ID not in str(update.params["blocks"])

    why_first = await explain(claude_aios.units, f"R-{first.id}")
    assert f"answered by <@{MANAGER}>" in why_first and f"planned as `R-{second.id}`" in why_first
    why_second = await explain(claude_aios.units, f"R-{second.id}")
    assert f"*Answers* the escalation of `R-{first.id}`" in why_second


@pytest.fixture
async def slack_events(claude_aios: Aios, slack_api: FakeSlackApi) -> AsyncIterator[TestClient[Any, Any]]:
    """The real web app and Bolt listeners of the bot, to post signed Slack payloads to."""
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(claude_aios, build_slack_app(claude_aios, client, SIGNING_SECRET), SIGNING_SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def click_take_over(
    aios: Aios, events: TestClient[Any, Any], run: str, user: str, message_ts: str
) -> None:
    body, content_type = block_action(TAKE_OVER_ACTION_ID, run, user=user, message_ts=message_ts)
    response = await events.post(
        "/slack/events", data=body, headers={"Content-Type": content_type, **sign(body)}
    )
    assert response.status == 200
    await aios.background.drain()


async def test_take_over_closes_the_run_and_the_agent_stops(
    claude_aios: Aios,
    anthropic_api: FakeAnthropicApi,
    slack_api: FakeSlackApi,
    slack_events: TestClient[Any, Any],
) -> None:
    await escalated_by_claude(claude_aios, anthropic_api)
    [run] = await runs(claude_aios)
    [escalation] = await escalations(claude_aios)
    message_ts = escalation.message_ts
    assert message_ts is not None

    # Someone who is neither the requester nor a manager may not take it over.
    await click_take_over(claude_aios, slack_events, f"R-{run.id}", "U0EDITOR", message_ts)
    [refused] = slack_api.calls_to("chat.postEphemeral")
    assert refused.params["user"] == "U0EDITOR" and "can take over" in refused.params["text"]
    assert (await escalations(claude_aios))[0].status == "open"

    await click_take_over(claude_aios, slack_events, f"R-{run.id}", OTHER_MANAGER, message_ts)
    [run] = await runs(claude_aios)
    assert run.status == "taken_over"
    [escalation] = await escalations(claude_aios)
    assert (escalation.status, escalation.resolved_by) == ("taken_over", OTHER_MANAGER)
    assert any(
        f"<@{OTHER_MANAGER}> took this over" in c.params["text"]
        for c in slack_api.calls_to("chat.postMessage")
    )
    [update] = slack_api.calls_to("chat.update")
    assert "Taken over* by <@U0MANAGER2>" in str(update.params["blocks"])

    # A second click changes nothing of the closed run.
    await click_take_over(claude_aios, slack_events, f"R-{run.id}", MANAGER, message_ts)
    assert (
        "already taken over by <@U0MANAGER2>" in slack_api.calls_to("chat.postEphemeral")[-1].params["text"]
    )
    why = await explain(claude_aios.units, f"R-{run.id}")
    assert "(run taken_over)" in why and f"taken over by <@{OTHER_MANAGER}>" in why
    assert await actions(claude_aios) == []


async def test_when_no_agent_fits_the_dispatcher_escalates(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    anthropic_api.script(
        Reply(
            "",
            (
                ToolUse(
                    "escalate_to_human",
                    {"reason": "A supplier dispute is not something any agent here does."},
                ),
            ),
        )
    )
    await ask(claude_aios, "our supplier billed us twice for the October shipment, sort it out")

    [routing] = anthropic_api.requests
    assert [t["name"] for t in routing["tools"]] == ["route_to_agent", "escalate_to_human"]
    [run] = await runs(claude_aios)
    assert (run.agent, run.status) == ("dispatcher", "escalated")
    [escalation] = await escalations(claude_aios)
    assert escalation.reason == "A supplier dispute is not something any agent here does."
    assert escalation.question == "How should I go on with this request?"  # the model left it out
    [post] = escalation_posts(slack_api)
    assert f"<@{MANAGER}>" in post.params["text"] and "no agent fits" in str(post.params["blocks"])


async def test_offline_several_amounts_escalate_and_the_answer_refunds(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1004 $20 and $30, scratched")
    [run] = await runs(aios)
    assert (run.agent, run.status) == ("returns", "escalated")
    [escalation] = await escalations(aios)
    assert "more than one amount (“$20”, “$30”) on order 1004" in escalation.reason
    assert (
        "How much should be refunded on order 1004? Answer with the request, like `refund order 1004 $20"
        in (escalation.question)
    )
    [post] = escalation_posts(slack_api)
    assert f"<@{MANAGER}>" in post.params["text"]
    assert await actions(aios) == []

    # While it waits for a person, /aios status lists it.
    assert f"• `R-{run.id}` returns — escalated" in await status(aios.units)

    await ask(aios, "refund order 1004 $20 scratched", user=MANAGER, message_ts="1800000100.000001")
    first, second = await runs(aios)
    assert (first.status, second.status) == ("person_answered", "completed")
    # Answered, it is settled: it is neither waiting nor counted as escalated any more.
    said = await status(aios.units)
    assert "escalated" not in said and "person_answered: 1" in said and f"`R-{run.id}`" not in said
    [refund] = await actions(aios)
    assert (refund.run_id, refund.params["amount"]) == (second.id, 20.0)
    assert (await escalations(aios))[0].status == "answered"
    assert len(escalation_posts(slack_api)) == 1


async def test_a_missing_order_is_a_plain_answer_not_an_escalation(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 9999 $20")
    [run] = await runs(aios)
    assert run.status == "answered" and await escalations(aios) == []
    assert escalation_posts(slack_api) == []


async def test_the_digest_counts_escalations_of_its_period(aios: Aios) -> None:
    await ask(aios, "refund order 1004 $20 and $30", thread_ts="1700000001.000100")
    await ask(aios, "refund order 1005 $5 and $6", thread_ts="1700000002.000100")
    await ask(aios, "refund order 1002 $1 and $2", thread_ts="1700000003.000100")
    first, second, _ = await runs(aios)
    assert first.id is not None and second.id is not None
    await aios.process(TakeOverRun(first.id, MANAGER, CHANNEL))
    await ask(
        aios, "refund order 1005 $5", user=MANAGER, thread_ts="1700000002.000100", message_ts="1800000200.1"
    )

    now = datetime.now(UTC)
    digest = await build_digest(aios.units, now + timedelta(minutes=1))
    assert digest.escalations == {"taken_over": 1, "answered": 1, "open": 1}
    text, blocks = digest_message(digest)
    assert "3 escalations" in text
    assert "3 raised: 1 answered, 1 taken over, 1 waiting" in str(blocks)
    earlier = await build_digest(aios.units, now - timedelta(days=1))
    assert earlier.escalations == {} and "*Escalations to people*\\n• none" in str(digest_message(earlier)[1])


async def test_a_user_group_among_the_default_approvers_is_mentioned_as_a_subteam(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    policy = """
version: 1
roles:
  manager: [S0MANAGERS, U0BOSS]
rules:
  - id: small-refunds-are-fine
    when: action.name == "shop.refund" && action.params.amount <= 100.0
    verdict: allow
default: require_approval
default_approvers: [manager]
"""
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=policy)
    try:
        await ask(aios, "refund order 1004 $20 and $30")
        [escalation] = await escalations(aios)
        assert escalation.asked == ["S0MANAGERS", "U0BOSS"]
        [post] = escalation_posts(slack_api)
        assert "<!subteam^S0MANAGERS> <@U0BOSS>" in post.params["text"]
        # A member of the group may take it over: the group's members are asked of Slack.
        slack_api.groups["S0MANAGERS"] = ["U0CAROL"]
        [run] = await runs(aios)
        assert run.id is not None
        await aios.process(TakeOverRun(run.id, "U0CAROL", CHANNEL))
        assert (await runs(aios))[0].status == "taken_over"
    finally:
        await aios.close()
