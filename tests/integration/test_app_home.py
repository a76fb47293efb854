"""Each person's App Home from the records (SQLite and PostgreSQL): the approvals they may decide now (roles held
through a Slack user group, not their own requests where the rule forbids it, escalated ones for the escalation
roles, none of another Slack team), their requests, spend, budgets and paused agents; published when it changed
and only then, never on the way of an approved action, and again after a publish race lost; a click on the Home
answered on the Home; a person Slack no longer knows forgotten, other refusals retried later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from bot.bootstrap import Aios
from bot.home_refresher import RETRY_FIRST, SPEND_REDRAWN_EVERY, HomeRefresher
from bot.slack_home import decide_from_home
from runtime.intake import accept_edit
from runtime.messages import (
    ActionAllowed,
    ActionApproved,
    ActionExecuted,
    ActionFailed,
    AgentResumed,
    DecideApproval,
    EditApproval,
    PauseAgent,
    ResumeAgent,
)
from runtime.transport import Transport
from storage.home_viewers import HomeViewers
from storage.records import BudgetAccount, Execution, LlmCall, ProposedAction
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
  - id: huge-refunds-need-two-managers
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 405.0
    verdict: require_approval
    approvers: [manager]
    quorum: 2
    timeout: 4h
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
        return [f"AP-{a.id}" for a in await uow.approvals.pending_approvals()]


async def test_each_home_shows_what_its_viewer_may_decide(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    await ask(aios, "refund $150 on order 1001, arrived broken", user=LEAD, thread_ts="1.1")
    await ask(aios, "refund $400 on order 1005, never arrived", user=ALICE, thread_ts="1.2")
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE, thread_ts="1.3")
    own, escalating, theirs = await approval_ids(aios)
    for user in (LEAD, MANAGER, FINANCE, ALICE):
        await aios.home.opened(user, "T0FAKE")

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
    await aios.home.refresh_all()
    assert waiting(home_of(slack_api, MANAGER)) == [own, escalating, theirs]
    assert waiting(home_of(slack_api, LEAD)) == [escalating, theirs]
    assert waiting(home_of(slack_api, FINANCE)) == [escalating]


async def test_a_home_is_published_again_only_when_it_changed(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)
    [approval] = await approval_ids(aios)
    await aios.home.opened(MANAGER, "T0FAKE")
    await aios.home.opened(ALICE, "T0FAKE")
    assert publishes(slack_api, MANAGER) == 1 and waiting(home_of(slack_api, MANAGER)) == [approval]

    await aios.home.refresh_all()
    await aios.home.refresh_all()
    assert publishes(slack_api, MANAGER) == 1 and publishes(slack_api, ALICE) == 1
    await aios.home.refresh("U0NOBODY")  # never opened their Home: nothing to publish
    assert publishes(slack_api, "U0NOBODY") == 0

    # Approved: the bus's events draw both Homes again; the approval leaves the manager's, the request is done.
    await aios.process(DecideApproval(int(approval.removeprefix("AP-")), MANAGER, True, CHANNEL))
    await aios.home.settle()
    assert waiting(home_of(slack_api, MANAGER)) == []
    assert section(home_of(slack_api, ALICE), "home_request_0").startswith("*Done* · `I-1` · `R-1` returns")
    assert publishes(slack_api, MANAGER) == 2

    # A publish Slack refuses is not taken as published: a later refresh publishes the change, once Slack was
    # left alone for a while.
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    slack_api.fail_next("views.publish", "ratelimited", times=2)
    await aios.home.refresh_all()
    assert "returns" not in section(home_of(slack_api, MANAGER), "home_paused")
    tried = len(slack_api.calls_to("views.publish"))
    await aios.home.refresh_all()
    assert len(slack_api.calls_to("views.publish")) == tried  # not asked again at once
    clock.advance(seconds=RETRY_FIRST.total_seconds())
    await aios.home.refresh_all()
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
            await uow.add(
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
            await uow.add(
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
    await aios.home.opened(ALICE, "T0FAKE")
    home = home_of(slack_api, ALICE)
    assert section(home, "home_spend") == (  # as they are when the Home is opened
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
    await aios.home.opened(MANAGER, "T0FAKE")
    assert len(waiting(home_of(slack_api, MANAGER))) == 1
    clock.advance(hours=4)
    await aios.home.refresh_all()
    assert waiting(home_of(slack_api, MANAGER)) == []
    async with aios.units() as uow:
        assert [a.status for a in await uow.approvals.pending_approvals()] == [
            "pending"
        ]  # the sweep expires it


class HeldPublishes:
    """The bot's own Slack transport, with each Home publish held until the test lets it through."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.gate = asyncio.Event()
        self.reached = asyncio.Event()  # a publish is held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        self.reached.set()
        await self.gate.wait()
        await self._transport.publish_home(user, view)

    async def until_held(self) -> None:
        async with asyncio.timeout(10):
            await self.reached.wait()


