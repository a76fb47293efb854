"""End to end: signed Slack payloads into the real `aios serve`, the Web API calls it makes into the fake."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp

from tests.e2e.conftest import Server
from tests.fakes.aios_process import AIOS
from tests.fakes.slack_api import ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, app_mention, block_action, sign, slash_command

REQUESTER, TEAMMATE, MANAGER = "U0ALICE", "U0BOB", "U0MANAGER"


async def send(
    server: Server,
    body: str,
    content_type: str,
    *,
    headers: dict[str, str] | None = None,
    secret: str = SIGNING_SECRET,
) -> tuple[int, str, float]:
    all_headers = {"Content-Type": content_type, **sign(body, secret=secret), **(headers or {})}
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.post(f"{server.url}/slack/events", data=body, headers=all_headers) as response:
            text = await response.text()
            return response.status, text, time.perf_counter() - started


def in_thread(slack: FakeSlackApi, thread_ts: str, contains: str) -> list[ApiCall]:
    return [
        c
        for c in slack.calls_to("chat.postMessage")
        if c.params.get("thread_ts") == thread_ts and contains in c.params.get("text", "")
    ]


def approval_value(call: ApiCall) -> str:
    for block in call.params["blocks"]:
        if block["type"] == "actions":
            return str(block["elements"][0]["value"])
    raise AssertionError("no buttons")


def ephemerals_for(slack: FakeSlackApi, user: str) -> list[str]:
    return [c.params["text"] for c in slack.calls_to("chat.postEphemeral") if c.params["user"] == user]


async def test_slash_command_refund_is_gated_approved_once_and_explained(server: Server) -> None:
    slack = server.slack
    status, body, ack_seconds = await send(
        server, *slash_command("refund order 1001 $250 arrived broken", user=REQUESTER)
    )
    assert status == 200 and "Got it" in body
    print(f"\nslash command ack: {ack_seconds * 1000:.1f} ms")

    root = slack.wait_for(
        lambda s: [
            c for c in s.calls_to("chat.postMessage") if "asked: refund order 1001" in c.params["text"]
        ]
    )[0]
    root_ts = slack.wait_for(lambda s: _ts_of(root))
    request = slack.wait_for(
        lambda s: [c for c in s.approval_requests() if "order 1001" in c.params["text"]]
    )[0]
    assert request.params["thread_ts"] == root_ts and request.params["channel"] == "C0SHOP"
    approval = approval_value(request)
    message_ts = slack.wait_for(lambda s: _ts_of(request))

    await send(server, *block_action("aios_approve", approval, user=TEAMMATE, message_ts=message_ts))
    assert "manager" in slack.wait_for(lambda s: ephemerals_for(s, TEAMMATE))[0]
    await send(server, *block_action("aios_approve", approval, user=REQUESTER, message_ts=message_ts))
    assert "You asked for this" in slack.wait_for(lambda s: ephemerals_for(s, REQUESTER))[0]
    assert server.sandbox()["refunds"] == []

    # The manager's click arrives twice at once (a double click, or a retry): one refund.
    click = block_action("aios_approve", approval, user=MANAGER, message_ts=message_ts)
    results = await asyncio.gather(send(server, *click), send(server, *click))
    assert [r[0] for r in results] == [200, 200]

    slack.wait_for(lambda s: in_thread(s, root_ts, "Done: Refund $250.00 on order 1001"))
    update = slack.wait_for(lambda s: s.calls_to("chat.update"))[0]
    assert update.params["ts"] == message_ts and "approved by <@U0MANAGER>" in update.params["text"]
    assert not any(b["type"] == "actions" for b in update.params["blocks"])
    slack.wait_for(lambda s: [t for t in ephemerals_for(s, MANAGER) if "already decided" in t])
    refunds = [r for r in server.sandbox()["refunds"] if r["order_id"] == 1001]
    assert [(r["order_id"], r["amount"]) for r in refunds] == [(1001, 250.0)]

    await send(server, *slash_command(f"why {approval}", user=REQUESTER))
    explanation = slack.wait_for(lambda s: [t for t in ephemerals_for(s, REQUESTER) if t.startswith("*Why")])[
        0
    ]
    for expected in (
        "refund order 1001 $250 arrived broken",
        "refunds-over-100-need-a-manager",
        "require_approval",
        "approved* by <@U0MANAGER>",
        "succeeded",
        "<@U0BOB> refused",
    ):
        assert expected in explanation.replace("click by ", ""), expected
    cli = server.cli("why", approval)
    assert cli.returncode == 0 and "refunds-over-100-need-a-manager" in cli.stdout


def _ts_of(call: ApiCall) -> str | None:
    """The ts the fake answered for a chat.postMessage call."""
    return str(call.response["ts"]) if call.response.get("ok") else None


async def test_mention_in_a_thread_answers_there_and_a_redelivered_event_runs_once(server: Server) -> None:
    slack = server.slack
    thread = "1700000001.000100"
    body, content_type = app_mention(
        "refund $40 on order 1005, strap tore",
        user=REQUESTER,
        ts="1700000001.000200",
        thread_ts=thread,
        event_id="Ev0REDELIVERED",
    )
    first = await send(server, body, content_type)
    retry = await send(
        server, body, content_type, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert (first[0], retry[0]) == (200, 200)

    slack.wait_for(lambda s: in_thread(s, thread, "Done: Refund $40.00 on order 1005"))
    assert len(in_thread(slack, thread, "Allowed by policy")) == 1
    assert [r["amount"] for r in server.sandbox()["refunds"] if r["order_id"] == 1005] == [40.0]


async def test_forged_and_stale_requests_are_refused_and_change_nothing(server: Server) -> None:
    forged = await send(
        server, *slash_command("refund $10 on order 1004, forged", user=REQUESTER), secret="not-the-secret"
    )
    body, content_type = slash_command("refund $11 on order 1004, stale", user=REQUESTER)
    stale_headers = sign(body, timestamp=int(time.time()) - 600)
    stale = await send(server, body, content_type, headers=stale_headers)
    assert (forged[0], stale[0]) == (401, 401)

    # A genuine request sent afterwards is handled; the refused ones never were.
    await send(server, *slash_command("refund $12 on order 1004, genuine", user=REQUESTER))
    server.slack.wait_for(
        lambda s: [
            c
            for c in s.calls_to("chat.postMessage")
            if "Done: Refund $12.00 on order 1004" in c.params["text"]
        ]
    )
    assert [r["amount"] for r in server.sandbox()["refunds"] if r["order_id"] == 1004] == [12.0]


async def test_slash_command_ack_latency(server: Server) -> None:
    """Acks carry no LLM or connector work: every one is well inside Slack's 3 s."""
    latencies = []
    for _ in range(20):
        status, _, seconds = await send(server, *slash_command("status", user=REQUESTER))
        assert status == 200
        latencies.append(seconds)
    intent_latencies = []
    for _ in range(5):
        status, _, seconds = await send(server, *slash_command("publish post nothing-here", user=REQUESTER))
        assert status == 200
        intent_latencies.append(seconds)
    print(
        f"\nslash ack p50 (status): {statistics.median(latencies) * 1000:.1f} ms, "
        f"p50 (intent, persisted first): {statistics.median(intent_latencies) * 1000:.1f} ms"
    )
    assert max(latencies + intent_latencies) < 3.0


