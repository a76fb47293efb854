"""Claude as the planner, through the real anthropic SDK, against a local server speaking the Messages API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import stamina
from sqlmodel import col, select

from bot.bootstrap import Aios
from bot.queries import answer
from bot.slash import parse_slash
from storage.records import Decision, LlmCall, ProposedAction, Run
from tests.fakes.anthropic_api import (
    FakeAnthropicApi,
    Reply,
    ToolUse,
    overloaded,
    rate_limited,
    server_error,
)
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, ask

REFUND_1003 = ToolUse("shop_refund", {"order_id": 1003, "amount": 129.0, "reason": "arrived cracked"})


@pytest.fixture
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


async def ledger(aios: Aios) -> list[LlmCall]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(LlmCall).order_by(col(LlmCall.id)))).all())


async def actions(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(ProposedAction).order_by(col(ProposedAction.id)))).all())


async def test_an_invalid_tool_call_goes_back_to_the_model_as_an_error_result(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    # Our prompts are shorter than the real minimum cacheable prefix (1024 tokens); lower the fake's minimum
    # so the test can see that the marked prefix is written once and read after.
    anthropic_api.min_cacheable_tokens = 256
    anthropic_api.script(
        Reply("I'll refund the blender.", (ToolUse("shop_refund", {"order_id": 1003, "amount": "lots"}),)),
        Reply("Refunding the full $129.00: it arrived cracked.", (REFUND_1003,)),
    )
    await ask(claude_aios, "refund order 1003, the blender arrived cracked")

    first, second = anthropic_api.requests
    assert first["model"] == second["model"] == "claude-sonnet-4-6"
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert [t["name"] for t in first["tools"]] == ["shop_refund", "email_send", "escalate_to_human"]
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first["tools"][0]["input_schema"]["additionalProperties"] is False
    assert "order 1003: total $129.00" in first["system"][0]["text"]
    tool_use_id = anthropic_api.responses[0][1]["content"][1]["id"]
    assistant, results = second["messages"][-2:]
    assert assistant["content"][1] == {
        "type": "tool_use",
        "id": tool_use_id,
        "name": "shop_refund",
        "input": {"order_id": 1003, "amount": "lots"},
    }
    [result] = results["content"]
    assert result["tool_use_id"] == tool_use_id and result["is_error"] is True
    assert "amount" in result["content"] and "reason" in result["content"]

    [action] = await actions(claude_aios)
    assert (action.name, action.params["amount"], action.status) == (
        "shop.refund",
        129.0,
        "awaiting_approval",
    )
    async with claude_aios.units() as uow:
        decision = (await uow.session.exec(select(Decision))).one()
    assert decision.rule_id == "refunds-over-100-need-a-manager"
    assert "it arrived cracked" in decision.justification

    calls = await ledger(claude_aios)
    assert [(c.agent, c.role, c.outcome) for c in calls] == [("returns", "agent", "ok")] * 2
    assert calls[0].cache_creation_tokens > 0 and calls[0].cache_read_tokens == 0
    assert calls[1].cache_read_tokens == calls[0].cache_creation_tokens
    assert all(c.cost_usd > 0 and c.run_id == action.run_id for c in calls)


async def test_free_words_are_routed_by_the_cheap_model(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.script(
        Reply("", (ToolUse("route_to_agent", {"agent": "returns", "reason": "a damaged order"}),)),
        Reply(
            "Full refund and a note to Ana.",
            (
                REFUND_1003,
                ToolUse(
                    "email_send",
                    {
                        "to": "ana@example.com",
                        "subject": "Your blender",
                        "body": "Sorry, a full refund is on its way.",
                    },
                ),
            ),
        ),
    )
    await ask(
        claude_aios, "the customer on order 1003 says the blender came in pieces, sort it out and tell her"
    )

    assert [r["model"] for r in anthropic_api.requests] == ["claude-haiku-4-5", "claude-sonnet-4-6"]
    assert anthropic_api.requests[0]["tools"][0]["name"] == "route_to_agent"
    assert [(a.name, a.status) for a in await actions(claude_aios)] == [
        ("shop.refund", "awaiting_approval"),
        ("email.send", "awaiting_approval"),
    ]
    assert [(c.agent, c.model) for c in await ledger(claude_aios)] == [
        ("dispatcher", "claude-haiku-4-5"),
        ("returns", "claude-sonnet-4-6"),
    ]


async def test_nothing_fits_so_nothing_is_proposed(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    anthropic_api.script(Reply("That's one for the team, not for me."))
    await ask(claude_aios, "what should we have for lunch")
    assert await actions(claude_aios) == []
    assert any(
        "I didn't catch which agent" in c.params["text"] for c in slack_api.calls_to("chat.postMessage")
    )


async def test_a_429_is_retried_after_the_time_the_server_asks(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.script(rate_limited(retry_after="0.4"), Reply("Refund it.", (REFUND_1003,)))
    started = time.perf_counter()
    await ask(claude_aios, "refund order 1003, cracked")
    assert time.perf_counter() - started >= 0.4
    assert [status for status, _ in anthropic_api.responses] == [429, 200]
    assert len(await actions(claude_aios)) == 1


@pytest.mark.usefixtures("no_backoff")
async def test_overloaded_and_server_errors_are_retried(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.script(overloaded(), server_error(), Reply("Refund it.", (REFUND_1003,)))
    await ask(claude_aios, "refund order 1003, cracked")
    assert [status for status, _ in anthropic_api.responses] == [529, 500, 200]
    assert len(await actions(claude_aios)) == 1


@pytest.mark.usefixtures("no_backoff")
async def test_after_the_last_try_the_run_fails_cleanly_and_the_thread_is_told(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    anthropic_api.script(*[overloaded()] * 10)
    await ask(claude_aios, "refund order 1003, cracked")

    assert len(anthropic_api.requests) == 4
    assert await actions(claude_aios) == []
    async with claude_aios.units() as uow:
        run = (await uow.session.exec(select(Run))).one()
    assert run.status == "failed"
    [call] = await ledger(claude_aios)
    assert (call.outcome, call.cost_usd) == ("overloaded", 0.0)
    assert any(
        "couldn't get an answer from the model (overloaded)" in c.params["text"]
        for c in slack_api.calls_to("chat.postMessage")
    )


async def test_the_thread_so_far_is_the_agents_short_term_context(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    thread = "1700000005.000100"
    slack_api.add_human_message(
        CHANNEL, thread, thread, "U0ALICE", "Ana (order 1003) wrote in about her blender"
    )
    slack_api.add_human_message(
        CHANNEL, thread, "1700000005.000200", "U0BOB", "she sent photos, it is cracked"
    )
    anthropic_api.script(Reply("Refund it.", (REFUND_1003,)))
    await ask(claude_aios, "refund it please", thread_ts=thread, message_ts="1700000005.000300")

    messages = anthropic_api.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "user", "user"]
    assert messages[0]["content"] == "<@U0ALICE> wrote: Ana (order 1003) wrote in about her blender"
    assert messages[1]["content"] == "<@U0BOB> wrote: she sent photos, it is cracked"
    assert messages[2]["content"] == "refund it please"
    assert "order 1003: total $129.00" in anthropic_api.requests[0]["system"][0]["text"]


async def test_cost_report_by_agent_run_and_requester(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.script(
        Reply("", (ToolUse("route_to_agent", {"agent": "returns"}),)),
        Reply("Refund it.", (REFUND_1003,)),
        Reply("Refund it.", (ToolUse("shop_refund", {"order_id": 1002, "amount": 10.0, "reason": "late"}),)),
    )
    await ask(claude_aios, "sort out the blender for order 1003")
    await ask(claude_aios, "refund $10 on order 1002, late", thread_ts="1700000009.000100")
    calls = await ledger(claude_aios)
    total = sum(c.cost_usd for c in calls)

    text = await answer(claude_aios.units, parse_slash("cost today"), claude_aios.clock())
    assert f"${total:.4f} over 3 calls, 0 failed" in text
    assert (
        "dispatcher" in text and "returns" in text and "U0ALICE" in text and "R-1" in text and "R-2" in text
    )
    assert "is not a period" in await answer(
        claude_aios.units, parse_slash("cost decade"), claude_aios.clock()
    )


async def test_offline_mode_is_announced_once_per_thread(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund $5 on order 1002, late", thread_ts="1700000007.000100")
    await ask(
        aios, "refund $6 on order 1002, late", thread_ts="1700000007.000100", message_ts="1700000007.000200"
    )
    await ask(aios, "refund $7 on order 1002, late", thread_ts="1700000008.000100")
    notices = [
        c.params["thread_ts"]
        for c in slack_api.calls_to("chat.postMessage")
        if "offline mode" in c.params["text"]
    ]
    assert notices == ["1700000007.000100", "1700000008.000100"]
