"""A run that asks for several approvals gets one review card with Approve all / Reject all: one click decides
each waiting approval as a single click would (who may, no self-approval, compare-and-set, records), leaves
those the clicker may not decide waiting and says why on the card, and a click delivered again adds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slack_sdk.models.blocks import Block
from sqlmodel import col, select

from bot.bootstrap import Aios
from bot.console import render
from connectors.sandbox_state import sandbox_state
from runtime.intake import accept_run_click
from runtime.messages import DecideRun, Recover
from storage.records import Approval, Decision, PlannedSlot, Run
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, ask, start_aios
from tests.integration.test_content_calendar import EDITOR, calendar_aios

MIXED_POLICY = """
version: 1
roles: {editor: [U0EDITOR], manager: [U0MANAGER]}
rules:
  - id: refunds-over-100-need-a-manager
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 100.0
    verdict: require_approval
    approvers: [manager]
    forbid_self_approval: true
  - id: customer-emails-need-an-editor
    when: action.name == "email.send"
    verdict: require_approval
    approvers: [editor, manager]
default: require_approval
default_approvers: [manager]
"""


def review_cards(slack_api: FakeSlackApi, method: str = "chat.postMessage") -> list[dict[str, Any]]:
    return [
        call.params
        for call in slack_api.calls_to(method)
        if "aios_review_context" in str(call.params.get("blocks"))
    ]


def validated(card: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = card["blocks"] if isinstance(card["blocks"], list) else []
    assert len(blocks) <= 50
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
    return blocks


async def click_all(
    aios: Aios, run_id: int, user: str, *, approve: bool = True, card_ts: str | None = None
) -> None:
    """As the Slack listener does: the clicks stored first, then the command. ``card_ts``: the card clicked
    (by default the one the run's first approval is on)."""
    if card_ts is None:
        card_ts = next(a.message_ts for a in await stored(aios, Approval) if a.message_ts is not None)
    click_ids = await accept_run_click(aios.units, run_id, user, approve, CHANNEL, card_ts)
    await aios.process(DecideRun(run_id, user, approve, CHANNEL, click_ids=click_ids))


async def stored(aios: Aios, record: type[Any]) -> list[Any]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(record).order_by(col(record.id)))).all())


async def test_a_planned_month_is_one_card_and_one_click_makes_every_draft_and_slot_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "plan November: two posts a week about winter care, Tuesdays and Fridays")
        assert slack_api.approval_requests() == []  # no card of its own for each slot
        [card] = review_cards(slack_api)
        blocks = validated(card)
        shown = render(card["text"], blocks)
        assert "Review: 8 actions" in shown and "8 of 8 waiting" in shown
        assert "Tue 3 Nov 09:00 · “" in shown  # the slot in Berlin's time, with its working title
        assert "approve all as <user>" in shown
        [run] = await stored(aios, Run)

        await click_all(aios, run.id, EDITOR)
        await click_all(aios, run.id, EDITOR)  # the click delivered again
        await click_all(aios, run.id, MANAGER)

        assert [a.status for a in await stored(aios, Approval)] == ["approved"] * 8
        planned = await stored(aios, PlannedSlot)
        assert len(planned) == 8
        # The rationale says what was understood; each slot is said once, by its line.
        assert "Why the agent proposes them: Understood: November 2026, 2 posts a week" in shown
        assert all(shown.count(slot.title) == 1 for slot in planned)
        assert len((await sandbox_state(aios.units))["posts"]) == 8
        human = [d for d in await stored(aios, Decision) if d.kind == "human"]
        assert len(human) == 8 and {d.actor for d in human} == {EDITOR}
        updated = review_cards(slack_api, "chat.update")[-1]
        assert {a.message_ts for a in await stored(aios, Approval)} == {updated["ts"]}
        closed = render(updated["text"], validated(updated))
        assert "Reviewed: 8 actions" in closed and "[ Approve all ]" not in closed
        assert closed.count(f"approved by @{EDITOR}") == 8
        # Both later clicks found nothing waiting: each clicker is told so, and nothing else happens.
        assert [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")] == [
            "Nothing in R-1 is waiting for a decision."
        ] * 2
    finally:
        await aios.close()


