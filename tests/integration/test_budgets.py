"""Budgets hold: reserved before each model call, stopped at the hard limit, granted by an approver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from agents.budgets import estimate_cost
from agents.llm import Message
from agents.pricing import PriceTable
from bot.bootstrap import Aios
from runtime.messages import DecideApproval, RequestBudget
from storage.records import Approval, BudgetAccount, Decision, LlmCall, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, ask, start_aios

REFUND = Reply(
    "Refund it.", (ToolUse("shop_refund", {"order_id": 1003, "amount": 129.0, "reason": "cracked"}),)
)


def budget(limit: float, *, warn_at: float = 0.8, grant: float = 1.0) -> str:
    return f"""budgets:
  - id: returns-daily
    scope: agent
    match: returns
    period: day
    limit_usd: {limit}
    warn_at: {warn_at}
    approvers: [manager]
    grant_usd: {grant}
"""


async def budgeted(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    limit: float,
    **kwargs: float,
) -> Aios:
    return await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        budget(limit, **kwargs),
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )


@pytest.fixture
async def tiny_budget(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    aios = await budgeted(database_url, slack_api, anthropic_api, clock, tmp_path, 0.005)
    yield aios
    await aios.close()


async def test_a_run_over_budget_stops_before_the_call_and_a_grant_resumes_it(
    tiny_budget: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    aios = tiny_budget
    anthropic_api.script(REFUND)
    await ask(aios, "refund order 1003, the blender arrived cracked")

    assert anthropic_api.requests == []  # stopped before the call
    async with aios.units() as uow:
        run = (await uow.session.exec(select(Run))).one()
    assert run.status == "over_budget" and run.budget_account is not None
    [notice] = [
        c
        for c in slack_api.calls_to("chat.postMessage")
        if "stopped before calling the model" in c.params["text"]
    ]
    [button] = notice.params["blocks"][1]["elements"]
    assert (button["action_id"], button["value"]) == ("aios_budget_request", f"R-{run.id}")
    assert "budget returns-daily" in notice.params["text"]
    assert run.id is not None

    # The requester asks for more (twice: the second click changes nothing); a manager approves.
    await aios.process(RequestBudget(run.id, REQUESTER, CHANNEL))
    await aios.process(RequestBudget(run.id, REQUESTER, CHANNEL))
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
        grant = await uow.get(ProposedAction, approval.action_id)
    assert grant is not None and grant.name == "budget.grant" and grant.params["amount_usd"] == 1.0
    assert approval.approver_roles == ["manager"]
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

    assert len(anthropic_api.requests) == 1  # the run resumed and planned
    async with aios.units() as uow:
        account = (await uow.session.exec(select(BudgetAccount))).one()
        actions = (await uow.session.exec(select(ProposedAction).order_by(col(ProposedAction.id)))).all()
        grant_decisions = (
            await uow.session.exec(select(Decision).where(Decision.action_id == approval.action_id))
        ).all()
        run = (await uow.session.exec(select(Run))).one()
    assert account.granted_usd == 1.0 and account.reserved_usd == pytest.approx(0.0, abs=1e-12)
    assert account.spent_usd > 0
    assert [a.name for a in actions] == ["budget.grant", "shop.refund"]
    assert [(d.kind, d.verdict, d.rule_id) for d in grant_decisions] == [
        ("policy", "require_approval", "budget:returns-daily"),
        ("human", "approved", "budget:returns-daily"),
    ]
    assert run.status == "awaiting_approval"  # now the refund itself waits for a manager
    assert (
        any(
            "more budget for R-" in t
            for t in [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")]
        )
        or len(slack_api.calls_to("chat.postEphemeral")) == 1
    )


async def test_concurrent_runs_never_overspend_by_more_than_one_estimate(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    limit = 0.08
    aios = await budgeted(database_url, slack_api, anthropic_api, clock, tmp_path, limit)
    # Long answers make each call cost about $0.01, so the limit is reached after a handful.
    anthropic_api.default = lambda body: Reply("x" * 2400, REFUND.tool_uses)
    try:
        await asyncio.gather(
            *(
                ask(aios, f"refund order 1003, cracked ({n})", thread_ts=f"1700000200.{n:06d}")
                for n in range(24)
            )
        )
        async with aios.units() as uow:
            spent = sum(c.cost_usd for c in (await uow.session.exec(select(LlmCall))).all())
            runs = (await uow.session.exec(select(Run))).all()
            account = (await uow.session.exec(select(BudgetAccount))).one()
    finally:
        await aios.close()
    estimate = estimate_cost(
        PriceTable.with_overrides(None),
        "claude-sonnet-4-6",
        "x" * 4000,
        [Message("user", "refund order 1003, cracked (10)")],
        [],
    )
    blocked = [r for r in runs if r.status == "over_budget"]
    assert blocked, "the limit was never reached, so the test proves nothing"
    assert spent <= limit + estimate
    assert account.spent_usd == pytest.approx(spent) and account.reserved_usd == pytest.approx(0.0, abs=1e-9)
    print(
        f"\n{len(runs)} runs, {len(runs) - len(blocked)} called the model, spent ${spent:.4f} of ${limit:.2f}"
    )


async def test_a_soft_warning_is_said_once(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await budgeted(database_url, slack_api, anthropic_api, clock, tmp_path, 0.05, warn_at=0.01)
    anthropic_api.default = lambda body: REFUND
    try:
        await ask(aios, "refund order 1003, cracked", thread_ts="1700000300.000100")
        await ask(aios, "refund order 1003, cracked again", thread_ts="1700000300.000200")
    finally:
        await aios.close()
    warnings = [
        c for c in slack_api.calls_to("chat.postMessage") if "Budget `returns-daily`" in c.params["text"]
    ]
    assert len(warnings) == 1 and warnings[0].params["thread_ts"] == "1700000300.000100"
