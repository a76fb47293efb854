"""Quorum, escalation and expiry (with a clock the test moves), and pausing an agent."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval, PauseAgent, ResumeAgent, SweepTimers
from storage.records import Approval, ApprovalStatus, Decision, Run
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, OTHER_MANAGER, ask, start_aios

FIN1, FIN2, FIN3 = "U0FIN1", "U0FIN2", "U0FIN3"


async def the_approval(aios: Aios) -> Approval:
    async with aios.units() as uow:
        approvals = (await uow.session.exec(select(Approval).order_by(col(Approval.id)))).all()
    return approvals[-1]


async def refunds(aios: Aios, order_id: int) -> list[float]:
    return [r["amount"] for r in (await sandbox_state(aios.units))["refunds"] if r["order_id"] == order_id]


def posted(slack: FakeSlackApi, text: str) -> list[str]:
    return [c.params["text"] for c in slack.calls_to("chat.postMessage") if text in c.params["text"]]


async def test_a_quorum_needs_two_different_approvers_and_the_requester_never_counts(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1005, $400, never arrived", user=FIN3)
    approval = await the_approval(aios)
    assert approval.id is not None and approval.quorum == 2

    await aios.process(DecideApproval(approval.id, FIN3, True, CHANNEL))  # the requester
    await aios.process(DecideApproval(approval.id, FIN1, True, CHANNEL))
    await aios.process(DecideApproval(approval.id, FIN1, True, CHANNEL))  # the same person again
    assert (await the_approval(aios)).status == "pending" and await refunds(aios, 1005) == []
    card = slack_api.calls_to("chat.update")[-1]
    assert "1 of 2 approvals:* <@U0FIN1>" in str(card.params["blocks"])
    assert any(b["type"] == "actions" for b in card.params["blocks"])  # the buttons stay

    await aios.process(DecideApproval(approval.id, FIN2, True, CHANNEL))
    assert (await the_approval(aios)).status == "approved"
    assert await refunds(aios, 1005) == [400.0]
    async with aios.units() as uow:
        decisions = (
            await uow.session.exec(
                select(Decision).where(Decision.action_id == approval.action_id).order_by(col(Decision.id))
            )
        ).all()
    assert [(d.kind, d.verdict, d.actor) for d in decisions] == [
        ("policy", "require_approval", "policy"),
        ("refusal", "refused:self_approval", FIN3),
        ("human", "vote", FIN1),
        ("refusal", "refused:already_voted", FIN1),
        ("human", "approved", FIN2),
    ]


async def test_concurrent_quorum_votes_approve_once(aios: Aios) -> None:
    await ask(aios, "refund order 1005, $400, never arrived")
    approval = await the_approval(aios)
    assert approval.id is not None
    clicks = [DecideApproval(approval.id, user, True, CHANNEL) for user in [FIN1, FIN2, FIN3] * 5]
    await asyncio.gather(*(aios.process(click) for click in clicks))
    assert (await the_approval(aios)).status == "approved"
    assert await refunds(aios, 1005) == [400.0]


async def test_a_waiting_approval_escalates_then_expires_and_is_never_approved(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    await ask(aios, "refund order 1005, $400, never arrived")
    approval = await the_approval(aios)

    clock.advance(minutes=59)
    await aios.process(SweepTimers())
    assert posted(slack_api, "still waiting") == []

    clock.advance(minutes=2)
    await aios.process(SweepTimers())
    await aios.process(SweepTimers())  # a second replica, or a second firing: once only
    [escalation] = posted(slack_api, "still waiting")
    assert "<@U0MANAGER> <@U0MANAGER2>" in escalation and f"AP-{approval.id}" in escalation
    assert (await the_approval(aios)).status == "pending"

    clock.advance(hours=1)
    await aios.process(SweepTimers())
    await aios.process(SweepTimers())
    assert (await the_approval(aios)).status == "expired"
    assert len(posted(slack_api, "expired without a decision")) == 1
    assert await refunds(aios, 1005) == []
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, FIN1, True, CHANNEL))
    assert await refunds(aios, 1005) == []


async def test_timers_live_in_sql_so_a_new_process_sweeps_them(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock, database_url: str, tmp_path: Path
) -> None:
    await ask(aios, "refund order 1001, $250, broken")  # rule timeout 4h, no escalation
    await aios.close()
    clock.advance(hours=5)
    restarted = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await restarted.process(SweepTimers())
        assert (await the_approval(restarted)).status == "expired"
    finally:
        await restarted.close()


async def test_pause_holds_new_runs_and_approved_actions_and_resume_lets_them_go(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, broken", thread_ts="1.1")
    approval = await the_approval(aios)
    assert approval.id is not None

    await aios.process(PauseAgent("returns", "U0RANDOM", CHANNEL))  # no role: refused
    await aios.process(PauseAgent("nobody", MANAGER, CHANNEL))
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    refusals = [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")]
    assert "Only people with a role" in refusals[0] and "There is no agent 'nobody'" in refusals[1]
    assert posted(slack_api, "paused the returns agent")

    await ask(aios, "refund $20 on order 1002, late", thread_ts="1.2")
    await aios.process(DecideApproval(approval.id, MANAGER, True, CHANNEL))
    assert await refunds(aios, 1001) == [] and await refunds(aios, 1002) == []
    async with aios.units() as uow:
        statuses = [r.status for r in (await uow.session.exec(select(Run).order_by(col(Run.id)))).all()]
    assert statuses == ["paused", "paused"]

    await aios.process(ResumeAgent("returns", MANAGER, CHANNEL))
    assert await refunds(aios, 1001) == [250.0] and await refunds(aios, 1002) == [20.0]
    async with aios.units() as uow:
        statuses = [r.status for r in (await uow.session.exec(select(Run).order_by(col(Run.id)))).all()]
    assert statuses == ["completed", "completed"]


def whispers_to(slack: FakeSlackApi, user: str) -> list[str]:
    return [c.params["text"] for c in slack.calls_to("chat.postEphemeral") if c.params["user"] == user]


async def test_the_managers_escalated_to_may_decide_and_the_requester_still_may_not(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    # Finance (two of them) decides refunds over $300; after an hour the managers are called in.
    await ask(aios, "refund order 1005, $400, never arrived", user=OTHER_MANAGER)
    approval = await the_approval(aios)
    assert approval.id is not None

    await aios.process(DecideApproval(approval.id, MANAGER, True, CHANNEL))
    assert "Only the finance role can decide" in whispers_to(slack_api, MANAGER)[-1]

    clock.advance(minutes=61)
    await aios.process(SweepTimers())
    [escalation] = posted(slack_api, "still waiting")
    assert "<@U0MANAGER>" in escalation and "you may now decide it" in escalation

    await aios.process(DecideApproval(approval.id, "U0BOB", True, CHANNEL))
    assert "Only the finance or manager role can decide" in whispers_to(slack_api, "U0BOB")[-1]
    await aios.process(DecideApproval(approval.id, OTHER_MANAGER, True, CHANNEL))  # the requester
    assert "You asked for this" in whispers_to(slack_api, OTHER_MANAGER)[-1]
    await aios.process(DecideApproval(approval.id, MANAGER, True, CHANNEL))
    assert (await the_approval(aios)).status == "pending"  # the quorum of two still holds
    await aios.process(DecideApproval(approval.id, FIN1, True, CHANNEL))

    assert (await the_approval(aios)).status == "approved"
    assert await refunds(aios, 1005) == [400.0]
    async with aios.units() as uow:
        decisions = (
            await uow.session.exec(
                select(Decision).where(Decision.action_id == approval.action_id).order_by(col(Decision.id))
            )
        ).all()
    assert [(d.kind, d.verdict, d.actor) for d in decisions] == [
        ("policy", "require_approval", "policy"),
        ("refusal", "refused:not_an_approver", MANAGER),
        ("escalation", "escalated", "clock"),
        ("refusal", "refused:not_an_approver", "U0BOB"),
        ("refusal", "refused:self_approval", OTHER_MANAGER),
        ("human", "vote", MANAGER),
        ("human", "approved", FIN1),
    ]


async def test_an_approval_the_unit_holds_reads_as_decided_once_it_is(aios: Aios, clock: Clock) -> None:
    """The decision is one compare-and-set UPDATE, its values bound at execution: the approval loaded earlier in
    the same unit of work must not go on reading as pending."""
    await ask(aios, "refund order 1001 $250 arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    async with aios.units() as uow:
        held = await uow.approvals.lock_approval_in_hand(approval.id)
        assert held is not None and held.approval.status == "pending"
        assert await uow.approvals.decide_approval(approval.id, ApprovalStatus.APPROVED, MANAGER, clock())
        assert (held.approval.status, held.approval.decided_by) == ("approved", MANAGER)
        assert held.approval.decided_at == clock()
        await uow.commit()
