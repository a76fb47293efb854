"""Explain this and the buttons of `/aios why`, through the real `aios serve` and the fake Slack Web API: signed
message shortcuts on the bot's approval card, a person's message, another app's message and a payload without
its message; a click on a why button."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Server
from tests.e2e.test_click_inbox import post
from tests.fakes.slack_api import BOT_ID, ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import block_action, interactivity, message_shortcut, slash_command

REQUESTER, CURIOUS = "U0ALICE", "U0CAROL"
NOT_MINE = "That message isn't one of mine, so there's nothing to explain."


def ephemerals(slack: FakeSlackApi, user: str) -> list[dict[str, Any]]:
    return [c.params for c in slack.calls_to("chat.postEphemeral") if c.params.get("user") == user]


def answered(slack: FakeSlackApi, user: str, count: int) -> dict[str, Any]:
    """The ``count``-th private answer ``user`` got (waiting for it), the only ones anyone got since."""
    return dict(
        slack.wait_for(lambda s: len(ephemerals(s, user)) >= count and ephemerals(s, user))[count - 1]
    )


def posted_card(server: Server, intent: str, order: str) -> tuple[ApiCall, str, str]:
    """The approval card the bot posted for a slash-command intent about ``order``, its ts and its thread's ts."""
    assert post(server.url, *slash_command(intent, user=REQUESTER)) == 200
    card = server.slack.wait_for(
        lambda s: [c for c in s.approval_requests() if f"order {order}" in c.params["text"]]
    )[0]
    return card, str(card.response["ts"]), str(card.params["thread_ts"])


def buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {e["text"]["text"]: e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]}


def test_explain_this_on_an_approval_card_tells_its_story_to_the_asker_alone(server: Server) -> None:
    slack = server.slack
    card, card_ts, thread_ts = posted_card(server, "refund order 1001 $250 arrived broken", "1001")
    approval = next(b for b in card.params["blocks"] if b.get("block_id") == "aios_policy")
    assert "Approvers: <@U0MANAGER> (manager)" in approval["elements"][0]["text"]
    others_before = len(slack.calls_to("chat.postEphemeral")) - len(ephemerals(slack, CURIOUS))

    message = {
        "ts": card_ts,
        "thread_ts": thread_ts,
        "text": card.params["text"],
        "blocks": card.params["blocks"],
        "bot_id": BOT_ID,
        "user": "UAIOSBOT",
    }
    assert post(server.url, *message_shortcut("aios_explain", message, user=CURIOUS)) == 200

    answer = answered(slack, CURIOUS, 1)
    assert answer["channel"] == "C0SHOP" and answer["thread_ts"] == thread_ts
    assert answer["text"].startswith("*Why — R-")
    for expected in (
        "refund order 1001 $250 arrived broken",
        "refunds-over-100-need-a-manager",
        "require_approval",
    ):
        assert expected in answer["text"], expected
    run = answer["text"].split("*Why — ", 1)[1].split("*", 1)[0]
    assert buttons(answer["blocks"]) == {f"Run {run}": run}  # the approval is what it explains; nothing ran
    assert len(slack.calls_to("chat.postEphemeral")) - len(ephemerals(slack, CURIOUS)) == others_before

    # The same card as a shortcut might carry it without its blocks: found by the message's ts.
    bare = {"ts": card_ts, "thread_ts": thread_ts, "text": card.params["text"], "bot_id": BOT_ID}
    assert post(server.url, *message_shortcut("aios_explain", bare, user=CURIOUS)) == 200
    assert answered(slack, CURIOUS, 2)["text"] == answer["text"]

    # The why's Run button: the run's own why, privately, in the same thread.
    click = block_action("aios_why_open_run", run, user=CURIOUS, message_ts="1800000000.999999")
    assert post(server.url, *click) == 200
    opened = answered(slack, CURIOUS, 3)
    assert opened["text"].startswith(f"*Why — {run}*") and opened["channel"] == "C0SHOP"
    approval_id = buttons(card.params["blocks"])["Approve"]
    assert buttons(opened["blocks"]) == {f"Approval {approval_id}": approval_id}  # the run's one action's


def test_explain_this_on_a_persons_or_another_apps_message_says_it_is_not_ours(server: Server) -> None:
    slack = server.slack
    card, card_ts, _ = posted_card(server, "refund order 1005 $200 wrong colour", "1005")
    person = {"ts": "1800000001.000001", "user": REQUESTER, "text": "why `AP-1`?"}
    assert post(server.url, *message_shortcut("aios_explain", person, user="U0DAVE")) == 200
    assert answered(slack, "U0DAVE", 1)["text"].startswith(NOT_MINE)
    other_app = {
        "ts": card_ts,
        "text": card.params["text"],
        "blocks": card.params["blocks"],
        "bot_id": "B0OTHER",
    }
    assert post(server.url, *message_shortcut("aios_explain", other_app, user="U0DAVE")) == 200
    reply = answered(slack, "U0DAVE", 2)
    assert reply["text"].startswith(NOT_MINE) and "`/aios why <id>`" in reply["text"]


def test_a_shortcut_without_its_message_is_acknowledged_and_changes_nothing(server: Server) -> None:
    slack = server.slack
    payload: dict[str, Any] = {
        "type": "message_action",
        "callback_id": "aios_explain",
        "team": {"id": "T0FAKE", "domain": "fake"},
        "user": {"id": "U0EVE"},
        "channel": {"id": "C0SHOP"},
        "trigger_id": "1.2.3",
    }
    for broken in (
        payload,
        {**payload, "message": "not an object"},
        {**payload, "message": {"text": "no ts"}},
    ):
        assert post(server.url, *interactivity(broken)) == 200
    # Still answering: a good shortcut after the broken ones gets its answer, and the broken ones none.
    assert (
        post(server.url, *message_shortcut("aios_explain", {"ts": "9.9", "user": "U0EVE"}, user="U0EVE"))
        == 200
    )
    assert answered(slack, "U0EVE", 1)["text"].startswith(NOT_MINE)
    assert len(ephemerals(slack, "U0EVE")) == 1
    assert server.log is not None
    log = server.log.read_text()
    assert log.count('"slack_payload_malformed"') >= 3
    assert "slack_listener_failed" not in log and "background_work_failed" not in log
