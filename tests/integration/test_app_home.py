"""Each person's App Home from the records (SQLite and PostgreSQL): the approvals they may decide now (roles held
through a Slack user group, not their own requests where the rule forbids it, escalated ones for the escalation
roles), their requests, spend, budgets and paused agents; published when it changed and only then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import Aios
from bot.messages import DecideApproval, PauseAgent
from storage.records import BudgetAccount, LlmCall
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi, _view_refusal
from tests.integration.conftest import CHANNEL, ask, start_aios

LEAD = "U0LEAD"  # a manager through the S0LEADS user group
MANAGER = "U0MANAGER"
FINANCE = "U0FIN"
ALICE = "U0ALICE"

POLICY = """
version: 1
roles:
  manager: [U0MANAGER, S0LEADS]
  finance: [U0FIN]
rules:
  - id: big-refunds-need-finance
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 300.0
    verdict: require_approval
    approvers: [finance]
    timeout: 1h
    escalate_to: [manager]
  - id: refunds-over-100-need-a-manager
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 100.0
    verdict: require_approval
    approvers: [manager]
    forbid_self_approval: true
    timeout: 4h
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
budgets:
  - id: returns-monthly
    scope: agent
    match: returns
    period: month
    limit_usd: 10
"""


@pytest.fixture
async def aios(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    slack_api.groups["S0LEADS"] = [LEAD]
    instance = await start_aios(database_url, slack_api, clock, tmp_path, policy=POLICY)
    yield instance
    await instance.close()


def home_of(slack: FakeSlackApi, user: str) -> dict[str, Any]:
    view = slack.homes[user]
    assert _view_refusal(view) is None
    return view


def waiting(view: dict[str, Any]) -> list[str]:
    """The approvals with buttons, by the value their Approve button carries."""
    return [
        element["value"]
        for block in view["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == "aios_approve"
    ]


def section(view: dict[str, Any], block_id: str) -> str:
    return str(next(b for b in view["blocks"] if b["block_id"] == block_id)["text"]["text"])


def publishes(slack: FakeSlackApi, user: str) -> int:
    return len([c for c in slack.calls_to("views.publish") if c.params.get("user_id") == user])


async def approval_ids(aios: Aios) -> list[str]:
    async with aios.units() as uow:
        return [f"AP-{a.id}" for a in await uow.repo.pending_approvals()]


async def test_each_home_shows_what_its_viewer_may_decide(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    await ask(aios, "refund $150 on order 1001, arrived broken", user=LEAD, thread_ts="1.1")
    await ask(aios, "refund $400 on order 1005, never arrived", user=ALICE, thread_ts="1.2")
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE, thread_ts="1.3")
    own, escalating, theirs = await approval_ids(aios)
    for user in (LEAD, MANAGER, FINANCE, ALICE):
        await aios.handlers.home.opened(user, "T0FAKE")

    assert waiting(home_of(slack_api, LEAD)) == [theirs]  # a manager through the group, not for their own
    assert f"`{own}`" in section(home_of(slack_api, LEAD), "home_for_others")
    assert waiting(home_of(slack_api, MANAGER)) == [own, theirs]  # not escalated yet
    assert waiting(home_of(slack_api, FINANCE)) == [escalating]
    alice = home_of(slack_api, ALICE)
    assert (
        waiting(alice) == []
        and section(alice, "home_waiting_none") == "Nothing is waiting for your decision."
    )
    assert f"`{escalating}`" in section(alice, "home_for_others") and f"`{theirs}`" in section(
        alice, "home_for_others"
    )
    assert section(alice, "home_request_0").startswith("*Waiting for approval* · `I-3` · `R-3` returns")
    assert section(alice, "home_request_0").endswith("\n>refund $120 on order 1003, wrong size")
    assert "home_request_2" not in str(alice)  # Lead's request is on Lead's Home only

    clock.advance(hours=1, minutes=1)  # past the finance rule's timeout: the managers are called in
    await aios.handlers.home.refresh_all()
    assert waiting(home_of(slack_api, MANAGER)) == [own, escalating, theirs]
    assert waiting(home_of(slack_api, LEAD)) == [escalating, theirs]
    assert waiting(home_of(slack_api, FINANCE)) == [escalating]


async def test_a_home_is_published_again_only_when_it_changed(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)
    [approval] = await approval_ids(aios)
    await aios.handlers.home.opened(MANAGER, "T0FAKE")
    await aios.handlers.home.opened(ALICE, "T0FAKE")
    assert publishes(slack_api, MANAGER) == 1 and waiting(home_of(slack_api, MANAGER)) == [approval]

    await aios.handlers.home.refresh_all()
    await aios.handlers.home.refresh_all()
    assert publishes(slack_api, MANAGER) == 1 and publishes(slack_api, ALICE) == 1
    await aios.handlers.home.refresh("U0NOBODY")  # never opened their Home: nothing to publish
    assert publishes(slack_api, "U0NOBODY") == 0

    # Approved: the bus's events draw both Homes again; the approval leaves the manager's, the request is done.
    await aios.process(DecideApproval(int(approval.removeprefix("AP-")), MANAGER, True, CHANNEL))
    assert waiting(home_of(slack_api, MANAGER)) == []
    assert section(home_of(slack_api, ALICE), "home_request_0").startswith("*Done* · `I-1` · `R-1` returns")
    assert publishes(slack_api, MANAGER) == 2

    # A publish Slack refuses is given back, so the next refresh publishes the change.
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    slack_api.fail_next("views.publish", "ratelimited", times=2)
    await aios.handlers.home.refresh_all()
    assert "returns" not in section(home_of(slack_api, MANAGER), "home_paused")
    await aios.handlers.home.refresh_all()
    assert section(home_of(slack_api, MANAGER), "home_paused").startswith(
        "• *returns*, paused by <@U0MANAGER> on "
    )
    assert section(home_of(slack_api, ALICE), "home_paused").endswith("— `/aios resume returns`")


async def test_spend_this_month_by_agent_and_budgets_near_their_limit(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    intent = await ask(aios, "refund $20 on order 1001, arrived broken", user=ALICE)
    now = clock()
    async with aios.units() as uow:
        for agent, cost in (("returns", 8.5), ("content", 0.25), ("returns", 0.004)):
            await uow.repo.add(
                LlmCall(
                    intent_id=intent,
                    agent=agent,
                    requester=ALICE,
                    channel=CHANNEL,
                    model="claude",
                    role="agent",
                    cost_usd=cost,
                    outcome="ok",
                    created_at=now - timedelta(minutes=1),
                )
            )
        for budget, spent in (("returns-monthly", 8.5), ("content-monthly", 1.0)):
            await uow.repo.add(
                BudgetAccount(
                    key=f"{budget}:returns:{now:%Y-%m}",
                    budget_id=budget,
                    scope_value="returns",
                    period=f"{now:%Y-%m}",
                    limit_usd=10.0,
                    spent_usd=spent,
                )
            )
        await uow.commit()
    await aios.handlers.home.opened(ALICE, "T0FAKE")
    home = home_of(slack_api, ALICE)
    assert section(home, "home_spend") == (
        f"*Model spend this month:* $8.75 in {now:%B %Y}, since the 1st (UTC)\n• returns: $8.50\n• content: $0.25"
    )
    assert section(home, "home_budgets") == (
        f"*Budgets near their limit*\n• `returns-monthly` (returns, {now:%Y-%m}): $8.50 of $10.00 (85%)"
    )
    assert section(home, "home_paused") == "No agent is paused."


async def test_a_waiting_approval_past_its_expiry_leaves_the_home(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)
    await aios.handlers.home.opened(MANAGER, "T0FAKE")
    assert len(waiting(home_of(slack_api, MANAGER))) == 1
    clock.advance(hours=4)
    await aios.handlers.home.refresh_all()
    assert waiting(home_of(slack_api, MANAGER)) == []
    async with aios.units() as uow:
        assert [a.status for a in await uow.repo.pending_approvals()] == ["pending"]  # the sweep expires it
