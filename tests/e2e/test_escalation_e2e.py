"""End to end on the real `aios serve` (offline grammar): a refund naming two amounts is escalated to the
policy's manager in its thread; the manager's answer in the thread refunds once; a second escalation is taken
over with its button, and `aios why` tells both stories. An escalation recorded by a process killed before it
asked is asked after the restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.conftest import Server
from tests.e2e.test_serve import MANAGER, REQUESTER, send
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, slash_command


def escalation_for(slack: FakeSlackApi, order: str) -> ApiCall:
    posts: list[ApiCall] = slack.wait_for(
        lambda s: [
            c
            for c in s.calls_to("chat.postMessage")
            if "I need a person" in c.params["text"] and order in c.params["text"]
        ]
    )
    [post] = posts
    return post


def take_over_button(post: ApiCall) -> dict[str, str]:
    [actions] = [b for b in post.params["blocks"] if b["type"] == "actions"]
    [button] = actions["elements"]
    assert button["action_id"] == "aios_take_over"
    return dict(button)


async def test_an_escalation_is_answered_in_the_thread_or_taken_over(server: Server) -> None:
    slack = server.slack
    await send(server, *slash_command("refund order 1005 $20 and $30, it leaks", user=REQUESTER))
    asked = escalation_for(slack, "order 1005")
    assert f"<@{MANAGER}>" in asked.params["text"] and "more than one amount" in asked.params["text"]
    thread = asked.params["thread_ts"]
    run = take_over_button(asked)["value"]
    assert all(r["order_id"] != 1005 for r in server.sandbox()["refunds"])

    # The manager answers in the thread: planned again, refunded once.
    await send(
        server,
        *app_mention(
            "refund order 1005 $20, it leaks", user=MANAGER, ts="1800000500.000001", thread_ts=thread
        ),
    )
    slack.wait_for(lambda s: [r for r in server.sandbox()["refunds"] if r["order_id"] == 1005])
    [refund] = [r for r in server.sandbox()["refunds"] if r["order_id"] == 1005]
    assert refund["amount"] == 20.0
    why = server.cli("why", run)
    assert why.returncode == 0, why.stderr
    assert "(run person_answered)" in why.stdout and f"answered by <@{MANAGER}>" in why.stdout

    # Another one, taken over with its button: the run closes and nothing is refunded.
    await send(server, *slash_command("refund order 1003 $5 and $6", user=REQUESTER))
    second = escalation_for(slack, "order 1003")
    button = take_over_button(second)
    await send(
        server,
        *block_action("aios_take_over", button["value"], user=MANAGER, message_ts=second.response["ts"]),
    )
    slack.wait_for(
        lambda s: [c for c in s.calls_to("chat.postMessage") if "took this over" in c.params["text"]]
    )
    why = server.cli("why", button["value"])
    assert "(run taken_over)" in why.stdout and f"taken over by <@{MANAGER}>" in why.stdout
    assert all(r["order_id"] != 1003 for r in server.sandbox()["refunds"])


def test_an_escalation_recorded_before_a_crash_is_posted_once_after_the_restart(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve({**env, "AIOS_CRASH_AT": "escalation_recorded"}) as doomed:
            asyncio.run(
                send(
                    Server(doomed.url, env, slack),
                    *slash_command("refund order 1002 $3 and $4", user=REQUESTER),
                )
            )
            doomed.process.wait(20)
            assert doomed.process.returncode == -9, "the server never recorded the escalation"
        assert [c for c in slack.calls_to("chat.postMessage") if "I need a person" in c.params["text"]] == []
        with running_aios_serve(env) as restarted:
            post = escalation_for(slack, "order 1002")
            assert f"<@{MANAGER}>" in post.params["text"]
            why = Server(restarted.url, env, slack).cli("why", take_over_button(post)["value"])
            assert "(run escalated)" in why.stdout and "waiting for a person" in why.stdout
        assert (
            len([c for c in slack.calls_to("chat.postMessage") if "I need a person" in c.params["text"]]) == 1
        )
