"""End to end with Claude as the planner: a run stopped by its budget, the Request budget button, a manager's
grant, and the run going on, all through the real `aios serve` and signed Slack payloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.engine import DEFAULT_POLICY
from tests.e2e.conftest import Server
from tests.e2e.test_serve import REQUESTER, approval_value, send
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import block_action, slash_command

TINY_BUDGET = """
budgets:
  - id: returns-daily
    scope: agent
    match: returns
    limit_usd: 0.005
    approvers: [manager]
    grant_usd: 1.0
"""


@pytest.fixture(scope="module")
def claude_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, FakeAnthropicApi]]:
    workdir = tmp_path_factory.mktemp("claude-serve")
    policy = workdir / "policy.yaml"
    policy.write_text(Path(DEFAULT_POLICY).read_text() + TINY_BUDGET)
    with FakeSlackApi() as slack, FakeAnthropicApi() as anthropic:
        env = aios_env(f"sqlite+aiosqlite:///{workdir / 'aios.db'}", slack.url)
        env.update(
            {
                "ANTHROPIC_API_KEY": API_KEY,
                "ANTHROPIC_BASE_URL": anthropic.url,
                "AIOS_POLICY_FILE": str(policy),
            }
        )
        with running_aios_serve(env) as serve:
            yield Server(serve.url, env, slack), anthropic


async def test_request_budget_button_grant_and_resume(claude_server: tuple[Server, FakeAnthropicApi]) -> None:
    server, anthropic = claude_server
    slack = server.slack
    anthropic.script(
        Reply(
            "A cracked blender: full refund.",
            (ToolUse("shop_refund", {"order_id": 1003, "amount": 129.0, "reason": "arrived cracked"}),),
        )
    )

    await send(server, *slash_command("refund order 1003, the blender arrived cracked", user=REQUESTER))
    blocked = slack.wait_for(
        lambda s: [
            c
            for c in s.calls_to("chat.postMessage")
            if "stopped before calling the model" in c.params["text"]
        ]
    )[0]
    assert anthropic.requests == []
    button = blocked.params["blocks"][1]["elements"][0]
    assert button["action_id"] == "aios_budget_request"

    await send(
        server,
        *block_action(
            "aios_budget_request", button["value"], user=REQUESTER, message_ts=blocked.response["ts"]
        ),
    )
    grant_card = slack.wait_for(
        lambda s: [c for c in s.approval_requests() if "Grant $1.00" in c.params["text"]]
    )[0]
    assert grant_card.params["thread_ts"] == blocked.params["thread_ts"]

    await send(
        server,
        *block_action(
            "aios_approve", approval_value(grant_card), user="U0MANAGER", message_ts=grant_card.response["ts"]
        ),
    )
    refund_card = slack.wait_for(
        lambda s: [c for c in s.approval_requests() if "order 1003" in c.params["text"]]
    )[0]
    assert len(anthropic.requests) == 1
    assert "A cracked blender" in str(refund_card.params["blocks"])

    _, cost, _ = await send(server, *slash_command("cost today", user=REQUESTER))
    # Answered in the ack, which Slack shows to the asker alone.
    assert "Model spend today" in cost and "over 1 calls, 0 failed" in cost