async def executions(aios: Aios) -> list[str]:
    async with aios.units() as uow:
        return [e.status for e in (await uow.session.exec(select(Execution))).all()]


def notice(view: dict[str, Any]) -> str:
    first = view["blocks"][0]
    return str(first["text"]["text"]) if first["block_id"] == "home_notice" else ""


async def test_an_approved_action_runs_without_waiting_for_the_homes(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)
    [approval] = await approval_ids(aios)
    for user in (MANAGER, ALICE, LEAD):
        await aios.home.opened(user, "T0FAKE")
    held = HeldPublishes(aios.home.transport)
    aios.home.transport = held

    # Slack takes no Home while the refund is approved and runs: the Homes are redrawn beside it, not before.
    async with asyncio.timeout(10):
        await aios.process(DecideApproval(int(approval.removeprefix("AP-")), MANAGER, True, CHANNEL))
    assert await executions(aios) == ["succeeded"]
    await held.until_held()

    held.gate.set()
    await aios.home.settle()
    assert waiting(home_of(slack_api, MANAGER)) == []
    assert section(home_of(slack_api, ALICE), "home_request_0").startswith("*Done* · `I-1` · `R-1` returns")


async def test_a_model_call_alone_publishes_a_home_at_most_every_few_minutes(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    intent = await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)
    await aios.home.opened(ALICE, "T0FAKE")
    assert section(home_of(slack_api, ALICE), "home_spend").startswith("*Model spend this month:* no model")
    async with aios.units() as uow:
        await uow.add(
            LlmCall(
                intent_id=intent,
                agent="returns",
                requester=ALICE,
                channel=CHANNEL,
                model="claude",
                role="agent",
                cost_usd=1.5,
                outcome="ok",
                created_at=clock(),
            )
        )
        await uow.commit()

    clock.advance(minutes=2)
    await aios.home.refresh_all()
    assert publishes(slack_api, ALICE) == 1  # the spend it shows is two minutes old
    clock.advance(seconds=SPEND_REDRAWN_EVERY.total_seconds() - 120)
    await aios.home.refresh_all()
    assert publishes(slack_api, ALICE) == 2
    assert section(home_of(slack_api, ALICE), "home_spend").startswith("*Model spend this month:* $1.50")


