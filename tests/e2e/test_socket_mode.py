"""End to end in Socket Mode: the real `aios socket` connects to a local server that speaks Slack's Socket Mode
protocol, receives envelopes over the WebSocket, acks them there, and calls the fake Web API."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from tests.fakes.aios_process import AIOS, aios_env, free_port
from tests.fakes.slack_api import ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, slash_command
from tests.fakes.socket_mode import APP_TOKEN, FakeSocketMode

REQUESTER, MANAGER = "U0ALICE", "U0MANAGER"


@dataclass
class SocketBot:
    process: subprocess.Popen[bytes]
    log: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines (every line the bot writes should be one)."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@contextmanager
def running_aios_socket(
    env: dict[str, str], link: FakeSocketMode, timeout: float = 30
) -> Iterator[SocketBot]:
    """Start `aios socket`, wait until it has connected and says so, stop it with SIGTERM afterwards."""
    with tempfile.TemporaryDirectory(prefix="aios-socket-") as logdir:
        log = Path(logdir) / "socket.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen([AIOS, "socket"], env=env, stdout=subprocess.DEVNULL, stderr=log_file)
        bot = SocketBot(process, log)
        try:
            link.wait_for(
                lambda _: process.poll() is not None or "socket_mode_connected" in log.read_text(), timeout
            )
            assert process.poll() is None, f"aios socket exited with {process.returncode}: {log.read_text()}"
            yield bot
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


@dataclass
class Link:
    """The fakes and the environment the bot runs in."""

    slack: FakeSlackApi
    socket: FakeSocketMode
    env: dict[str, str]

    def sandbox(self) -> dict[str, Any]:
        result = subprocess.run(
            [AIOS, "sandbox", "show", "--json"], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))


@contextmanager
def fakes(database: Path) -> Iterator[Link]:
    with FakeSlackApi() as slack, FakeSocketMode() as socket:
        slack.serve_socket_mode(APP_TOKEN, socket.issue_url)
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        env["SLACK_APP_TOKEN"] = APP_TOKEN
        del env["SLACK_SIGNING_SECRET"]  # Socket Mode needs no signing secret
        yield Link(slack, socket, env)


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    with fakes(tmp_path_factory.mktemp("socket") / "aios.db") as running:
        yield running


# A refund a killed process left half-done: the connector ran, the execution was not marked done.
LEFT_BEHIND_THREAD = "1700000003.000100"


@pytest.fixture(scope="module")
def bot(link: Link) -> Iterator[SocketBot]:
    """`aios socket`, started where a killed one left work behind, so that it has to carry it on at start."""
    left_behind = mention_body(
        "refund $6 on order 1002, scuffed", user=REQUESTER, ts=LEFT_BEHIND_THREAD, event_id="Ev0CRASH"
    )
    with running_aios_socket({**link.env, "AIOS_CRASH_AT": "connector_done"}, link.socket) as doomed:
        link.socket.send_event(left_behind)
        assert doomed.process.wait(20) == -signal.SIGKILL
    with running_aios_socket({**link.env, "AIOS_RECOVERY_GRACE_SECONDS": "0"}, link.socket) as running:
        yield running


# --- Slack's payloads as Socket Mode carries them: JSON objects, not HTTP bodies -------------------------


def slash_fields(text: str, *, user: str) -> dict[str, str]:
    return dict(parse_qsl(slash_command(text, user=user)[0]))


def mention_body(text: str, **kwargs: Any) -> dict[str, Any]:
    return dict(json.loads(app_mention(text, **kwargs)[0]))


def click_payload(action_id: str, value: str, *, user: str, message_ts: str) -> dict[str, Any]:
    form = dict(parse_qsl(block_action(action_id, value, user=user, message_ts=message_ts)[0]))
    return dict(json.loads(form["payload"]))


def in_thread(slack: FakeSlackApi, thread_ts: str, contains: str) -> list[ApiCall]:
    return [
        c
        for c in slack.calls_to("chat.postMessage")
        if c.params.get("thread_ts") == thread_ts and contains in c.params.get("text", "")
    ]


def approval_value(call: ApiCall) -> str:
    return next(str(b["elements"][0]["value"]) for b in call.params["blocks"] if b["type"] == "actions")


def refunds_of(sandbox: dict[str, Any], order: int) -> list[float]:
    return [r["amount"] for r in sandbox["refunds"] if r["order_id"] == order]


# --- the scenarios --------------------------------------------------------------------------------------


def test_gated_refund_over_socket_mode_survives_a_reconnect(link: Link, bot: SocketBot) -> None:
    slack, socket = link.slack, link.socket
    slash = socket.send_slash_command(slash_fields("refund order 1001 $250 arrived broken", user=REQUESTER))
    ack = socket.wait_for_ack(slash)
    assert ack.ack_payload is not None and ack.ack_payload["text"].startswith("Got it (I-")

    request = slack.wait_for(
        lambda s: [c for c in s.approval_requests() if "order 1001" in c.params["text"]]
    )[0]
    approval, message_ts = approval_value(request), str(request.response["ts"])

    # Slack refreshes the connection mid-scenario: the bot asks for a new URL and carries on over it.
    connections, urls = socket.connections_opened, len(slack.calls_to("apps.connections.open"))
    socket.request_reconnect()
    socket.wait_for_connections(connections + 1)
    assert len(slack.calls_to("apps.connections.open")) == urls + 1

    # A mention in a thread, delivered twice (two envelopes, one event_id): one intent, one refund.
    thread = "1700000001.000100"
    mention = mention_body(
        "refund $40 on order 1005, strap tore",
        user=REQUESTER,
        ts="1700000001.000200",
        thread_ts=thread,
        event_id="Ev0SOCKETDUP",
    )
    deliveries = [socket.send_event(mention), socket.send_event(mention)]
    slack.wait_for(lambda s: in_thread(s, thread, "Done: Refund $40.00 on order 1005"))

    # The manager approves; a second click is answered, not executed again.
    clicks = [
        socket.send_interactive(click_payload("aios_approve", approval, user=MANAGER, message_ts=message_ts))
        for _ in range(2)
    ]
    slack.wait_for(lambda s: in_thread(s, request.params["thread_ts"], "Done: Refund $250.00 on order 1001"))
    update = slack.wait_for(lambda s: s.calls_to("chat.update"))[0]
    assert update.params["ts"] == message_ts and "approved by <@U0MANAGER>" in update.params["text"]
    slack.wait_for(
        lambda s: [c for c in s.calls_to("chat.postEphemeral") if "already decided" in c.params["text"]]
    )

    for envelope_id in [slash, *deliveries, *clicks]:
        assert socket.wait_for_ack(envelope_id).acked
    assert len(in_thread(slack, thread, "Allowed by policy")) == 1
    sandbox = link.sandbox()
    assert refunds_of(sandbox, 1005) == [40.0] and refunds_of(sandbox, 1001) == [250.0]
    assert socket.unacked() == [] and socket.timed_out == []
    assert socket.unexpected == [] and socket.refused_tickets == []
    assert bot.process.poll() is None


def test_an_event_unacked_when_the_connection_drops_is_sent_again_and_runs_once(
    link: Link, bot: SocketBot
) -> None:
    slack, socket = link.slack, link.socket
    connections = socket.connections_opened
    thread = "1700000002.000100"
    mention = mention_body(
        "refund $5 on order 1003, late", user=REQUESTER, ts=thread, event_id="Ev0SOCKETDROP"
    )

    dropped = socket.send_and_drop("events_api", mention)
    socket.wait_for_connections(connections + 1)
    retried = socket.wait_for_ack(dropped)

    assert retried.retry_attempt == 1 and retried.retry_reason == "timeout"
    slack.wait_for(lambda s: in_thread(s, thread, "Done: Refund $5.00 on order 1003"))
    assert refunds_of(link.sandbox(), 1003) == [5.0]
    assert bot.process.poll() is None


def test_a_malformed_envelope_is_acked_and_the_bot_carries_on(link: Link, bot: SocketBot) -> None:
    socket = link.socket
    nobody_clicked = click_payload("aios_approve", "AP-1", user=MANAGER, message_ts="1.1")
    del nobody_clicked["user"]
    malformed = [
        socket.send_interactive(nobody_clicked),
        socket.send_event({"type": "event_callback", "event_id": "Ev0NOEVENT", "team_id": "T0FAKE"}),
        socket.send_slash_command({"command": "/aios", "text": "refund $1 on order 1003"}),
    ]
    for envelope_id in malformed:
        assert socket.wait_for_ack(envelope_id).acked

    help_request = socket.send_slash_command(slash_fields("help", user=REQUESTER))
    answer = socket.wait_for_ack(help_request).ack_payload
    assert answer is not None and "/aios why" in answer["text"]
    assert bot.process.poll() is None


def test_work_a_killed_process_left_is_carried_on_at_start(link: Link, bot: SocketBot) -> None:
    link.slack.wait_for(lambda s: in_thread(s, LEFT_BEHIND_THREAD, "Done: Refund $6.00 on order 1002"))
    assert refunds_of(link.sandbox(), 1002) == [6.0]


def test_a_refused_app_token_or_an_unreachable_slack_ends_the_command_with_one_clear_line(
    link: Link,
) -> None:
    cases = {
        "Slack refused SLACK_APP_TOKEN (invalid_auth)": {"SLACK_APP_TOKEN": "xapp-1-A0AIOS-1-revoked"},
        "cannot reach Slack at": {"SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/"},
    }
    started = {
        expected: subprocess.Popen(
            [AIOS, "socket"],
            env={**link.env, **change},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for expected, change in cases.items()
    }
    for expected, process in started.items():
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 2, stderr
        assert expected in stderr and "Traceback" not in stderr and "database" not in stderr


def test_sigterm_stops_the_bot_cleanly(bot: SocketBot) -> None:
    """Last in this module: it stops the bot the others use."""
    bot.process.send_signal(signal.SIGTERM)
    assert bot.process.wait(15) == 0
    events = [line["event"] for line in bot.log_lines()]
    assert events.count("socket_mode_connected") == 1 and events[-1] == "socket_mode_stopped"
    assert "socket_mode_session_opened" in events
