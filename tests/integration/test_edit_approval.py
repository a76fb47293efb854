"""Edit, then approve, on a real database: a person who may decide a waiting request changes its parameters, the
edit is recorded, the edited action is judged again by the policy, and whatever runs runs with the edited
parameters, once."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import delete, text, update
from sqlmodel import col, select

from bot.audit_proof import ParamsHasher, installed_action_models, roles_of_policy
from bot.bootstrap import Aios
from bot.console import ConsoleSession, ConsoleTransport
from bot.queries import why
from bot.replay import Scope, replay_records
from bot.slack_edit import _dialog as edit_dialog
from connectors.actions import ShopRefund
from connectors.registry import params_hash
from connectors.sandbox_state import sandbox_state
from runtime.intake import accept_click, accept_edit
from runtime.messages import DecideApproval, EditApproval, PauseAgent, Recover, ResumeAgent
from storage.action_edits import ActionEdits
from storage.audit import verify
from storage.records import (
    ActionEdit,
    Approval,
    ApprovalVote,
    Capability,
    Click,
    Decision,
    Execution,
    Intent,
    ProposedAction,
)
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import (
    CHANNEL,
    MANAGER,
    OTHER_MANAGER,
    REQUESTER,
    ask,
    start_aios,
    until_waiting_for_locks,
)

FIN1, FIN2 = "U0FIN1", "U0FIN2"
BROKEN = {"order_id": 1001, "amount": 250.0, "reason": "arrived broken"}


async def the_approval(aios: Aios) -> Approval:
    async with aios.units() as uow:
        [approval] = (await uow.session.exec(select(Approval))).all()
    return approval


async def the_action(aios: Aios) -> ProposedAction:
    async with aios.units() as uow:
        [action] = (await uow.session.exec(select(ProposedAction))).all()
    return action


async def decisions(aios: Aios) -> list[tuple[str, str]]:
    async with aios.units() as uow:
        rows = (await uow.session.exec(select(Decision).order_by(col(Decision.id)))).all()
    return [(d.kind, d.verdict) for d in rows]


async def edits(aios: Aios) -> list[ActionEdit]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(ActionEdit).order_by(col(ActionEdit.id)))).all())


async def refunds(aios: Aios, order_id: int = 1001) -> list[float]:
    return [
        float(r["amount"]) for r in (await sandbox_state(aios.units))["refunds"] if r["order_id"] == order_id
    ]


async def submit(aios: Aios, user: str, **changes: Any) -> int:
    """An edit as the Edit dialog submits it: the whole parameter set, stored before the ack, then handled."""
    approval = await the_approval(aios)
    assert approval.id is not None
    params = {**(await the_action(aios)).params, **changes}
    edit_id = await accept_edit(aios.units, approval.id, user, params, CHANNEL)
    await aios.process(EditApproval(approval.id, user, params, CHANNEL, edit_id=edit_id))
    return edit_id


def whispers_to(slack_api: FakeSlackApi, user: str) -> list[str]:
    return [
        str(c.params["text"]) for c in slack_api.calls_to("chat.postEphemeral") if c.params["user"] == user
    ]


def said_in_thread(slack_api: FakeSlackApi) -> str:
    return "\n".join(str(c.params.get("text", "")) for c in slack_api.calls_to("chat.postMessage"))


def last_card(slack_api: FakeSlackApi) -> str:
    """The approval card as last drawn: every text of its blocks."""
    [update, *_] = reversed(slack_api.calls_to("chat.update"))
    return _texts(update.params["blocks"])


def _texts(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(
            _texts(v) for k, v in value.items() if k in ("text", "elements", "blocks") or k == "fields"
        )
    if isinstance(value, list):
        return "\n".join(_texts(v) for v in value)
    return value if isinstance(value, str) else ""


async def assert_audit_intact(aios: Aios) -> None:
    report = await verify(aios.units, ParamsHasher(installed_action_models()), roles_of_policy)
    assert report.intact, [p.line() for p in report.problems]


async def test_a_lowered_refund_is_allowed_and_runs_once_with_the_edited_amount(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    await submit(aios, MANAGER, amount=40.0)

    assert await refunds(aios) == [40.0]
    approval, action = await the_approval(aios), await the_action(aios)
    assert (approval.status, approval.decided_by) == ("approved", MANAGER)
    assert (action.params, action.status) == ({**BROKEN, "amount": 40.0}, "executed")
    assert await decisions(aios) == [
        ("policy", "require_approval"),
        ("edit", "edited"),
        ("policy", "allow"),
    ]
    [edit] = await edits(aios)
    assert (edit.params_before, edit.changed, edit.outcome) == (BROKEN, ["amount"], "allow")
    assert edit.processed_at is not None and edit.action_id == action.id
    async with aios.units() as uow:
        capability = (await uow.session.exec(select(Capability))).one()
    assert capability.granted_by == "policy"
    assert capability.params_hash == params_hash(
        ShopRefund(order_id=1001, amount=40.0, reason="arrived broken")
    )
    card = last_card(slack_api)
    assert ":pencil2: Edited by <@U0MANAGER>: Amount $250.00 → $40.00" in card
    assert "Approval request approved" in card and "$40.00" in card
    assert "edited AP-1: Amount $250.00 → $40.00. Allowed by policy after the edit" in said_in_thread(
        slack_api
    )
    await assert_audit_intact(aios)


async def test_an_approver_whose_edit_still_needs_their_role_approves_it_with_the_edit(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    await submit(aios, MANAGER, amount=200.0, reason="only the broken mug")

    assert await refunds(aios) == [200.0]
    approval = await the_approval(aios)
    assert (approval.status, approval.decided_by) == ("approved", MANAGER)
    assert await decisions(aios) == [
        ("policy", "require_approval"),
        ("edit", "edited"),
        ("policy", "require_approval"),
        ("human", "approved"),
    ]
    async with aios.units() as uow:
        capability = (await uow.session.exec(select(Capability))).one()
        edit_decision = (await uow.session.exec(select(Decision).where(Decision.kind == "edit"))).one()
    assert capability.granted_by == MANAGER
    assert capability.params_hash == params_hash(
        ShopRefund(order_id=1001, amount=200.0, reason="only the broken mug")
    )
    assert edit_decision.reason == 'amount 250.0 → 200.0; reason "arrived broken" → "only the broken mug"'
    assert edit_decision.actor == MANAGER
    await assert_audit_intact(aios)


async def test_an_edit_that_needs_another_role_waits_for_it_and_voids_earlier_votes(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None and (approval.approver_roles, approval.quorum) == (["finance"], 2)
    await aios.process(DecideApproval(approval.id, FIN2, approve=True, channel=CHANNEL))
    async with aios.units() as uow:
        assert await uow.approvals.voters(approval.id) == [FIN2]

    await submit(aios, FIN1, amount=250.0)

    approval = await the_approval(aios)
    assert approval.id is not None and approval.status == "pending"
    assert (approval.approver_roles, approval.quorum, approval.forbid_self_approval) == (["manager"], 1, True)
    assert approval.escalate_to == [] and approval.escalate_at is None and approval.expires_at is not None
    async with aios.units() as uow:
        assert await uow.approvals.voters(approval.id) == []  # FIN2 approved $310, not $250
        request = await uow.get(Decision, approval.decision_id)
    assert request is not None and request.rule_id == "refunds-over-100-need-a-manager"
    assert request.justification == "judged again after <@U0FIN1>'s edit"
    [told] = whispers_to(slack_api, FIN1)
    assert "did not count" in told and "manager" in told
    card = last_card(slack_api)
    assert ":pencil2: Edited by <@U0FIN1>: Amount $310.00 → $250.00" in card
    assert "Approval needed" in card and "refunds-over-100-need-a-manager" in card
    assert await refunds(aios) == []
    await assert_audit_intact(aios)  # the voided vote is a tombstone in the chain, not a deletion

    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    assert await refunds(aios) == [250.0]
    assert ":pencil2: Edited by <@U0FIN1>" in last_card(slack_api)  # the decided card keeps the edit
    await assert_audit_intact(aios)

    # A vote deleted any other way than by an edit is still a break in the trail.
    async with aios.units() as uow:
        await uow.session.exec(text("DELETE FROM approval_vote"))  # type: ignore[call-overload]
        await uow.commit()
    report = await verify(aios.units, ParamsHasher(installed_action_models()), roles_of_policy)
    assert [p.kind for p in report.problems][:1] == ["deleted"]


async def test_a_raised_refund_waits_for_the_roles_it_now_needs(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $150, arrived broken")
    await submit(aios, MANAGER, amount=310.0)

    approval = await the_approval(aios)
    assert approval.status == "pending" and (approval.approver_roles, approval.quorum) == (["finance"], 2)
    assert approval.escalate_to == ["manager"] and approval.escalate_at is not None
    assert "did not count" in whispers_to(slack_api, MANAGER)[0]
    assert "It waits for finance (2 different people)" in said_in_thread(slack_api)
    assert await refunds(aios) == []


async def test_a_requester_who_may_decide_may_edit_but_not_approve_by_editing(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken", user=MANAGER)
    await submit(aios, MANAGER, amount=200.0)

    approval, action = await the_approval(aios), await the_action(aios)
    assert approval.status == "pending" and action.params["amount"] == 200.0
    assert approval.id is not None
    async with aios.units() as uow:
        assert await uow.approvals.voters(approval.id) == []
    [told] = whispers_to(slack_api, MANAGER)
    assert "you asked for it" in told and "refunds-over-100-need-a-manager" in told
    [edit] = await edits(aios)
    assert edit.outcome == f"require_approval; not counted as {MANAGER}'s approval (self_approval)"
    assert await refunds(aios) == []


async def test_someone_who_may_not_decide_cannot_edit_and_the_refusal_is_recorded(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    await submit(aios, "U0EDITOR", amount=40.0)
    await submit(aios, REQUESTER, amount=40.0)  # the requester holds no deciding role

    assert (await the_action(aios)).params == BROKEN
    assert await decisions(aios) == [
        ("policy", "require_approval"),
        ("refusal", "refused:not_an_approver"),
        ("refusal", "refused:not_an_approver"),
    ]
    assert [e.outcome for e in await edits(aios)] == [
        "refused: Only the manager role can edit AP-1, and you don't have it; your edit changed nothing.",
    ] * 2
    assert all(e.params_before is None and e.processed_at is not None for e in await edits(aios))
    assert "Only the manager role can edit AP-1" in whispers_to(slack_api, "U0EDITOR")[0]
    assert (await the_approval(aios)).status == "pending"
    assert not slack_api.calls_to("chat.update")


async def test_a_decided_request_cannot_be_edited(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    await submit(aios, OTHER_MANAGER, amount=40.0)

    assert await refunds(aios) == [250.0]
    assert (await the_action(aios)).params == BROKEN
    assert (await decisions(aios))[-1] == ("refusal", "refused:already_decided")
    assert "already decided" in whispers_to(slack_api, OTHER_MANAGER)[0]


async def test_invalid_or_unchanged_parameters_change_nothing(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    await submit(aios, MANAGER, amount=-5)
    await submit(aios, MANAGER, amount=250)  # the same amount, written as a whole number

    assert (await the_action(aios)).params == BROKEN
    assert await decisions(aios) == [("policy", "require_approval")]
    invalid, unchanged = await edits(aios)
    assert invalid.outcome is not None and invalid.outcome.startswith("invalid: shop.refund: amount:")
    assert unchanged.outcome == "unchanged"
    said = whispers_to(slack_api, MANAGER)
    assert (
        said[0].startswith("Your edit of AP-1 was not saved: shop.refund: amount:")
        and "Nothing changed" in said[0]
    )
    assert said[1] == "Nothing changed: AP-1 already has these parameters."
    assert (await the_approval(aios)).status == "pending"


async def test_edits_at_once_are_taken_one_after_the_other(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    changes = [(FIN1, 315.0), (FIN2, 318.0), (FIN1, 305.0), (FIN2, 312.0)]
    ids = [
        await accept_edit(aios.units, approval.id, user, {**BROKEN, "amount": amount}, CHANNEL)
        for user, amount in changes
    ]
    await asyncio.gather(
        *(
            aios.process(
                EditApproval(approval.id, user, {**BROKEN, "amount": amount}, CHANNEL, edit_id=edit_id)
            )
            for (user, amount), edit_id in zip(changes, ids, strict=True)
        )
    )

    stored = await edits(aios)
    assert all(e.outcome and e.outcome.startswith("require_approval") for e in stored)
    # One after the other: each edit changed what the one before it left, so they form one chain.
    applied, params = [], {**BROKEN, "amount": 310.0}
    for _ in stored:
        [following] = [e for e in stored if e.params_before == params]
        applied.append(following)
        params = following.params_after
    action = await the_action(aios)
    assert action.params == applied[-1].params_after
    async with aios.units() as uow:
        assert await uow.approvals.voters(approval.id) == [applied[-1].user]
    assert await refunds(aios) == []
    await assert_audit_intact(aios)


async def test_lowering_edits_at_once_run_the_refund_once(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    await asyncio.gather(
        *(
            aios.process(EditApproval(approval.id, manager, {**BROKEN, "amount": amount}, CHANNEL))
            for manager, amount in [(MANAGER, 40.0), (OTHER_MANAGER, 30.0)] * 3
        )
    )

    action = await the_action(aios)
    assert await refunds(aios) == [action.params["amount"]]
    async with aios.units() as uow:
        executions = (await uow.session.exec(select(Execution))).all()
    assert len(executions) == 1
    outcomes = sorted(e.outcome or "" for e in await edits(aios))
    assert outcomes.count("allow") == 1
    assert all(o.startswith("refused: AP-1 was already decided") for o in outcomes if o != "allow")


async def test_an_edit_stored_before_a_crash_is_applied_once_at_start(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    await ask(first, "refund order 1001, $250, arrived broken")
    approval = await the_approval(first)
    assert approval.id is not None
    await accept_edit(first.units, approval.id, MANAGER, {**BROKEN, "amount": 40.0}, CHANNEL)
    await first.close()  # stopped after the ack, before handling

    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await second.process(Recover(grace_seconds=0))
        await second.process(Recover(grace_seconds=0))
        assert await refunds(second) == [40.0]
        [edit] = await edits(second)
        assert edit.outcome == "allow" and edit.processed_at is not None
        assert [kind for kind, _ in await decisions(second)].count("edit") == 1
        await assert_audit_intact(second)
    finally:
        await second.close()


async def test_the_sweep_takes_an_edit_or_a_click_whose_process_died_and_leaves_a_live_ones(
    aios: Aios,
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    mine = await accept_edit(aios.units, approval.id, MANAGER, {"amount": 40.0}, CHANNEL, owner=aios.lease.id)
    click = Click(approval_id=approval.id, user=MANAGER, approve=True, channel=CHANNEL, owner=aios.lease.id)
    await accept_click(aios.units, click)
    await aios.process(Recover(grace_seconds=0, at_start=False))  # this live process decides them: left
    assert [edit.processed_at for edit in await edits(aios)] == [None]
    assert await refunds(aios) == []

    # As a front door that stored them, acked, and died (a lease nobody holds): the next sweep decides them, the
    # edit first, as they came, and each is then its process's.
    async with aios.units() as uow:
        await uow.session.exec(update(ActionEdit).values(owner=987_654))
        await uow.session.exec(update(Click).values(owner=987_654))
        await uow.commit()
    await aios.process(Recover(grace_seconds=3600, at_start=False))
    [edit] = await edits(aios)
    assert (edit.id, edit.outcome, edit.owner) == (mine, "allow", aios.lease.id)
    assert edit.processed_at is not None
    assert await refunds(aios) == [40.0]
    async with aios.units() as uow:
        [taken] = (await uow.session.exec(select(Click))).all()
    assert taken.owner == aios.lease.id and taken.processed_at is not None
    await aios.process(Recover(grace_seconds=0, at_start=False))
    assert await refunds(aios) == [40.0]
    await assert_audit_intact(aios)


async def test_the_capability_binds_to_the_edited_parameters(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    # The agent paused: the approved action waits, its capability unspent.
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    await submit(aios, MANAGER, amount=200.0)
    action = await the_action(aios)
    assert action.id is not None and action.status == "approved"

    original = params_hash(ShopRefund.model_validate(BROKEN))
    edited = params_hash(ShopRefund.model_validate({**BROKEN, "amount": 200.0}))
    async with aios.units() as uow:  # never committed: only asking whether it would be spent
        assert not await uow.approvals.spend_capability(action.id, "shop.refund", original, aios.clock())
        assert await uow.approvals.spend_capability(action.id, "shop.refund", edited, aios.clock())

    await aios.process(ResumeAgent("returns", MANAGER, CHANNEL))
    assert await refunds(aios) == [200.0]


async def test_why_tells_the_original_parameters_each_edit_and_each_verdict(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    await submit(aios, FIN1, amount=250.0)
    await submit(aios, MANAGER, amount=40.0)

    explanation = await why(aios.units, "AP-1")
    assert '"amount": 310.0' in explanation  # as first proposed
    first = explanation.index("*require_approval* by rule `big-refunds-need-two-from-finance`")
    edited_once = explanation.index("edited by <@U0FIN1>")
    again = explanation.index("*require_approval* by rule `refunds-over-100-need-a-manager`")
    edited_twice = explanation.index("edited by <@U0MANAGER>")
    allowed = explanation.index("*allow* by rule `small-refunds-are-fine`")
    assert first < edited_once < again < edited_twice < allowed
    assert "amount 310.0 → 250.0" in explanation and "amount 250.0 → 40.0" in explanation


async def test_the_console_edits_as_the_dialog_does(aios: Aios, slack_api: FakeSlackApi) -> None:
    printed = io.StringIO()
    session = ConsoleSession(aios, ConsoleTransport(Console(file=printed, width=200)))
    await session.say(REQUESTER, "refund order 1001, $250, arrived broken")

    await session.handle(REQUESTER, "edit AP-1 amout=40 as U0MANAGER")
    await session.handle(REQUESTER, "edit AP-1 amount=-5 as U0MANAGER")
    await session.handle(REQUESTER, 'edit AP-1 reason="unclosed as U0MANAGER')
    await session.handle(REQUESTER, "edit AP-1 amount=40")  # as the requester, who may not decide it
    assert (await the_action(aios)).params == BROKEN
    shown = printed.getvalue()
    assert "amout is not a field of shop.refund; its fields are: order_id, amount, reason" in shown
    assert "That edit does not fit shop.refund: shop.refund: amount:" in shown
    assert "I could not read that edit (No closing quotation)" in shown
    assert "Only the manager role can edit AP-1" in whispers_to(slack_api, REQUESTER)[0]

    await session.handle(REQUESTER, 'edit amount=40 reason="only the broken mug" as U0MANAGER')
    assert "U0MANAGER edits AP-1: amount=40 reason=only the broken mug" in printed.getvalue()
    assert await refunds(aios) == [40.0]
    assert (await the_action(aios)).params == {
        "order_id": 1001,
        "amount": 40.0,
        "reason": "only the broken mug",
    }
    assert [e.user for e in await edits(aios)] == [REQUESTER, MANAGER]

    # An intent that starts with "edit" is still an intent.
    await session.handle(REQUESTER, "edit the spring lookbook post")
    async with aios.units() as uow:
        assert len((await uow.session.exec(select(Intent))).all()) == 2


async def test_an_edit_on_a_review_card_redraws_the_card(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken and tell the customer")
    async with aios.units() as uow:
        refund, email = (await uow.session.exec(select(Approval).order_by(col(Approval.id)))).all()
    assert refund.id is not None and refund.message_ts == email.message_ts  # one card for both

    await aios.process(EditApproval(refund.id, MANAGER, {**BROKEN, "amount": 40.0}, CHANNEL))

    assert await refunds(aios) == [40.0]
    [update] = slack_api.calls_to("chat.update")
    assert update.params["ts"] == refund.message_ts
    card = _texts(update.params["blocks"])
    assert "Refund $40.00 on order 1001" in card and ":pencil2: edited by <@U0MANAGER>" in card
    assert "1 of 2 waiting" in card


async def test_a_replay_judges_each_decision_with_the_parameters_it_judged(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    await submit(aios, FIN1, amount=250.0)
    await submit(aios, MANAGER, amount=40.0)

    replayed = [r async for r in replay_records(aios.units, aios.policy, Scope(run_id=1))]
    assert [r.recorded.params["amount"] for r in replayed] == [310.0, 250.0, 40.0]
    assert [r.new.rule_id for r in replayed] == [
        "big-refunds-need-two-from-finance",
        "refunds-over-100-need-a-manager",
        "small-refunds-are-fine",
    ]
    assert [r.new.verdict for r in replayed] == [r.recorded.verdict for r in replayed]


async def test_what_a_request_is_about_cannot_be_edited(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    await submit(aios, MANAGER, order_id=1002, amount=40.0)

    assert (await the_action(aios)).params == BROKEN
    assert await refunds(aios) == [] and await refunds(aios, 1002) == []
    assert await decisions(aios) == [("policy", "require_approval")]
    [edit] = await edits(aios)
    assert edit.outcome == "refused: order_id cannot be edited" and edit.params_before is None
    [told] = whispers_to(slack_api, MANAGER)
    assert "order_id says what the request is about and cannot be edited" in told
    assert (await the_approval(aios)).status == "pending"


async def test_an_edit_changes_only_what_it_names_so_an_earlier_edit_stays(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    # Two people opened the dialog on $310; the first saves a new reason, the second a new amount.
    for user, change in ((FIN1, {"reason": "only the mug"}), (FIN2, {"amount": 305.0})):
        edit_id = await accept_edit(aios.units, approval.id, user, change, CHANNEL)
        await aios.process(EditApproval(approval.id, user, change, CHANNEL, edit_id=edit_id))

    assert (await the_action(aios)).params == {"order_id": 1001, "amount": 305.0, "reason": "only the mug"}
    first, second = await edits(aios)
    assert (first.changed, second.changed) == (["reason"], ["amount"])
    await assert_audit_intact(aios)


async def test_an_edit_is_judged_with_the_runs_other_actions_later_ones_too(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    action = await the_action(aios)
    async with aios.units() as uow:  # the run's second refund, proposed after the first, already ran
        await uow.add(
            ProposedAction(
                run_id=action.run_id,
                name="shop.refund",
                params={"order_id": 1001, "amount": 250.0, "reason": "second parcel broken"},
                status="executed",
            )
        )
        await uow.commit()

    asked = await the_approval_of(aios, action)
    assert asked.id is not None
    edit_id = await accept_edit(aios.units, asked.id, MANAGER, {"amount": 90.0}, CHANNEL)
    await aios.process(EditApproval(asked.id, MANAGER, {"amount": 90.0}, CHANNEL, edit_id=edit_id))

    # $90 alone is a small refund; with the $250 that ran, the run refunds $340: two from finance.
    approval = await the_approval_of(aios, action)
    assert approval.status == "pending" and (approval.approver_roles, approval.quorum) == (["finance"], 2)
    async with aios.units() as uow:
        request = await uow.get(Decision, approval.decision_id)
    assert request is not None and request.rule_id == "big-refunds-need-two-from-finance"
    assert await refunds(aios) == []


async def the_approval_of(aios: Aios, action: ProposedAction) -> Approval:
    async with aios.units() as uow:
        return (await uow.session.exec(select(Approval).where(Approval.action_id == action.id))).one()


async def test_an_edit_keeps_the_earlier_expiry_and_the_escalation_of_the_same_roles(
    aios: Aios, clock: Clock
) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    asked = await the_approval(aios)
    assert asked.escalate_at is not None and asked.expires_at is not None

    clock.advance(minutes=30)
    await submit(aios, FIN1, amount=320.0)  # still two from finance, escalating to a manager
    same = await the_approval(aios)
    assert (same.approver_roles, same.escalate_at, same.expires_at) == (
        ["finance"],
        asked.escalate_at,
        asked.expires_at,
    )

    clock.advance(minutes=30)
    await submit(aios, FIN1, amount=250.0)  # now a manager's, whose rule gives 4 hours: the 2 hours stand
    other = await the_approval(aios)
    assert (other.approver_roles, other.escalate_at, other.expires_at) == (
        ["manager"],
        None,
        asked.expires_at,
    )


async def test_stored_parameters_that_no_longer_fit_refuse_the_edit_once(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:  # as if the model had changed since the action was proposed
        action = (await uow.session.exec(select(ProposedAction))).one()
        action.params = {**BROKEN, "amount": 250.005}
        uow.session.add(action)
        await uow.commit()

    await submit(aios, MANAGER, amount=40.0)

    [edit] = await edits(aios)
    assert edit.outcome == "refused: stored parameters no longer valid" and edit.processed_at is not None
    [told] = whispers_to(slack_api, MANAGER)
    assert "AP-1 cannot be edited: its stored parameters no longer fit shop.refund" in told
    async with aios.units() as uow:
        assert await ActionEdits(uow.session).unprocessed() == []


async def test_recovery_hands_clicks_and_edits_over_in_the_order_they_came(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    await ask(first, "refund order 1001, $250, arrived broken")
    approval = await the_approval(first)
    assert approval.id is not None
    # Stored, then the process stopped: an edit that approves $200, then a click approving what the card shows.
    edit_id = await accept_edit(first.units, approval.id, OTHER_MANAGER, {"amount": 200.0}, CHANNEL)
    async with first.units() as uow:
        edit = await uow.get(ActionEdit, edit_id)
        assert edit is not None
        click = Click(
            approval_id=approval.id,
            user=MANAGER,
            approve=True,
            channel=CHANNEL,
            edits_seen=0,
            received_at=edit.received_at + timedelta(seconds=1),
        )
    await accept_click(first.units, click)
    await first.close()

    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await second.process(Recover(grace_seconds=0))
        # The edit came first and approved $200; the click, on a card drawn before it, does not count.
        assert await refunds(second) == [200.0]
        assert (await the_approval(second)).decided_by == OTHER_MANAGER
    finally:
        await second.close()


async def test_the_dialog_opens_only_for_those_who_may_decide(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None

    refused = await edit_dialog(aios, approval.id, REQUESTER)  # asked for it, holds no deciding role
    assert "submit" not in refused
    assert "Only the manager role can decide AP-1" in refused["blocks"][0]["text"]["text"]
    opened = await edit_dialog(aios, approval.id, MANAGER)
    assert opened["submit"]["text"] == "Save"


async def test_only_votes_an_edit_voids_leave_a_tombstone(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, FIN2, approve=True, channel=CHANNEL))
    await assert_audit_intact(aios)

    # Deleted through the application, but by no edit: a break in the trail, even when void_votes does it.
    async with aios.units() as uow:
        await ActionEdits(uow.session).void_votes(approval.id)
        await uow.commit()
    report = await verify(aios.units, ParamsHasher(installed_action_models()), roles_of_policy)
    assert [p.kind for p in report.problems][:1] == ["deleted"]


async def test_a_vote_deleted_through_the_orm_breaks_the_trail(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $310, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, FIN2, approve=True, channel=CHANNEL))
    async with aios.units() as uow:
        await uow.session.exec(delete(ApprovalVote))
        await uow.commit()
    report = await verify(aios.units, ParamsHasher(installed_action_models()), roles_of_policy)
    assert [p.kind for p in report.problems][:1] == ["deleted"]


async def click_during_an_edit(
    aios: Aios, editor: str, changes: dict[str, Any], click: DecideApproval
) -> None:
    """The click comes while the edit holds the approval's lock, waits for it, and is decided once the edit has
    committed. The edit is held inside its transaction by a lock on its stored row, which it writes last."""
    approval = await the_approval(aios)
    assert approval.id is not None
    params = {**(await the_action(aios)).params, **changes}
    edit_id = await accept_edit(aios.units, approval.id, editor, params, CHANNEL)
    async with aios.engine.connect() as holder:
        await holder.execute(select(ActionEdit.id).where(col(ActionEdit.id) == edit_id).with_for_update())
        editing = asyncio.create_task(
            aios.process(EditApproval(approval.id, editor, params, CHANNEL, edit_id=edit_id))
        )
        await until_waiting_for_locks(aios.engine, 1)  # the edit, holding the approval's lock
        clicking = asyncio.create_task(aios.process(click))
        await until_waiting_for_locks(aios.engine, 2)  # and the click, for the approval's lock
        await holder.rollback()
    await editing
    await clicking


async def test_a_click_that_waited_for_an_edit_is_refused_on_the_card_drawn_before_it(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    if aios.engine.dialect.name != "postgresql":
        pytest.skip(
            "SQLite's writers take turns from BEGIN to COMMIT: a click never waits inside a statement"
        )
    await ask(aios, "refund order 1001, $310, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    click = DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL, edits_seen=0)

    await click_during_an_edit(aios, FIN1, {"amount": 250.0}, click)

    # The edit made it a manager's to decide, but the manager clicked a card that did not show the edit yet.
    assert any(
        "AP-1 was edited after the card you clicked was drawn" in t for t in whispers_to(slack_api, MANAGER)
    )
    approval = await the_approval(aios)
    assert approval.id is not None and approval.status == "pending" and approval.approver_roles == ["manager"]
    async with aios.units() as uow:
        assert await uow.approvals.voters(approval.id) == []
    assert await refunds(aios) == []


async def test_a_click_that_waited_for_an_edit_decides_the_edited_request(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    if aios.engine.dialect.name != "postgresql":
        pytest.skip(
            "SQLite's writers take turns from BEGIN to COMMIT: a click never waits inside a statement"
        )
    await ask(aios, "refund order 1001, $310, arrived broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    click = DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL)  # no card: the console's

    await click_during_an_edit(aios, FIN1, {"amount": 250.0}, click)

    assert (await the_approval(aios)).decided_by == MANAGER
    assert await refunds(aios) == [250.0]
    async with aios.units() as uow:
        capability = (await uow.session.exec(select(Capability))).one()
    assert capability.params_hash == params_hash(
        ShopRefund(order_id=1001, amount=250.0, reason="arrived broken")
    )