async def test_an_edited_request_shows_its_edit_on_the_home_and_a_click_there_counts(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund $410 on order 1005, never arrived", user=ALICE)
    [approval] = await approval_ids(aios)
    approval_id = int(approval.removeprefix("AP-"))
    async with aios.units() as uow:
        [action] = (await uow.session.exec(select(ProposedAction))).all()
    params = {**action.params, "amount": 408.0}  # still for two managers: the editor's counts as one
    edit_id = await accept_edit(aios.units, approval_id, MANAGER, params, CHANNEL)
    await aios.process(EditApproval(approval_id, MANAGER, params, CHANNEL, edit_id=edit_id))
    await aios.home.opened(LEAD, "T0FAKE")

    home = home_of(slack_api, LEAD)
    edited = next(b for b in home["blocks"] if b["block_id"] == f"home_edits_{approval}")
    assert edited["elements"][0]["text"] == ":pencil2: Edited by <@U0MANAGER>: Amount $410.00 → $408.00"
    [buttons] = [b for b in home["blocks"] if b["type"] == "actions"]
    assert buttons["block_id"] == f"aios_decision_{approval}.e1"  # the click says it saw the edit

    decide_from_home(aios, DecideApproval(approval_id, LEAD, True, CHANNEL, edits_seen=1))
    await aios.background.drain()
    await aios.home.settle()
    assert await executions(aios) == ["succeeded"]
    assert notice(home_of(slack_api, LEAD)) == f":information_source: Your click on `{approval}`: approved."


async def test_a_refresh_reads_as_much_for_many_viewers_and_approvals_as_for_few(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund $410 on order 1005, never arrived", user=ALICE, thread_ts="1.1")
    for user in (MANAGER, ALICE):
        await aios.home.opened(user, "T0FAKE")
    statements: list[str] = []

    def read(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(aios.engine.sync_engine, "before_cursor_execute", read)
    try:
        await aios.home.refresh_all()
        few = list(statements)
        await ask(aios, "refund $150 on order 1001, arrived broken", user=ALICE, thread_ts="1.2")
        await ask(aios, "refund $120 on order 1003, wrong size", user=LEAD, thread_ts="1.3")
        await aios.process(DecideApproval(1, MANAGER, True, CHANNEL))  # a vote of the two it needs
        for n in range(18):
            await aios.home.opened(f"U0VIEWER{n}", "T0FAKE")
        await aios.home.refresh_all()  # publishes the Homes that changed
        statements.clear()
        await aios.home.refresh_all()
        many = list(statements)
    finally:
        event.remove(aios.engine.sync_engine, "before_cursor_execute", read)
    assert len(few) == len(many), [statement.split("\n")[0] for statement in many]


async def test_homes_subscribe_after_executions(aios: Aios) -> None:
    """Each event's own work (an execution started, a thread told) is under way before the Homes are marked
    for a redraw, so a redraw never holds it up."""
    for changed in (ActionAllowed, ActionApproved, ActionExecuted, ActionFailed, AgentResumed):
        subscribers = aios.bus.subscribers(changed)
        assert len(subscribers) > 1, changed.__name__
        assert subscribers[-1] == aios.home.changed, changed.__name__


async def test_a_publish_race_lost_is_published_again(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)
    await aios.home.opened(MANAGER, "T0FAKE")
    held = HeldPublishes(aios.home.transport)
    home = aios.home
    replica = HomeRefresher(
        units=home.units,
        policy=home.policy,
        registry=home.registry,
        transport=held,
        clock=home.clock,
        zone=home.zone,
    )

    # Another replica draws the paused agent, and Slack is slow to take its Home...
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    await home.settle()
    slow = asyncio.create_task(replica.refresh(MANAGER))
    await held.until_held()
    # ...while this one draws the agent resumed, and publishes first.
    await aios.process(ResumeAgent("returns", MANAGER, CHANNEL))
    await home.settle()
    assert section(home_of(slack_api, MANAGER), "home_paused") == "No agent is paused."
    held.gate.set()
    await slow
    assert section(home_of(slack_api, MANAGER), "home_paused").startswith("• *returns*, paused by")

    await home.refresh_all()  # which of the two Slack shows is unknown: published again
    assert section(home_of(slack_api, MANAGER), "home_paused") == "No agent is paused."


async def test_a_click_on_the_home_is_answered_at_the_top_of_the_clickers_home(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE, thread_ts="1.1")
    await ask(aios, "refund $410 on order 1005, never arrived", user=ALICE, thread_ts="1.2")
    own, huge = await approval_ids(aios)
    for user in (ALICE, MANAGER, LEAD):
        await aios.home.opened(user, "T0FAKE")

    async def click(user: str, approval: str) -> str:
        decide_from_home(aios, DecideApproval(int(approval.removeprefix("AP-")), user, True, CHANNEL))
        await aios.background.drain()
        await aios.home.settle()
        return notice(home_of(slack_api, user))

    assert await click(ALICE, own) == (
        f":information_source: Your click on `{own}` did not count. You asked for this, and rule "
        "`refunds-over-100-need-a-manager` does not let the requester approve it. Someone else with the "
        "manager role has to approve."
    )
    assert await click(MANAGER, huge) == (
        f":information_source: Your click on `{huge}` counted: it has 1 of the 2 approvals it needs."
    )
    assert waiting(home_of(slack_api, MANAGER)) == [own]  # the one they voted for waits for someone else
    assert await click(LEAD, huge) == f":information_source: Your click on `{huge}`: approved."
    published = len(slack_api.calls_to("views.publish"))
    await aios.home.refresh_all()  # a replica with no notice to show does not publish it away
    assert len(slack_api.calls_to("views.publish")) == published


async def test_a_person_slack_no_longer_knows_is_dropped(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    for user in (ALICE, MANAGER):
        await aios.home.opened(user, "T0FAKE")
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)
    await aios.home.settle()
    slack_api.fail_next("views.publish", "account_inactive")  # Alice's Home first, by user id
    await aios.home.refresh_all()
    async with aios.units() as uow:
        kept = [v.user for v in await HomeViewers(uow.session).since(clock() - timedelta(days=1))]
    assert kept == [MANAGER]
    tried = publishes(slack_api, ALICE)
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    await aios.home.refresh_all()
    assert publishes(slack_api, ALICE) == tried
    assert section(home_of(slack_api, MANAGER), "home_paused").startswith("• *returns*")


async def test_a_home_shows_no_approval_of_another_slack_team(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE)  # in T0FAKE
    await aios.home.opened(MANAGER, "T0OTHER")
    await aios.home.opened(LEAD, "T0FAKE")
    assert waiting(home_of(slack_api, MANAGER)) == []
    assert waiting(home_of(slack_api, LEAD)) == await approval_ids(aios)