async def test_health_and_metrics(server: Server) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.url}/healthz") as response:
            health: dict[str, Any] = await response.json()
        async with session.get(f"{server.url}/metrics") as response:
            metrics = await response.text()
    assert health == {"ok": True, "database": "ok", "planner": "offline"}
    assert "aios_slack_ack_seconds_bucket" in metrics


async def test_help_and_unknown_subcommands_answer_clearly(server: Server) -> None:
    status, body, _ = await send(server, *slash_command("help", user=REQUESTER))
    assert status == 200 and "/aios why" in body
    await send(server, *slash_command("why X-99", user="U0CURIOUS"))
    reply = server.slack.wait_for(lambda s: ephemerals_for(s, "U0CURIOUS"))[0]
    assert "is not a record id" in reply


def test_demo_exits_zero() -> None:
    import subprocess

    result = subprocess.run([AIOS, "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Demo finished" in result.stdout
    assert "Only the manager role can decide" in result.stdout
    assert "does not let the requester approve it" in result.stdout


async def test_direct_message_is_answered_in_its_thread(server: Server) -> None:
    import json

    event = {
        "type": "message",
        "channel_type": "im",
        "channel": "D0ALICE",
        "user": REQUESTER,
        "text": "refund $5 on order 1003, late",
        "ts": "1700000002.000100",
        "event_ts": "1700000002.000100",
    }
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0FAKE",
            "api_app_id": "A0AIOS",
            "event": event,
            "event_id": "Ev0DIRECT",
            "event_time": int(time.time()),
        }
    )
    status, _, _ = await send(server, body, "application/json")
    assert status == 200
    server.slack.wait_for(lambda s: in_thread(s, "1700000002.000100", "Done: Refund $5.00 on order 1003"))


async def test_malformed_and_unknown_payloads_get_a_clear_answer_and_change_nothing(server: Server) -> None:
    before = len(server.slack.calls)
    status, _, _ = await send(server, "{not json", "application/json")
    assert status == 400
    status, _, _ = await send(server, "{not json", "application/json", secret="not-the-secret")
    assert status == 401
    unknown_button = block_action("aios_approve", "D-1", user=MANAGER, message_ts="1.1")  # not an approval id
    status, _, _ = await send(server, *unknown_button)
    assert status == 200
    status, _, _ = await send(
        server, *block_action("aios_approve", "AP-9999", user=MANAGER, message_ts="1.1")
    )
    assert status == 200
    reply = server.slack.wait_for(lambda s: [t for t in ephemerals_for(s, MANAGER) if "AP-9999" in t])[0]
    assert reply == "There is no approval AP-9999."
    assert all(c.method in ("chat.postEphemeral", "auth.test") for c in server.slack.calls[before:])
