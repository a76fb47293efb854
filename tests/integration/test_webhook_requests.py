"""Asking for a webhook in words: the dispatcher's route, the tools agent's tool and context, and the connector
refusing a webhook that is not configured before anyone is asked to approve it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from agents.base import Agent, PlanRequest
from agents.llm import CallContext
from agents.tools_agent import ToolsAgent
from bot.bootstrap import Aios
from storage.records import Approval, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.webhook_receiver import SECRET, WebhookReceiver
from tests.integration.conftest import CHANNEL, ask, start_aios

PACKAGED_POLICY = Path(__file__).parents[2] / "policies" / "default_policy.yaml"
TOKEN_PATH = "/hooks/T0KEN-in-the-path-8812"
CALL = CallContext(intent_id=1, agent="dispatcher", requester="U0ALICE", channel=CHANNEL)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


def webhooks_setting(receiver: WebhookReceiver) -> str:
    return json.dumps(
        {
            "crm": {"url": receiver.url(TOKEN_PATH), "secret": SECRET},
            "audit": {"url": receiver.url("/hooks/audit"), "secret": "another-secret-19"},
        }
    )


@pytest.fixture
async def offline_aios(
    database_url: str, slack_api: FakeSlackApi, receiver: WebhookReceiver, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    instance = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY.read_text(),
        AIOS_WEBHOOKS=webhooks_setting(receiver),
    )
    yield instance
    await instance.close()


@pytest.fixture
async def model_aios(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    receiver: WebhookReceiver,
    clock: Clock,
    tmp_path: Path,
) -> AsyncIterator[Aios]:
    instance = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY.read_text(),
        AIOS_WEBHOOKS=webhooks_setting(receiver),
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    yield instance
    await instance.close()


def tools_agent(aios: Aios) -> ToolsAgent:
    agent = aios.handlers.dispatcher.agents["tools"]
    assert isinstance(agent, ToolsAgent)
    return agent


async def test_the_tools_agent_offers_webhook_post_and_knows_the_webhooks_by_name_only(
    offline_aios: Aios,
) -> None:
    agent = tools_agent(offline_aios)
    assert agent.action_names == ("webhook.post",)
    context = (await agent.context(PlanRequest("notify crm", "U0ALICE", CALL))).prompt()
    assert "audit, crm" in context
    assert SECRET not in context and "T0KEN" not in context and "127.0.0.1" not in context


async def test_without_webhooks_or_tool_servers_there_is_no_tools_agent(aios: Aios) -> None:
    assert "tools" not in aios.handlers.dispatcher.agents
    routed = await aios.handlers.dispatcher.route_or_escalate('post {"event": "x"} to webhook crm', CALL)
    assert isinstance(routed, Agent) and routed.name == "content"  # as before webhooks could be asked for


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        ('post {"event": "refund", "order": 1001} to webhook crm', "tools"),
        ('send to webhook crm: {"event": "refund"}', "tools"),
        ('notify crm {"event": "restock", "sku": "MUG-1"}', "tools"),
        ("please notify the CRM that order 1001 was refunded", "tools"),
        ("send the refund summary for order 1001 to audit", "tools"),
        ("can you post the damaged-item report to the audit webhook", "tools"),
        # Other routes stay as they were when no configured webhook is named.
        ("refund order 1001 $20, arrived broken", "returns"),
        ("refund order 1001 $20 and notify crm", "returns"),
        ("post the spring lookbook to the blog", "content"),
        ("publish post spring-lookbook", "content"),
        ("send the crm-export draft to the editor", "content"),
        ("notify the customer", None),
    ],
)
async def test_requests_that_name_a_webhook_go_to_the_tools_agent(
    offline_aios: Aios, text: str, agent: str | None
) -> None:
    routed = await offline_aios.handlers.dispatcher.route_or_escalate(text, CALL)
    assert (routed.name if isinstance(routed, Agent) else None) == agent


async def test_a_webhook_request_reaches_the_tools_agent_without_a_routing_call(
    model_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    restock = {"event": "restock", "sku": "MUG-1"}
    anthropic_api.script(
        Reply("Posting it to crm.", (ToolUse("webhook_post", {"webhook": "crm", "body": restock}),))
    )
    await ask(model_aios, 'notify crm {"event": "restock", "sku": "MUG-1"}')
    [planning] = anthropic_api.requests  # the agent's call only: no model was asked where to route it
    assert [t["name"] for t in planning["tools"]] == ["webhook_post", "escalate_to_human"]
    system = json.dumps(planning["system"])
    assert "configured webhooks (webhook_post's webhook): audit, crm" in system
    assert "T0KEN" not in system and SECRET not in system
    async with model_aios.units() as uow:
        [action] = (await uow.session.exec(select(ProposedAction))).all()
    assert action.params == {"webhook": "crm", "body": restock} and action.status == "awaiting_approval"


async def test_a_request_the_grammar_cannot_place_asks_the_model_which_knows_the_webhooks(
    model_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.script(
        Reply("", (ToolUse("route_to_agent", {"agent": "tools"}),)),
        Reply("Which webhook, and what should it say? The configured ones are audit and crm."),
    )
    await ask(model_aios, "let the other system know about the restock")
    routing = anthropic_api.requests[0]
    assert [t["name"] for t in routing["tools"]] == ["route_to_agent", "escalate_to_human"]
    system = json.dumps(routing["system"])
    assert "configured webhooks: audit, crm" in system and "T0KEN" not in system
    async with model_aios.units() as uow:
        [run] = (await uow.session.exec(select(Run))).all()
    assert run.agent == "tools"


async def test_the_offline_planner_proposes_the_webhook_for_a_manager(
    offline_aios: Aios, receiver: WebhookReceiver
) -> None:
    await ask(offline_aios, 'notify crm {"event": "restock", "sku": "MUG-1"}')
    async with offline_aios.units() as uow:
        [action] = (await uow.session.exec(select(ProposedAction))).all()
        [approval] = (await uow.session.exec(select(Approval))).all()
    assert (action.name, action.params) == (
        "webhook.post",
        {"webhook": "crm", "body": {"event": "restock", "sku": "MUG-1"}},
    )
    assert action.status == "awaiting_approval" and approval.approver_roles == ["manager"]
    assert receiver.delivered() == []


async def test_a_webhook_that_is_not_configured_is_refused_before_approval(
    model_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi, receiver: WebhookReceiver
) -> None:
    anthropic_api.script(
        Reply("Sending it.", (ToolUse("webhook_post", {"webhook": "billing", "body": {"event": "x"}}),)),
        Reply("There is no billing webhook."),
    )
    await ask(model_aios, 'send {"event": "x"} to webhook billing')
    async with model_aios.units() as uow:
        assert (await uow.session.exec(select(ProposedAction))).all() == []
        [run] = (await uow.session.exec(select(Run))).all()
    assert run.agent == "tools" and run.status == "answered"
    # The model was told why, and so was the thread.
    [result] = [
        block
        for message in anthropic_api.requests[-1]["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert result["is_error"] is True
    said = [c.params["text"] for c in slack_api.calls_to("chat.postMessage")]
    assert any(
        "no webhook named 'billing' is configured; the configured ones are audit, crm (AIOS_WEBHOOKS)" in t
        for t in said
    ), said
    assert receiver.delivered() == []
