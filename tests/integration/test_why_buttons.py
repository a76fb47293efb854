"""`/aios why` with its buttons, and Explain this finding a card by its message, on a real store: which run,
approval and execution an explanation links to, and which record a review card is about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.message_ids import record_of_message
from bot.queries import why_answer
from bot.slack_explain import record_of_card
from storage.records import Approval, Execution, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.slack_api import BOT_ID, FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask, start_aios
from tests.integration.test_run_review import MIXED_POLICY, click_all, review_cards, stored


def buttons(blocks: list[dict[str, Any]] | None) -> dict[str, str]:
    return {e["action_id"]: e["value"] for b in blocks or [] if b["type"] == "actions" for e in b["elements"]}


async def test_the_why_of_each_record_links_the_others_of_its_action(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=MIXED_POLICY)
    try:
        await ask(aios, "refund order 1001, $250, arrived broken and tell the customer")
        [run] = await stored(aios, Run)
        refund, email = await stored(aios, ProposedAction)
        [card] = review_cards(slack_api)
        card_ts = next(c.response["ts"] for c in slack_api.calls_to("chat.postMessage") if c.params is card)

        # The review card is about its run, by its buttons and by the message itself.
        assert record_of_message({"bot_id": BOT_ID, **card}, BOT_ID) == f"R-{run.id}"
        assert await record_of_card(aios.units, CHANNEL, card_ts) == f"R-{run.id}"
        assert await record_of_card(aios.units, "C0ELSEWHERE", card_ts) is None
        assert await record_of_card(aios.units, CHANNEL, "1.000001") is None

        # A run of two actions: no single approval or execution to open, and no button for the run itself.
        text, blocks = await why_answer(aios.units, f"R-{run.id}")
        assert text.startswith(f"*Why — R-{run.id}*") and buttons(blocks) == {}

        await click_all(aios, run.id, MANAGER)
        approval = next(a for a in await stored(aios, Approval) if a.action_id == refund.id)
        [execution] = [e for e in await stored(aios, Execution) if e.action_id == refund.id]
        text, blocks = await why_answer(aios.units, f"a-{refund.id}")
        assert f"`E-{execution.id}`" in text
        assert buttons(blocks) == {
            "aios_why_open_run": f"R-{run.id}",
            "aios_why_open_approval": f"AP-{approval.id}",
            "aios_why_open_execution": f"E-{execution.id}",
        }
        _, from_approval = await why_answer(aios.units, f"AP-{approval.id}")
        assert buttons(from_approval) == {
            "aios_why_open_run": f"R-{run.id}",
            "aios_why_open_execution": f"E-{execution.id}",
        }
        _, from_email = await why_answer(aios.units, f"A-{email.id}")
        assert buttons(from_email)["aios_why_open_approval"] != f"AP-{approval.id}"
    finally:
        await aios.close()


async def test_a_run_of_one_action_links_its_approval_and_a_question_or_a_refusal_stays_text(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "refund order 1001, $250, arrived broken")
        [run] = await stored(aios, Run)
        [approval] = await stored(aios, Approval)
        [card] = slack_api.approval_requests()
        assert await record_of_card(aios.units, CHANNEL, card.response["ts"]) == f"AP-{approval.id}"
        _, blocks = await why_answer(aios.units, f"R-{run.id}")
        assert buttons(blocks) == {"aios_why_open_approval": f"AP-{approval.id}"}

        for asked, said in (
            ("", "Which record?"),
            ("X-9", "is not a record id"),
            (f"R-{run.id + 1}", "There is no record"),
            ("E-99999999999", "There is no record"),
        ):
            text, none = await why_answer(aios.units, asked)
            assert said in text and none is None, asked
    finally:
        await aios.close()