async def test_approve_all_decides_only_what_the_clicker_may_and_says_why_for_the_rest(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=MIXED_POLICY)
    try:
        await ask(aios, "refund order 1001, $250, arrived broken and tell the customer")
        [run] = await stored(aios, Run)
        assert len(review_cards(slack_api)) == 1

        await click_all(aios, run.id, EDITOR)  # may send the email, not give the refund
        refund, email = await stored(aios, Approval)
        assert (refund.status, email.status) == ("pending", "approved")
        card = render(*_last_update(slack_api))
        assert "only the manager role can decide it, and @U0EDITOR does not have it" in card
        assert "[ Approve all ]" in card and "1 of 2 waiting" in card
        [whisper] = slack_api.calls_to("chat.postEphemeral")
        assert whisper.params["user"] == EDITOR
        assert whisper.params["text"].startswith("You approved 1 of the 2 requests waiting in R-1.")
        refusals = [d for d in await stored(aios, Decision) if d.kind == "refusal"]
        assert [d.verdict for d in refusals] == ["refused:not_an_approver"]

        await click_all(aios, run.id, MANAGER)
        assert [a.status for a in await stored(aios, Approval)] == ["approved", "approved"]
        assert "Reviewed: 2 actions" in render(*_last_update(slack_api))
        assert (await sandbox_state(aios.units))["refunds"][0]["amount"] == 250.0
    finally:
        await aios.close()


async def test_the_requester_may_not_approve_their_own_refund_with_approve_all(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=MIXED_POLICY)
    try:
        await ask(aios, "refund order 1001, $250, arrived broken and tell the customer", user=MANAGER)
        [run] = await stored(aios, Run)
        await click_all(aios, run.id, MANAGER)
        refund, email = await stored(aios, Approval)
        assert (refund.status, email.status) == ("pending", "approved")
        card = render(*_last_update(slack_api))
        assert (
            "@U0MANAGER asked for it, and rule `refunds-over-100-need-a-manager` needs someone else" in card
        )
        assert (await sandbox_state(aios.units))["refunds"] == []

        await click_all(aios, run.id, REQUESTER, approve=False)  # not a manager: refused too
        assert refund.id is not None
        async with aios.units() as uow:
            still = await uow.get(Approval, refund.id)
        assert still is not None and still.status == "pending"
    finally:
        await aios.close()


async def test_approve_all_decides_only_the_approvals_on_the_card_clicked(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "plan November: one post a week about pricing, on Fridays")
        [run] = await stored(aios, Run)
        first, *_, later = await stored(aios, Approval)
        assert first.message_ts is not None
        async with (
            aios.units() as uow
        ):  # as if the run had asked for the last one afterwards, on a card of its own
            later.message_ts = "1700000000.999"
            uow.session.add(later)
            await uow.commit()

        await click_all(aios, run.id, EDITOR, card_ts=first.message_ts)
        assert [a.status for a in await stored(aios, Approval)] == ["approved"] * 3 + ["pending"]
        await click_all(aios, run.id, EDITOR, card_ts="1700000000.999")
        assert [a.status for a in await stored(aios, Approval)] == ["approved"] * 4
    finally:
        await aios.close()


async def test_a_stored_reject_all_is_recovered_as_one_click_on_the_card(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "plan November: one post a week about pricing, on Fridays")
        [run] = await stored(aios, Run)
        card_ts = (await stored(aios, Approval))[0].message_ts
        assert card_ts is not None
        # The clicks were stored and acknowledged, and the process stopped before handling them.
        assert len(await accept_run_click(aios.units, run.id, EDITOR, False, CHANNEL, card_ts)) == 4
        await aios.process(Recover(grace_seconds=0))
        assert [a.status for a in await stored(aios, Approval)] == ["rejected"] * 4
        rejected = [
            c.params["text"]
            for c in slack_api.calls_to("chat.postMessage")
            if ":no_entry_sign:" in c.params["text"]
        ]
        assert rejected == [
            f":no_entry_sign: <@{EDITOR}> rejected 4 requests of R-1; nothing of them was done."
        ]
        assert "Reviewed: 4 actions" in render(*_last_update(slack_api))
    finally:
        await aios.close()


def _last_update(slack_api: FakeSlackApi) -> tuple[str, list[dict[str, Any]]]:
    update = review_cards(slack_api, "chat.update")[-1]
    return update["text"], validated(update)
