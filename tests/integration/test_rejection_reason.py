"""Reject with a reason: the reason is recorded on the action and told in the thread, and the agent plans once more
with it; the revision is judged by the policy like any proposal, made once, and recovered after a crash."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import col, select

from agents.base import FEEDBACK_ASK
from bot.bootstrap import Aios, bootstrap
from bot.console import ConsoleSession, ConsoleTransport
from bot.explain import explain
from bot.rejection_reasons import ReasonAnswer, accept_reason
from bot.settings import Settings
from connectors.actions import CmsCreateDraft
from connectors.sandbox_state import sandbox_state
from runtime.intake import accept_click
from runtime.messages import (
    DecideApproval,
    PauseAgent,
    Recover,
    RequestBudget,
    ResumeAgent,
    ReviseRejected,
)
from storage.engine import create_engine
from storage.records import (
    Approval,
    Click,
    Decision,
    Intent,
    ProposedAction,
    RejectionReason,
    Run,
)
from storage.rejection_reasons import RejectionReasons
from tests.conftest import Clock
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, OTHER_MANAGER, REQUESTER, ask, write_policy
from tests.integration.test_audit_chain import audit, sql
from tests.integration.test_budgets import budgeted
from tests.integration.test_scheduled_publishing import BERLIN, EDITOR, berlin_aios, posts

BROKEN_ITEM = "refund only the broken item, $40"


async def newest_approval(aios: Aios) -> Approval:
    async with aios.units() as uow:
        approvals = (await uow.session.exec(select(Approval).order_by(col(Approval.id)))).all()
    approval = approvals[-1]
    assert approval.id is not None
    return approval


async def runs(aios: Aios) -> list[Run]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(Run).order_by(col(Run.id)))).all())


async def actions_of(aios: Aios, run_id: int | None) -> list[ProposedAction]:
    assert run_id is not None
    async with aios.units() as uow:
        return list(await uow.runs.actions_for_run(run_id))


async def decisions_of(aios: Aios, action_id: int) -> list[Decision]:
    async with aios.units() as uow:
        return list(await uow.runs.decisions_for_action(action_id))


async def the_reason(aios: Aios, approval_id: int) -> RejectionReason:
    async with aios.units() as uow:
        reason = await RejectionReasons(uow.session).of_approval(approval_id)
    assert reason is not None
    return reason


async def refunds(aios: Aios, order_id: int) -> list[float]:
    return [r["amount"] for r in (await sandbox_state(aios.units))["refunds"] if r["order_id"] == order_id]


def thread_texts(slack: FakeSlackApi) -> list[str]:
    return [str(c.params["text"]) for c in slack.calls_to("chat.postMessage")]


def whispers(slack: FakeSlackApi, user: str) -> list[str]:
    return [str(c.params["text"]) for c in slack.calls_to("chat.postEphemeral") if c.params["user"] == user]


async def click_reject(aios: Aios, approval_id: int, user: str = MANAGER) -> DecideApproval:
    """A Reject click as the Slack listener takes it: stored first, then the command that decides it."""
    click_id = await accept_click(
        aios.units, Click(approval_id=approval_id, user=user, approve=False, channel=CHANNEL)
    )
    return DecideApproval(approval_id, user, False, CHANNEL, click_id=click_id)


async def give_reason(
    aios: Aios, approval_id: int, text: str, user: str = MANAGER, *, received_by: int | None = None
) -> ReasonAnswer:
    """The dialog's submission as the Slack listener takes it: checked against who may decide, then stored
    (``received_by``: the lease of the process that stored it, if one is named)."""
    answer = await accept_reason(
        aios.units,
        approval_id,
        user,
        text,
        may_reject=aios.handlers.revisions.may_reject,
        received_by=received_by,
    )
    assert answer is not None
    return answer


async def reject_because(aios: Aios, approval_id: int, text: str, user: str = MANAGER) -> int:
    """Reject, then say why; the stored reason's id."""
    await aios.process(await click_reject(aios, approval_id, user))
    answer = await give_reason(aios, approval_id, text, user)
    assert answer.reason_id is not None, answer.problem
    await aios.process(ReviseRejected(approval_id, user, CHANNEL, answer.reason_id))
    return answer.reason_id


