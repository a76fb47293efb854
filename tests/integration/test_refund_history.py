"""Conditions see what happened before the run, from our own records: what an order already had refunded and
what the requester moved today. A large refund split across requests is still seen; so are roles held
through a Slack user group."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.actions import ShopRefund
from connectors.sandbox_state import sandbox_state
from policies.engine import DEFAULT_POLICY
from runtime.handlers.judging import COUNTED_TODAY, MOVED_MONEY, judge
from runtime.messages import DecideApproval, PauseAgent
from storage.records import ActionStatus, Decision, Intent, ProposedAction, Run, utcnow
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, ask, start_aios

DAILY_POLICY = """
version: 1
roles:
  manager: [U0MANAGER]
  support: [S0SUPPORT]
rules:
  - id: refunds-over-100-need-a-manager
    when: >-
      action.name == "shop.refund"
      && (run.totals["shop.refund"] + requester.today["shop.refund"] > 100.0
          || order.refunded + action.params.amount > 100.0)
    verdict: require_approval
    approvers: [manager]
  - id: support-may-email
    when: action.name == "email.send" && "support" in requester.roles
    verdict: allow
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


async def verdicts(aios: Aios) -> list[tuple[str, str | None]]:
    async with aios.units() as uow:
        query = select(Decision).where(Decision.kind == "policy").order_by(col(Decision.id))
        return [(d.verdict, d.rule_id) for d in (await uow.session.exec(query)).all()]


async def test_three_small_refunds_on_one_order_are_seen_together(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=DEFAULT_POLICY.read_text())
    try:
        for n in range(3):
            await ask(aios, "refund order 1001 $70 scratched", thread_ts=f"1.{n}")
        assert await verdicts(aios) == [
            ("allow", "small-refunds-are-fine"),
            ("require_approval", "refunds-over-100-need-a-manager"),
            ("require_approval", "refunds-over-100-need-a-manager"),
        ]
        assert [r["amount"] for r in (await sandbox_state(aios.units))["refunds"]] == [70.0]
    finally:
        await aios.close()


async def test_what_a_requester_moved_today_counts_and_what_was_turned_down_does_not(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=DAILY_POLICY)
    try:
        await ask(aios, "refund order 1001 $60 scratched", thread_ts="1.1")
        await ask(aios, "refund order 1003 $60 dented", thread_ts="1.2")  # 120 today: a manager
        await ask(aios, "refund order 1005 $60 late", user="U0BOB", thread_ts="1.3")  # someone else's day
        assert [v for v, _ in await verdicts(aios)] == ["allow", "require_approval", "allow"]

        await aios.process(DecideApproval(1, MANAGER, approve=False, channel=CHANNEL))
        await ask(aios, "refund order 1004 $30 late", thread_ts="1.4")  # the rejected $60 is not counted
        assert (await verdicts(aios))[-1] == ("allow", "small-refunds-are-fine")

        clock.advance(hours=24)  # a new day
        await ask(aios, "refund order 1003 $60 dented", thread_ts="1.5")
        assert (await verdicts(aios))[-1] == ("allow", "small-refunds-are-fine")
    finally:
        await aios.close()


async def test_a_user_group_gives_its_members_the_role(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    slack_api.groups["S0SUPPORT"] = ["U0ALICE"]
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=DAILY_POLICY)
    try:
        await ask(aios, "refund order 1003 $20 dented and tell the customer", thread_ts="1.1")
        await ask(aios, "refund order 1001 $20 dented and tell the customer", user="U0BOB", thread_ts="1.2")
        assert [rule for _, rule in await verdicts(aios)] == [
            "small-refunds-are-fine",
            "support-may-email",
            "small-refunds-are-fine",
            "default",
        ]

        await aios.process(PauseAgent("returns", "U0BOB", CHANNEL))  # no role, not in the group
        await aios.process(PauseAgent("returns", REQUESTER, CHANNEL))  # support, through the group
        async with aios.units() as uow:
            pause = await uow.runs.is_paused("returns")
        assert pause is not None and pause.paused_by == REQUESTER
        refused = slack_api.calls_to("chat.postEphemeral")
        assert [c.params["user"] for c in refused] == ["U0BOB"]
    finally:
        await aios.close()


async def test_what_the_order_and_the_requester_moved_before_is_read_in_one_statement(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=DAILY_POLICY)
    try:
        await ask(aios, "refund order 1001 $60 scratched", thread_ts="1.1")
        await ask(
            aios, "refund order 1001 $30 dented", user="U0BOB", thread_ts="1.2"
        )  # the order's, not her day's
        await ask(aios, "refund order 1003 $20 dented", thread_ts="1.3")  # her day's, not the order's
        await aios.home.settle()  # the App Home redraws the refunds set off, done before counting
        sent: list[str] = []

        def sending(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if not statement.startswith("BEGIN"):
                sent.append(statement)

        refund = ShopRefund(order_id=1001, amount=5.0, reason="late")
        async with aios.units() as uow:
            event.listen(aios.engine.sync_engine, "before_cursor_execute", sending)
            try:
                verdict, facts = await judge(aios.policy, clock, uow, refund, REQUESTER, 0, [], {})
            finally:
                event.remove(aios.engine.sync_engine, "before_cursor_execute", sending)

        assert len(sent) == 1, sent
        assert (facts.order_refunded, dict(facts.requester_today)) == (90.0, {"shop.refund": 80.0})
        assert verdict.rule_id == "small-refunds-are-fine"
    finally:
        await aios.close()


async def test_an_order_id_that_is_no_number_leaves_the_order_counted(units: UnitOfWorkFactory) -> None:
    """Another action's parameters may be anything (an MCP tool's, a request made to break things): an order_id
    that is no number, on an action of this name or another, leaves what order 1001 had refunded counted. Cast
    to an integer it failed the statement on PostgreSQL, which does not promise to look at the name first."""
    async with units() as uow:
        intent = await uow.add(Intent(source="console", channel=CHANNEL, user=REQUESTER, text="refunds"))
        run = await uow.add(Run(intent_id=intent.id or 0, agent="returns"))
        for name, order_id in (
            ("shop.refund", 1001),
            ("shop.refund", "ORD-7"),
            ("mcp.orders.cancel", "ORD-7"),
        ):
            params = {"order_id": order_id, "amount": 60.0, "reason": "late"}
            await uow.add(
                ProposedAction(run_id=run.id or 0, name=name, params=params, status=ActionStatus.EXECUTED)
            )
        await uow.commit()

    async with units.read() as uow:
        moved = await uow.runs.money_moved(
            "shop.refund",
            REQUESTER,
            on_order=1001,
            on_payment=None,
            moved=MOVED_MONEY,
            since=utcnow() - timedelta(days=1),
            counted=COUNTED_TODAY,
            other_than_run=0,
        )

    assert moved.on_order == 60.0
    assert moved.requester_today == {"shop.refund": 120.0, "mcp.orders.cancel": 60.0}
