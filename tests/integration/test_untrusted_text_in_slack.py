"""What people and models write reaches Slack as written: within Slack's limits, and never as a ping.

The fake Slack API refuses what Slack refuses (a section text over 3,000 characters, a confirm text over 300,
more than 50 blocks), so a message that would be lost in Slack is lost here too.
"""

from __future__ import annotations

import json

from sqlmodel import select

from bot.bootstrap import Aios
from bot.queries import why
from runtime.intake import IncomingIntent
from runtime.messages import DecideApproval, HandleIntent
from storage.records import Approval, ProposedAction
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import ApiCall, FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, ask


def posted(slack_api: FakeSlackApi) -> list[ApiCall]:
    return slack_api.calls_to("chat.postMessage") + slack_api.calls_to("chat.update")


def refused(slack_api: FakeSlackApi) -> list[str]:
    return [f"{c.method}: {c.response.get('error')}" for c in posted(slack_api) if not c.response.get("ok")]


def apologised(slack_api: FakeSlackApi) -> bool:
    return any("something went wrong" in str(c.params.get("text")) for c in posted(slack_api))


async def slash_intent(aios: Aios, text: str) -> int:
    intent_id = await aios.accept(
        IncomingIntent(
            source="slash", team_id="T0FAKE", channel=CHANNEL, thread_ts=None, user=REQUESTER, text=text
        )
    )
    assert intent_id is not None
    await aios.process(HandleIntent(intent_id))
    return intent_id


async def test_a_long_slash_command_opens_its_thread_and_why_quotes_it_shortened(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    intent_id = await slash_intent(aios, "refund order 1001 $40 " + "it arrived broken " * 200)  # 3,622

    assert not apologised(slack_api) and refused(slack_api) == []
    opening = slack_api.calls_to("chat.postMessage")[0]
    assert opening.params["text"].startswith(f"<@{REQUESTER}> asked: refund order 1001 $40 it arrived")
    assert opening.params["text"].endswith("…")
    explanation = await why(aios.units, f"I-{intent_id}")
    [intent_line] = [line for line in explanation.splitlines() if "*Intent*" in line]
    assert "…" in intent_line and len(intent_line) < 700


async def test_a_ten_thousand_character_message_echoed_by_the_model_gets_an_answer(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    message = "please look at order 1001, " + "the customer wrote a very long letter " * 260  # 9,907
    anthropic_api.script(Reply(f"You wrote: {message}"))
    await ask(claude_aios, f"refund {message}")

    assert not apologised(slack_api) and refused(slack_api) == []
    [answer] = slack_api.calls_to("chat.postMessage")
    assert (
        answer.params["text"].startswith("You wrote: please look at order 1001")
        and len(answer.params["text"]) <= 3000
    )


async def test_a_models_long_rationale_and_reason_still_reach_the_manager(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    rationale, reason = "The customer explains at length. " * 182, "r" * 500  # 6,006 and 500 characters
    anthropic_api.script(
        Reply(rationale, (ToolUse("shop_refund", {"order_id": 1001, "amount": 250, "reason": reason}),))
    )
    await ask(claude_aios, "refund order 1001 $250, see the customer's email")

    assert refused(slack_api) == []
    [card] = slack_api.approval_requests()
    assert card.response["ok"]
    async with claude_aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
        action = (await uow.session.exec(select(ProposedAction))).one()
    assert (
        approval.message_ts is not None and action.rationale == rationale.strip()
    )  # the record keeps it all
    assert action.params["reason"] == reason

    assert approval.id is not None
    await claude_aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    async with claude_aios.units() as uow:
        assert (await uow.get(ProposedAction, action.id)).status == "executed"  # type: ignore[union-attr]
    assert refused(slack_api) == []
    assert slack_api.calls_to("chat.update")[-1].response["ok"]


async def test_nothing_anyone_wrote_pings_people(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    anthropic_api.script(
        Reply(
            "<!here> Tom & Jerry approve, <@U0MANAGER> said so",
            (
                ToolUse(
                    "shop_refund", {"order_id": 1001, "amount": 40, "reason": "<!channel> & <@U0MANAGER>"}
                ),
                ToolUse(
                    "shop_refund", {"order_id": 1001, "amount": 250, "reason": "<!subteam^S0ALL> <!everyone>"}
                ),
            ),
        ),
        Reply(
            "A small one <!everyone>.",
            (ToolUse("shop_refund", {"order_id": 1002, "amount": 5, "reason": "<!here>"}),),
        ),
    )
    await ask(claude_aios, "refund order 1001 $40 <!channel> <@U0MANAGER>")
    await slash_intent(claude_aios, "refund order 1002 $5 <!channel> <@U0MANAGER> & more")

    messages = [json.dumps([c.params.get("text"), c.params.get("blocks")]) for c in posted(slack_api)]
    assert refused(slack_api) == [] and len(slack_api.approval_requests()) == 1
    # The card mentions who may decide it (our own mention); nothing else may ping anyone.
    ours = "Approvers: <@U0MANAGER> <@U0MANAGER2> (manager)"
    assert any(ours in m for m in messages)
    written = [m.replace(ours, "") for m in messages]
    assert not any("<!" in m or "<@U0MANAGER>" in m for m in written), written
    assert any("&lt;!here&gt; Tom &amp; Jerry" in m for m in messages)  # the card's rationale
    assert any("&lt;!channel&gt; &amp; &lt;@U0MANAGER&gt;" in m for m in messages)  # a reason, as written
    assert any("&lt;!channel&gt; &lt;@U0MANAGER&gt; &amp; more" in m for m in messages)  # the quoted intent
    assert not any("&amp;amp;" in m or "&amp;lt;" in m for m in messages)  # escaped once
    assert any(f"<@{REQUESTER}>" in m for m in messages)  # our own mention of the requester still works
    async with claude_aios.units() as uow:
        reasons = [a.params["reason"] for a in (await uow.session.exec(select(ProposedAction))).all()]
    assert "<!channel> & <@U0MANAGER>" in reasons  # the records keep what was written