async def test_the_reviewers_amount_is_planned_judged_and_run_once(
    aios: Aios, slack_api: FakeSlackApi, database_url: str
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await reject_because(aios, approval.id, BROKEN_ITEM)

    first, revision = await runs(aios)
    assert (revision.intent_id, revision.agent) == (first.intent_id, first.agent)
    [rejected] = await actions_of(aios, first.id)
    [revised] = await actions_of(aios, revision.id)
    assert rejected.status == "rejected"
    assert (revised.name, revised.params["order_id"], revised.params["amount"]) == ("shop.refund", 1001, 40.0)
    assert revised.params["reason"] == f"arrived broken; reviewer: {BROKEN_ITEM}"
    assert revised.status == "executed" and revision.id is not None
    assert (await runs(aios))[1].status == "completed"
    # Judged by the policy like any proposal: $40 is a small refund, so it runs without asking anyone.
    assert revised.id is not None
    [(kind, verdict, rule)] = [(d.kind, d.verdict, d.rule_id) for d in await decisions_of(aios, revised.id)]
    assert (kind, verdict, rule) == ("policy", "allow", "small-refunds-are-fine")
    assert await refunds(aios, 1001) == [40.0]  # and never the $250

    assert rejected.id is not None
    feedback = [d for d in await decisions_of(aios, rejected.id) if d.kind == "feedback"]
    assert [(d.verdict, d.actor, d.reason) for d in feedback] == [("reason", MANAGER, BROKEN_ITEM)]
    reason = await the_reason(aios, approval.id)
    assert (reason.outcome, reason.revision_run_id) == ("revised", revision.id)
    assert reason.processed_at is not None
    said = thread_texts(slack_api)
    assert f":speech_balloon: <@{MANAGER}> rejected AP-{approval.id}: “{BROKEN_ITEM}”" in said
    assert any("$40.00" in text and "Allowed by policy" in text for text in said)

    why = await explain(aios.units, f"A-{rejected.id}")
    assert f"reason for the rejection from <@{MANAGER}>" in why
    assert f"— revised as R-{revision.id} / A-{revised.id}" in why

    # The reason is in the audit chain: changed afterwards, it no longer verifies.
    assert (await audit(aios)).problems == []
    outside = create_engine(database_url)  # as someone editing the table by hand, past the bot
    try:
        await sql(outside, "UPDATE rejection_reason SET reason = 'refund $250, all of it'")
    finally:
        await outside.dispose()
    [problem] = (await audit(aios)).problems
    assert (problem.kind, problem.record) == ("edited", f"rejection reason {reason.id}")


async def test_the_model_is_given_the_reviewers_words_as_a_last_turn(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    refund = {"order_id": 1001, "reason": "arrived broken"}
    anthropic_api.script(
        Reply("Refund it all.", (ToolUse("shop_refund", {**refund, "amount": 250.0}),)),
        Reply("Only the broken item, then.", (ToolUse("shop_refund", {**refund, "amount": 40.0}),)),
    )
    await ask(claude_aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(claude_aios)
    assert approval.id is not None
    await reject_because(claude_aios, approval.id, BROKEN_ITEM)

    first, revised = anthropic_api.requests
    first_turns, turns = first["messages"], revised["messages"]
    assert turns[: len(first_turns)] == first_turns  # the same request, then the feedback
    last = turns[-1]
    assert last["role"] == "user"
    assert last["content"].startswith("Your proposed action shop_refund ")
    assert json.dumps({**refund, "amount": 250.0}, sort_keys=True) in last["content"]
    assert f"was rejected by a reviewer, <@{MANAGER}>, who said: “{BROKEN_ITEM}”." in last["content"]
    assert last["content"].endswith(FEEDBACK_ASK)
    assert "which stand as they are:" not in last["content"]  # the plan had no other actions
    assert await refunds(claude_aios, 1001) == [40.0]


async def test_only_the_person_who_rejected_may_say_why_and_only_once(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    ref = f"AP-{approval.id}"
    assert (await give_reason(aios, approval.id, BROKEN_ITEM)).problem == (
        f"{ref} is still waiting for a decision, not rejected, so there is nothing to say why."
    )
    reason_id = await reject_because(aios, approval.id, BROKEN_ITEM)

    refused = await give_reason(aios, approval.id, "refund $10", user=OTHER_MANAGER)
    assert refused == ReasonAnswer(problem=f"Only <@{MANAGER}> who rejected {ref} can say why.")
    again = await give_reason(aios, approval.id, "refund $10")
    assert again.reason_id is None
    assert (
        again.problem == f"{ref} already has its reason, from <@{MANAGER}>; a rejection is revised only once."
    )
    # The same reason handled twice (a redelivery, a restart) revises once.
    await aios.process(ReviseRejected(approval.id, MANAGER, CHANNEL, reason_id))
    await aios.process(ReviseRejected(approval.id, MANAGER, CHANNEL, reason_id, recovered=True))
    assert len(await runs(aios)) == 2
    assert await refunds(aios, 1001) == [40.0]
    assert sum(":speech_balloon:" in text for text in thread_texts(slack_api)) == 1
    async with aios.units() as uow:
        stored = (await uow.session.exec(select(RejectionReason))).all()
    assert [(r.user, r.reason) for r in stored] == [(MANAGER, BROKEN_ITEM)]

    too_long = await give_reason(aios, approval.id, "x" * 2001)
    assert too_long.problem is not None and too_long.problem.startswith("Please keep it to 2,000 characters")
    assert await accept_reason(aios.units, approval.id, MANAGER, "   ") is None  # skipped: nothing to do


async def test_a_reason_sent_while_the_reject_click_is_handled_waits_for_it(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    decide = await click_reject(aios, approval.id)  # stored, not decided yet
    answer = await give_reason(aios, approval.id, BROKEN_ITEM)
    assert answer.reason_id is not None

    async def decide_a_little_later() -> None:
        await asyncio.sleep(0.3)
        await aios.process(decide)

    revise = ReviseRejected(approval.id, MANAGER, CHANNEL, answer.reason_id)
    await asyncio.gather(aios.process(revise), decide_a_little_later())
    assert (await newest_approval(aios)).status == "rejected"
    assert await refunds(aios, 1001) == [40.0]
    assert (await the_reason(aios, approval.id)).outcome == "revised"


async def test_a_reject_decided_between_the_reads_of_its_approval_and_its_clicks_still_counts(
    aios: Aios, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reason's wait reads the approval (pending), and the Reject is decided and its click marked handled
    before it reads the clicks: read in one snapshot, the Reject is still seen waiting, not refused."""
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    decide = await click_reject(aios, approval.id)
    answer = await give_reason(aios, approval.id, BROKEN_ITEM)
    assert answer.reason_id is not None
    reading = RejectionReasons.rejecting_clicks
    decided: list[bool] = []

    async def decided_meanwhile(self: RejectionReasons, approval_id: int) -> list[str]:
        if not decided:
            decided.append(True)
            await aios.process(decide)  # another task's decision, committed between the two reads
        return await reading(self, approval_id)

    monkeypatch.setattr(RejectionReasons, "rejecting_clicks", decided_meanwhile)
    async with asyncio.timeout(30):
        await aios.process(ReviseRejected(approval.id, MANAGER, CHANNEL, answer.reason_id))
    assert decided and (await newest_approval(aios)).status == "rejected"
    assert await refunds(aios, 1001) == [40.0]


async def test_a_reason_from_someone_who_may_not_decide_is_refused_when_sent(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await click_reject(aios, approval.id, user=EDITOR)  # stored, not handled yet
    answer = await give_reason(aios, approval.id, BROKEN_ITEM, user=EDITOR)
    assert answer == ReasonAnswer(
        problem=f"You may not decide AP-{approval.id}, so your Reject does not count and there is nothing to "
        "say why."
    )
    async with aios.units() as uow:
        assert (await uow.session.exec(select(RejectionReason))).all() == []


async def test_only_names_a_rejecter_whose_reject_can_count(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    refused = await click_reject(aios, approval.id, user=EDITOR)  # first, but may not decide
    counted = await click_reject(aios, approval.id)
    assert (await give_reason(aios, approval.id, "refund $10", user=OTHER_MANAGER)).problem == (
        f"Only <@{MANAGER}> who rejected AP-{approval.id} can say why."
    )
    answer = await give_reason(aios, approval.id, BROKEN_ITEM)
    assert answer.reason_id is not None
    await aios.process(refused)
    await aios.process(counted)
    await aios.process(ReviseRejected(approval.id, MANAGER, CHANNEL, answer.reason_id))
    assert await refunds(aios, 1001) == [40.0]


async def test_a_reason_whose_reject_did_not_count_frees_the_approvals_reason(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    decide = await click_reject(aios, approval.id, user=EDITOR)
    # Stored while the click waited (as the console does, which asks no one's role): the click may still count.
    answer = await accept_reason(aios.units, approval.id, EDITOR, "refund $10")
    assert answer is not None and answer.reason_id is not None
    await aios.process(decide)
    await aios.process(ReviseRejected(approval.id, EDITOR, CHANNEL, answer.reason_id))

    assert (await newest_approval(aios)).status == "pending"
    assert len(await runs(aios)) == 1
    async with aios.units() as uow:
        assert (await uow.session.exec(select(RejectionReason))).all() == []
    assert f"Your Reject of AP-{approval.id} was not counted, so your reason was not recorded." in whispers(
        slack_api, EDITOR
    )
    assert ":speech_balloon:" not in " ".join(thread_texts(slack_api))

    # Whoever does reject it can still say why.
    await reject_because(aios, approval.id, BROKEN_ITEM)
    assert await refunds(aios, 1001) == [40.0]
    kept = await the_reason(aios, approval.id)
    assert kept.user == MANAGER and kept.id != answer.reason_id
    # The reason that did not count is gone on purpose: the audit chain recorded its deletion.
    assert (await audit(aios)).problems == []


async def test_a_reason_and_a_recovery_at_once_revise_once(aios: Aios) -> None:
    """A restart's recovery can hand over a reason this process is handling right now (the server takes
    requests before it recovers): the revision is planned by one of them."""
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await aios.process(await click_reject(aios, approval.id))
    answer = await give_reason(aios, approval.id, BROKEN_ITEM)
    assert answer.reason_id is not None

    revise = ReviseRejected(approval.id, MANAGER, CHANNEL, answer.reason_id)
    await asyncio.gather(aios.process(revise), aios.process(Recover(grace_seconds=0)))
    await aios.process(Recover(grace_seconds=0))
    assert await refunds(aios, 1001) == [40.0]
    assert len(await runs(aios)) == 2
    assert (await the_reason(aios, approval.id)).outcome == "revised"


async def test_a_revision_that_waited_for_its_agent_is_planned_with_its_reason(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    await reject_because(aios, approval.id, BROKEN_ITEM)
    _, revision = await runs(aios)
    assert revision.status == "paused" and await actions_of(aios, revision.id) == []

    await aios.process(ResumeAgent("returns", MANAGER, CHANNEL))
    [revised] = await actions_of(aios, revision.id)
    assert revised.params["amount"] == 40.0  # not the request's $250 again
    assert await refunds(aios, 1001) == [40.0]


async def test_a_revision_replaces_only_the_rejected_action(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    refund = {"order_id": 1001, "reason": "arrived broken"}
    email = {"to": "ana@example.com", "subject": "Your refund", "body": "We are refunding your order."}
    anthropic_api.script(
        Reply(
            "Refund it and tell her.",
            (ToolUse("shop_refund", {**refund, "amount": 250.0}), ToolUse("email_send", email)),
        ),
        Reply(
            "Less, and tell her.",
            (ToolUse("shop_refund", {**refund, "amount": 40.0}), ToolUse("email_send", email)),
        ),
    )
    await ask(claude_aios, "refund order 1001, $250, arrived broken, and tell the customer")
    [first] = await runs(claude_aios)
    refund_action, email_action = await actions_of(claude_aios, first.id)
    async with claude_aios.units() as uow:
        refund_approval = await uow.approvals.approval_for_action(refund_action.id or 0)
        email_approval = await uow.approvals.approval_for_action(email_action.id or 0)
    assert refund_approval is not None and refund_approval.id is not None
    assert email_approval is not None and email_approval.id is not None
    await claude_aios.process(DecideApproval(email_approval.id, MANAGER, True, CHANNEL))
    await reject_because(claude_aios, refund_approval.id, BROKEN_ITEM)

    turn = anthropic_api.requests[-1]["messages"][-1]["content"]
    assert "The same plan's other actions, which stand as they are:" in turn
    assert f"- email_send {json.dumps(email, sort_keys=True)}: executed" in turn
    _, revision = await runs(claude_aios)
    assert [(a.name, a.params["amount"]) for a in await actions_of(claude_aios, revision.id)] == [
        ("shop.refund", 40.0)
    ]  # the email already went out: not proposed again
    assert await refunds(claude_aios, 1001) == [40.0]


async def test_a_reason_the_planner_cannot_use_proposes_nothing_and_says_so(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await reject_because(aios, approval.id, "talk to the customer first")

    _, revision = await runs(aios)
    assert revision.status == "answered" and await actions_of(aios, revision.id) == []
    assert (
        "I noted the reviewer's reason (“talk to the customer first”); it names no amount, so I propose "
        "nothing more." in thread_texts(slack_api)[-1]
    )
    assert await refunds(aios, 1001) == []
    assert (await the_reason(aios, approval.id)).outcome == "revised"  # planned again, to nothing


async def test_no_refund_means_no_refund(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await reject_because(aios, approval.id, "no refund, the customer dropped it")
    _, revision = await runs(aios)
    assert revision.status == "answered" and await refunds(aios, 1001) == []
    assert "they said not to, so I propose nothing more" in thread_texts(slack_api)[-1]


async def test_an_amount_that_cannot_be_refunded_proposes_nothing(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await reject_because(aios, approval.id, "refund 40 euros at most")
    _, revision = await runs(aios)
    assert revision.status == "answered" and await refunds(aios, 1001) == []
    assert "I can only refund in US dollars" in thread_texts(slack_api)[-1]


async def test_a_rejected_budget_grant_keeps_its_reason_and_plans_nothing(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
) -> None:
    aios = await budgeted(database_url, slack_api, anthropic_api, clock, tmp_path, 0.005)
    try:
        await ask(aios, "refund order 1003, the blender arrived cracked")
        [run] = await runs(aios)
        assert run.status == "over_budget" and run.id is not None
        await aios.process(RequestBudget(run.id, REQUESTER, CHANNEL))
        approval = await newest_approval(aios)
        assert approval.id is not None
        await reject_because(aios, approval.id, "we spent enough on this today, try $0.50 tomorrow")

        assert [r.id for r in await runs(aios)] == [run.id]
        assert anthropic_api.requests == []
        reason = await the_reason(aios, approval.id)
        assert (reason.outcome, reason.revision_run_id) == ("recorded", None)
        feedback = [d for d in await decisions_of(aios, approval.action_id) if d.kind == "feedback"]
        assert [d.reason for d in feedback] == ["we spent enough on this today, try $0.50 tomorrow"]
        assert any(":speech_balloon:" in text for text in thread_texts(slack_api))
        assert "not planned again" in await explain(aios.units, f"AP-{approval.id}")
    finally:
        await aios.close()


async def test_a_reason_stored_before_a_crash_is_revised_once_at_the_next_start(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await aios.process(await click_reject(aios, approval.id))
    assert (await give_reason(aios, approval.id, BROKEN_ITEM)).reason_id is not None
    # The process stops here: the reason is stored and acked, nothing else happened.

    await aios.process(Recover(grace_seconds=0))
    await aios.process(Recover(grace_seconds=0))
    assert len(await runs(aios)) == 2
    assert await refunds(aios, 1001) == [40.0]
    assert (await the_reason(aios, approval.id)).outcome == "revised"


async def test_a_revision_stopped_while_planning_is_planned_with_its_reason_after_a_crash(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await aios.process(await click_reject(aios, approval.id))
    answer = await give_reason(aios, approval.id, BROKEN_ITEM)
    assert answer.reason_id is not None
    # As a process that died after creating the revision run, before its agent proposed anything.
    [first] = await runs(aios)
    async with aios.units() as uow:
        intent = await uow.get(Intent, first.intent_id)
        assert intent is not None
        revision = await uow.add(Run(intent_id=first.intent_id, agent=first.agent, owner=987_654))
        assert revision.id is not None
        assert await RejectionReasons(uow.session).set_revision_run(answer.reason_id, revision.id)
        await uow.commit()

    await aios.process(Recover(grace_seconds=0))
    await aios.process(Recover(grace_seconds=0, at_start=False))
    assert [r.id for r in await runs(aios)] == [first.id, revision.id]
    [revised] = await actions_of(aios, revision.id)
    assert revised.params["amount"] == 40.0  # planned with the reason, not the request's $250 again
    assert await refunds(aios, 1001) == [40.0]
    assert (await the_reason(aios, approval.id)).outcome == "revised"


async def test_the_sweeps_take_a_reason_that_waited_too_long_or_whose_planner_died(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await aios.process(await click_reject(aios, approval.id))
    answer = await give_reason(aios, approval.id, BROKEN_ITEM)
    assert answer.reason_id is not None

    await aios.process(Recover(grace_seconds=3600, at_start=False))  # young, and nobody plans it: left
    assert len(await runs(aios)) == 1 and (await the_reason(aios, approval.id)).processed_at is None
    # As a process that claimed its revision and died before its agent proposed anything.
    [first] = await runs(aios)
    async with aios.units() as uow:
        revision = await uow.add(Run(intent_id=first.intent_id, agent=first.agent, owner=987_654))
        assert revision.id is not None
        reasons = RejectionReasons(uow.session)
        assert await reasons.set_revision_run(answer.reason_id, revision.id)
        assert await reasons.claim(answer.reason_id, 987_654, None)
        await uow.commit()
    await aios.process(Recover(grace_seconds=3600, at_start=False))
    [revised] = await actions_of(aios, revision.id)
    assert revised.params["amount"] == 40.0
    assert (await the_reason(aios, approval.id)).outcome == "revised"

    # One nobody claimed is taken once it is older than the grace period.
    await ask(aios, "refund order 1003, $129, arrived late", thread_ts="1.2")
    later = await newest_approval(aios)
    assert later.id is not None
    await aios.process(await click_reject(aios, later.id))
    assert (await give_reason(aios, later.id, "refund only $20")).reason_id is not None
    await aios.process(Recover(grace_seconds=0, at_start=False))
    assert (await the_reason(aios, later.id)).outcome == "revised"
    assert await refunds(aios, 1003) == [20.0]


async def test_the_sweep_takes_at_once_a_reason_whose_process_died_before_handing_it_on(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await newest_approval(aios)
    assert approval.id is not None
    await aios.process(await click_reject(aios, approval.id))
    stored = await give_reason(aios, approval.id, BROKEN_ITEM, received_by=aios.lease.id)
    assert stored.reason_id is not None
    await aios.process(Recover(grace_seconds=3600, at_start=False))  # this live process hands it on: left
    assert len(await runs(aios)) == 1 and (await the_reason(aios, approval.id)).processed_at is None

    # As a front door that stored the reason, acked, and died: young, yet taken by the next sweep.
    async with aios.units() as uow:
        reason = await uow.get(RejectionReason, stored.reason_id)
        assert reason is not None
        reason.received_by = 987_654  # a lease nobody holds
        await uow.commit()
    await aios.process(Recover(grace_seconds=3600, at_start=False))
    assert (await the_reason(aios, approval.id)).outcome == "revised"
    assert await refunds(aios, 1001) == [40.0]


async def test_the_console_rejects_with_a_reason_as_the_button_and_the_dialog_do(
    database_url: str, clock: Clock, tmp_path: Path
) -> None:
    out = io.StringIO()
    transport = ConsoleTransport(Console(file=out, width=200))
    settings = Settings(
        AIOS_DATABASE_URL=database_url,
        AIOS_POLICY_FILE=str(write_policy(tmp_path)),
        AIOS_MEMORY_EMBEDDINGS="off",
    )
    aios = await bootstrap(settings, transport, clock=clock)
    try:
        session = ConsoleSession(aios, transport)
        await session.handle(REQUESTER, "refund order 1001, $250, arrived broken")
        first = await newest_approval(aios)
        await session.handle(REQUESTER, f"reject because {BROKEN_ITEM} as {OTHER_MANAGER}")
        await session.handle(REQUESTER, "refund order 1003, $129, arrived cracked")
        second = await newest_approval(aios)
        assert second.id is not None and second.id != first.id
        await session.handle(MANAGER, f"reject AP-{second.id} because no refund, it was used")
        await session.handle(MANAGER, f"reject AP-{second.id} because refund $10")  # said once

        reason = await the_reason(aios, first.id or 0)
        assert (reason.user, reason.outcome) == (OTHER_MANAGER, "revised")
        assert (await the_reason(aios, second.id)).reason == "no refund, it was used"
        assert await refunds(aios, 1001) == [40.0] and await refunds(aios, 1003) == []
    finally:
        await aios.close()
    shown = out.getvalue()
    assert f"@{OTHER_MANAGER} rejected AP-{first.id}: “{BROKEN_ITEM}”" in shown
    assert "Allowed by policy: Refund $40.00 on order 1001" in shown
    assert "they said not to, so I propose nothing more" in shown
    assert f"AP-{second.id} already has its reason, from @{MANAGER}" in shown


async def test_a_publish_rejected_for_its_time_is_proposed_again_at_the_time_named(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "seed-spring")
        await ask(aios, "publish post spring-lookbook")
        approval = await newest_approval(aios)
        assert approval.id is not None
        await reject_because(aios, approval.id, "not now; publish on Friday 9am", user=EDITOR)

        _, revision = await runs(aios)
        [revised] = await actions_of(aios, revision.id)
        local = datetime.fromisoformat(str(revised.params["publish_at"])).astimezone(BERLIN)
        assert (local.strftime("%A"), local.hour, local.minute) == ("Friday", 9, 0)  # the coming Friday, 9am
        assert clock() < local <= clock() + timedelta(days=7)
        assert (revised.name, revised.status) == ("cms.publish", "awaiting_approval")
        assert (await newest_approval(aios)).action_id == revised.id  # a new card, for the editor again
        assert await posts(aios) == {"spring-lookbook": "draft"}
    finally:
        await aios.close()
