"""`/aios why` on a real store: what a run cost, what would have changed its verdicts, why clicks were refused."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.bootstrap import Aios
from bot.queries import why
from runtime.intake import accept_click
from runtime.messages import DecideApproval
from storage.records import Approval, Click, LlmCall, ProposedAction
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.integration.conftest import CHANNEL, MANAGER, ask

SNAPSHOTS = Path(__file__).parent / "snapshots"


async def only(aios: Aios, model: type[Approval | ProposedAction]) -> int:
    async with aios.units() as uow:
        [record] = (await uow.session.exec(select(model))).all()
    assert isinstance(record, Approval | ProposedAction) and record.id is not None
    return record.id


async def click(aios: Aios, approval_id: int, user: str, *, approve: bool) -> None:
    """A button click the way the Slack front door takes one: stored first, then decided."""
    click_id = await accept_click(
        aios.units, Click(approval_id=approval_id, user=user, approve=approve, channel=CHANNEL)
    )
    await aios.process(DecideApproval(approval_id, user, approve, CHANNEL, click_id=click_id))


async def test_why_of_a_refund_claude_planned_shows_its_cost_and_what_would_have_changed_it(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    anthropic_api.script(
        Reply(
            "Refunding $250.00: it arrived broken.",
            (ToolUse("shop_refund", {"order_id": 1001, "amount": 250.0, "reason": "arrived broken"}),),
        )
    )
    await ask(claude_aios, "refund order 1001, $250, arrived broken")
    async with claude_aios.units() as uow:
        calls = list((await uow.session.exec(select(LlmCall).order_by(col(LlmCall.id)))).all())
    assert [c.role for c in calls] == ["agent"] and calls[0].cost_usd > 0

    text = await why(claude_aios.units, f"A-{await only(claude_aios, ProposedAction)}")

    [call] = calls
    assert (
        f"• *Cost* 1 model call (1 agent): {call.input_tokens:,} input, {call.output_tokens:,} output, "
        f"{call.cache_creation_tokens:,} cache write, {call.cache_read_tokens:,} cache read tokens; "
        f"${call.cost_usd:.4f}; {call.model} (agent)"
    ) in text
    assert (
        "*What would have changed it:* It would have been allowed without approval at $100.00 or less "
        "(rule small-refunds-are-fine). It would have needed approval by finance over $300.00 "
        "(rule big-refunds-need-two-from-finance)."
    ) in text
    assert 'rule `refunds-over-100-need-a-manager` when `action.name == "shop.refund" &amp;&amp;' in text


async def test_a_refused_click_shows_the_role_it_needed(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken", user=MANAGER)
    approval_id = await only(aios, Approval)

    await click(aios, approval_id, "U0BOB", approve=True)
    await click(aios, approval_id, MANAGER, approve=True)

    text = await why(aios.units, f"AP-{approval_id}")
    assert "<@U0BOB> could not approve: not a manager (approvers: manager)." in text
    assert (
        f"<@{MANAGER}> could not approve their own request: rule refunds-over-100-need-a-manager forbids "
        "self-approval; another manager has to (approvers: manager)."
    ) in text


async def test_a_run_the_offline_planner_planned_made_no_model_calls(aios: Aios) -> None:
    await ask(aios, "refund $40 on order 1002, strap tore")
    text = await why(aios.units, f"A-{await only(aios, ProposedAction)}")
    assert "• *Cost* no model calls (offline planner)" in text
    assert (
        "It would have needed approval by manager over $100.00 (rule refunds-over-100-need-a-manager)."
    ) in text


async def test_the_whole_why_of_a_gated_refund_with_a_refused_click(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval_id = await only(aios, Approval)
    await click(aios, approval_id, "U0BOB", approve=True)
    await click(aios, approval_id, MANAGER, approve=True)

    text = await why(aios.units, f"AP-{approval_id}")

    # What changes from one run to the next: the time, the policy file's hash, the idempotency key.
    stable = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? UTC", "<time>", text)
    stable = re.sub(r"\b[0-9a-f]{12}\b", "<hash>", stable)
    check_snapshot("why_gated_refund", stable + "\n")


def check_snapshot(name: str, rendered: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("AIOS_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered)
    if not path.exists():
        pytest.fail(f"no snapshot {path}; run with AIOS_UPDATE_SNAPSHOTS=1 once and review it")
    assert rendered == path.read_text()
