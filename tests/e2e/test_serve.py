"""End to end: signed Slack payloads into the real `aios serve`, the Web API calls it makes into the fake."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import aiohttp

from tests.e2e.conftest import Server
from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve
from tests.fakes.slack_api import ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import (
    SIGNING_SECRET,
    app_mention,
    block_action,
    event_callback,
    interactivity,
    sign,
    slash_command,
)

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
        "<@U0BOB> could not approve: not a manager",
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
    answered_before = len(_nothing_proposed(server.slack))
    for _ in range(5):
        status, _, seconds = await send(server, *slash_command("publish post nothing-here", user=REQUESTER))
        assert status == 200
        intent_latencies.append(seconds)
    # Each intent is answered once planned: waited for here, or an answer could reach the fake Slack API during a
    # later test of this module that counts the calls it causes.
    server.slack.wait_for(lambda slack: len(_nothing_proposed(slack)) >= answered_before + 5)
    print(
        f"\nslash ack p50 (status): {statistics.median(latencies) * 1000:.1f} ms, "
        f"p50 (intent, persisted first): {statistics.median(intent_latencies) * 1000:.1f} ms"
    )
    assert max(latencies + intent_latencies) < 3.0


def _nothing_proposed(slack: FakeSlackApi) -> list[ApiCall]:
    return [c for c in slack.calls_to("chat.postMessage") if "'nothing-here'" in c.params.get("text", "")]


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


async def test_a_slash_command_with_the_word_payload_in_it_is_still_a_slash_command(server: Server) -> None:
    await send(server, *slash_command("why payload", user="U0PAYLOAD"))
    reply = server.slack.wait_for(lambda s: ephemerals_for(s, "U0PAYLOAD"))[0]
    assert "is not a record id" in reply


def test_demo_exits_zero() -> None:
    import subprocess

    result = subprocess.run([AIOS, "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Demo finished" in result.stdout
    assert "Only the manager role can decide" in result.stdout
    assert "does not let the requester approve it" in result.stdout


async def test_direct_message_is_answered_in_its_thread(server: Server) -> None:
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


async def post_raw(server: Server, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    url = f"{server.url}/slack/events"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, await response.text()


def log_lines(server: Server) -> list[str]:
    assert server.log is not None
    return [line for line in server.log.read_text().splitlines() if line.strip()]


def assert_log_is_json_lines(server: Server) -> list[dict[str, Any]]:
    """Every line `aios serve` wrote is one JSON object, and no raw traceback text appears."""
    lines = log_lines(server)
    assert not [line for line in lines if "Traceback" in line]
    return [json.loads(line) for line in lines]


async def test_unsigned_and_unparseable_requests_are_refused_with_4xx_and_logged_once(server: Server) -> None:
    ok = slash_command("status", user=REQUESTER)[0].encode()
    valid = sign(ok)
    json_type = {"Content-Type": "application/json"}
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    refused: list[tuple[str, bytes, dict[str, str], int]] = [
        ("no signature headers", ok, form_type, 401),
        ("empty timestamp", ok, {**form_type, **valid, "X-Slack-Request-Timestamp": ""}, 401),
        ("timestamp not a number", ok, {**form_type, **valid, "X-Slack-Request-Timestamp": "soon"}, 401),
        ("400-digit timestamp", ok, {**form_type, **valid, "X-Slack-Request-Timestamp": "9" * 400}, 401),
        ("negative timestamp", ok, {**form_type, **valid, "X-Slack-Request-Timestamp": "-1"}, 401),
        ("non-ASCII signature", ok, {**form_type, **valid, "X-Slack-Signature": "v0=é" + "0" * 63}, 401),
        ("signature not hex", ok, {**form_type, **valid, "X-Slack-Signature": "v0=" + "z" * 64}, 401),
    ]
    for body in (b"[]", b'"x"', b"123", b"null", b"{not json", b"[" * 100_000):
        refused.append((f"JSON body {body[:10]!r}", body, {**json_type, **sign(body)}, 400))
    for form in (b"payload=%5B%5D", b"payload=null", b"payload=%22x%22", b"payload=%7Bnot+json"):
        refused.append((f"form body {form!r}", form, {**form_type, **sign(form)}, 400))
    not_utf8 = b"\xff\xfe{\x00"
    refused.append(("body not UTF-8", not_utf8, {**json_type, **sign(not_utf8)}, 400))

    for name, body, headers, expected in refused:
        status, text = await post_raw(server, body, headers)
        assert (status, name) == (expected, name), text
        assert "invalid signature" in text if expected == 401 else "malformed payload" in text

    records = assert_log_is_json_lines(server)
    warnings = [r for r in records if r.get("event") == "slack_request_refused"]
    assert len(warnings) >= len(refused) and all(r["level"] == "warning" for r in warnings)
    # A genuine request afterwards is answered as usual.
    genuine = slash_command("status", user="U0GENUINE")[0].encode()
    status, answer = await post_raw(server, genuine, {**form_type, **sign(genuine)})
    assert status == 200 and answer.startswith(("*Runs by state*", "No runs yet"))  # the ack is the answer


async def test_signed_payloads_of_the_wrong_shape_are_answered_2xx_and_logged_with_their_event_id(
    server: Server,
) -> None:
    before = len(server.slack.calls)
    mention = json.loads(app_mention("refund $5 on order 1002", user=REQUESTER, ts="1700000009.000100")[0])
    event = mention["event"]
    click = json.loads(
        parse_qs(block_action("aios_approve", "AP-1", user=MANAGER, message_ts="1.1")[0])["payload"][0]
    )
    cases = [
        urlencode({"command": "/aios", "text": "refund $5 on order 1002", "channel_id": "C0SHOP"}),
        urlencode({"command": "/aios", "text": "refund $5 on order 1002", "user_id": REQUESTER}),
        urlencode({"command": "/aios", "text": "status", "user_id": "", "channel_id": "C0SHOP"}),
        event_callback({k: v for k, v in event.items() if k != "channel"}, event_id="EvNOCHANNEL")[0],
        event_callback({k: v for k, v in event.items() if k != "ts"}, event_id="EvNOTS")[0],
        event_callback({**event, "channel": {"id": "C0SHOP"}}, event_id="EvCHANNELOBJECT")[0],
        event_callback({**event, "text": ["refund"]}, event_id="EvTEXTLIST")[0],
        event_callback({**event, "ts": 1700000009.0001}, event_id="EvTSNUMBER")[0],
        event_callback("app_mention with type", event_id="EvEVENTSTRING")[0],
        event_callback(["type"], event_id="EvEVENTLIST")[0],
        event_callback(None, event_id="EvEVENTNULL")[0],
        event_callback({**event, "type": 7}, event_id="EvTYPENUMBER")[0],
        event_callback(event, event_id="EvTEAMNUMBER", team=5)[0],  # type: ignore[arg-type]
        event_callback({**event, "user": [REQUESTER]}, event_id="EvUSERLIST")[0],
        event_callback(event, event_id="EvAUTHSTRING", authorizations="none")[0],
        event_callback(
            {"type": "message", "channel_type": "im", "user": REQUESTER, "text": "refund", "ts": "1.1"},
            event_id="EvIMNOCHANNEL",
        )[0],
        interactivity({**click, "user": {"name": "nobody"}})[0],
        interactivity({**click, "user": ["U0MANAGER"]})[0],
        interactivity({**click, "actions": []})[0],
        interactivity({**click, "actions": [{}]})[0],
        interactivity({**click, "actions": ["aios_approve"]})[0],
        interactivity({**click, "actions": [{**click["actions"][0], "value": 1}]})[0],
        interactivity({**click, "actions": [{**click["actions"][0], "value": {"id": "AP-1"}}]})[0],
        interactivity({**click, "actions": [{**click["actions"][0], "value": "AP-" + "9" * 1000}]})[0],
        interactivity({**click, "channel": "C0SHOP", "container": None})[0],
    ]
    for body in cases:
        content_type = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
        status, text, _ = await send(server, body, content_type)
        assert status in (200, 400), (status, text, body[:200])

    await asyncio.sleep(0.5)  # anything wrongly accepted would have reached the fake Slack API by now
    assert [c.method for c in server.slack.calls[before:] if c.method != "auth.test"] == []
    records = assert_log_is_json_lines(server)
    malformed = {r.get("event_id") for r in records if r.get("event") == "slack_payload_malformed"}
    assert {
        "EvNOCHANNEL",
        "EvNOTS",
        "EvCHANNELOBJECT",
        "EvTEXTLIST",
        "EvTSNUMBER",
        "EvTEAMNUMBER",
    } <= malformed
    refused = {r.get("event_id") for r in records if r.get("event") == "slack_request_refused"}
    assert {
        "EvEVENTSTRING",
        "EvEVENTLIST",
        "EvEVENTNULL",
        "EvTYPENUMBER",
        "EvUSERLIST",
        "EvAUTHSTRING",
    } <= refused


async def test_payloads_the_bot_does_not_handle_get_200_and_url_verification_its_challenge(
    server: Server,
) -> None:
    before = len(server.slack.calls)
    click = json.loads(
        parse_qs(block_action("aios_approve", "AP-1", user=MANAGER, message_ts="1.1")[0])["payload"][0]
    )
    user = {"id": REQUESTER, "team_id": "T0FAKE"}
    unhandled = [
        event_callback(
            {
                "type": "reaction_added",
                "user": REQUESTER,
                "reaction": "+1",
                "item": {"type": "message", "channel": "C0SHOP", "ts": "1.1"},
                "event_ts": "1.2",
            }
        )[0],
        event_callback({"type": "member_joined_channel", "user": REQUESTER, "channel": "C0SHOP"})[0],
        interactivity(
            {
                "type": "view_submission",
                "team": {"id": "T0FAKE"},
                "user": user,
                "view": {"id": "V1", "type": "modal", "callback_id": "other", "state": {"values": {}}},
            }
        )[0],
        interactivity(
            {
                "type": "shortcut",
                "callback_id": "other",
                "team": {"id": "T0FAKE"},
                "user": user,
                "trigger_id": "1.2.3",
            }
        )[0],
        interactivity(
            {
                "type": "message_action",
                "callback_id": "other",
                "team": {"id": "T0FAKE"},
                "user": user,
                "channel": {"id": "C0SHOP"},
                "message": {"ts": "1.1", "text": "hi"},
            }
        )[0],
        interactivity({**click, "actions": [{**click["actions"][0], "action_id": "someone_elses_button"}]})[
            0
        ],
        urlencode({"command": "/other", "text": "hi", "user_id": REQUESTER, "channel_id": "C0SHOP"}),
        json.dumps({"type": "app_rate_limited", "team_id": "T0FAKE", "minute_rate_limited": 1518467820}),
    ]
    for body in unhandled:
        content_type = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
        status, text, _ = await send(server, body, content_type)
        assert status == 200, (status, text, body[:200])

    challenge = json.dumps(
        {
            "token": "legacy",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    status, text, _ = await send(server, challenge, "application/json")
    assert status == 200 and json.loads(text) == {
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    }
    assert [c.method for c in server.slack.calls[before:] if c.method != "auth.test"] == []
    assert_log_is_json_lines(server)


async def test_a_listener_failure_is_logged_as_one_json_line_with_its_traceback_type_and_event_id(
    tmp_path: Path,
) -> None:
    database = tmp_path / "aios.db"
    with (
        FakeSlackApi() as slack,
        running_aios_serve(aios_env(f"sqlite+aiosqlite:///{database}", slack.url)) as serve,
    ):
        with sqlite3.connect(database) as connection:
            connection.execute("DROP TABLE once")  # accepting a mention now fails inside the listener
        body = app_mention("refund $5 on order 1002", user=REQUESTER, ts="1.1", event_id="Ev0BROKENDB")[0]
        url = f"{serve.url}/slack/events"
        headers = {"Content-Type": "application/json", **sign(body)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers) as response,
        ):
            # Nothing was stored: a 5xx makes Slack deliver the event again once the database is back.
            assert response.status == 503
        lines = [line for line in serve.log.read_text().splitlines() if line.strip()]
    assert not [line for line in lines if "Traceback" in line]
    records = [json.loads(line) for line in lines]
    [failure] = [r for r in records if r.get("event") == "slack_listener_failed"]
    assert failure["level"] == "error"
    assert (failure["type"], failure["event_id"]) == ("event_callback:app_mention", "Ev0BROKENDB")
    chain = failure["exception"]  # the SQLAlchemy error and the sqlite3 error it wraps, each with its frames
    assert all(e["exc_type"] == "OperationalError" and "no such table: once" in e["exc_value"] for e in chain)
    assert any(frame["filename"].endswith("runtime/intake.py") for e in chain for frame in e["frames"])


async def test_a_slash_intent_that_cannot_be_stored_is_answered_200_with_a_message(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with (
        FakeSlackApi() as slack,
        running_aios_serve(aios_env(f"sqlite+aiosqlite:///{database}", slack.url)) as serve,
    ):
        with sqlite3.connect(database) as connection:
            connection.execute("ALTER TABLE intent RENAME TO intent_gone")  # storing an intent now fails
        body, content_type = slash_command("refund $5 on order 1002", user=REQUESTER)
        headers = {"Content-Type": content_type, **sign(body)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{serve.url}/slack/events", data=body, headers=headers) as response,
        ):
            # Slack never sends a slash command again: the person is told, rather than shown a failed dispatch.
            assert response.status == 200
            assert "couldn't store that request" in await response.text()
        records = [json.loads(line) for line in serve.log.read_text().splitlines() if line.strip()]
    assert [r["level"] for r in records if r.get("event") == "intent_not_stored"] == ["error"]
