"""The real `aios mcp`, driven by the official MCP SDK's client over stdio (and once over streamable HTTP)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ServerNotification, TextContent

from tests.fakes.aios_process import AIOS, aios_env, free_port
from tests.fakes.loopback import wait_until
from tests.fakes.slack_api import FakeSlackApi

REFUND_250 = {"order_id": 1001, "amount": 250, "reason": "arrived broken"}
READ_ONLY_TOOLS = {"why", "pending_approvals", "cost", "memory_search"}


def console_env(tmp_path: Path) -> dict[str, str]:
    """No Slack: cards go to the console transport, on the server's stderr."""
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/mcp.db", "http://127.0.0.1:9/api/")
    del env["SLACK_BOT_TOKEN"], env["SLACK_SIGNING_SECRET"]
    return env


@asynccontextmanager
async def mcp_session(env: dict[str, str], stderr: Path) -> AsyncIterator[ClientSession]:
    """A session with `aios mcp` over stdio; any line on its stdout that is not the protocol fails the test."""
    faults: list[Exception] = []

    async def on_message(message: ServerNotification | Exception) -> None:
        if isinstance(message, Exception):
            faults.append(message)

    with stderr.open("a") as errlog:
        server = StdioServerParameters(command=AIOS, args=["mcp"], env=env)
        async with (
            stdio_client(server, errlog=errlog) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            await session.initialize()
            yield session
    assert not faults, f"aios mcp wrote something other than the protocol on stdout: {faults}"


def text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


async def propose(session: ClientSession, params: dict[str, Any], **extra: str) -> CallToolResult:
    return await session.call_tool(
        "propose_action",
        {
            "action": "shop.refund",
            "params": params,
            "rationale": "the customer sent photos",
            "requester": "U0ALICE",
            **extra,
        },
    )


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


async def test_tools_are_listed_with_schemas_and_read_only_hints(tmp_path: Path) -> None:
    async with mcp_session(console_env(tmp_path), tmp_path / "stderr.log") as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == {*READ_ONLY_TOOLS, "propose_action"}
    for name in READ_ONLY_TOOLS:
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint is True, name
    proposing = tools["propose_action"].annotations
    assert proposing is not None and proposing.read_only_hint is False
    schema = tools["propose_action"].input_schema
    assert set(schema["required"]) == {"action", "params", "rationale", "requester"}
    description = tools["propose_action"].description or ""
    assert "shop.refund" in description and "order_id" in description  # the actions' own schemas
    assert tools["cost"].input_schema["properties"]["period"]["enum"] == ["today", "week", "month"]


async def test_a_large_refund_waits_for_a_manager_whom_the_client_cannot_replace(tmp_path: Path) -> None:
    env, stderr = console_env(tmp_path), tmp_path / "stderr.log"
    async with mcp_session(env, stderr) as session:
        result = await propose(session, REFUND_250)
        assert not result.is_error, text(result)
        assert result.structured_content is not None
        (proposal,) = result.structured_content["proposals"]
        assert proposal["verdict"] == "require_approval"
        assert proposal["rule"] == "refunds-over-100-need-a-manager"
        assert proposal["approval_id"] == "AP-1" and proposal["status"] == "awaiting_approval"

        pending = await session.call_tool("pending_approvals", {})
        assert pending.structured_content is not None
        (waiting,) = pending.structured_content["approvals"]
        assert (
            waiting["id"] == "AP-1" and waiting["needs"] == ["manager"] and waiting["requester"] == "U0ALICE"
        )

        why = await session.call_tool("why", {"id": proposal["decision_id"]})
        assert not why.is_error
        assert "refunds-over-100-need-a-manager" in text(why) and "(mcp," in text(why)

        unknown = await session.call_tool("why", {"id": "D-999"})
        assert unknown.is_error and "there is no record D-999" in text(unknown)
        garbled = await session.call_tool("why", {"id": "nonsense"})
        assert garbled.is_error
        # The session survives its errors.
        assert not (await session.call_tool("cost", {"period": "week"})).is_error

    assert "Approval needed" in stderr.read_text()  # the card, on the console transport
    assert "Traceback" not in stderr.read_text()
    # Nothing ran; a manager approves it in the terminal's thread, as a button in Slack would.
    assert json.loads(cli(env, "sandbox", "show", "--json").stdout)["refunds"] == []
    cli(env, "chat", "--as", "U0MANAGER", stdin="approve AP-1 as U0MANAGER\nquit\n")
    (refund,) = json.loads(cli(env, "sandbox", "show", "--json").stdout)["refunds"]
    assert refund["order_id"] == 1001 and refund["amount"] == 250


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_database"))
    return f"sqlite+aiosqlite:///{tmp_path}/mcp.db"


async def test_a_small_refund_is_allowed_by_the_policy_and_runs_once(
    tmp_path: Path, database_url: str
) -> None:
    env = {**console_env(tmp_path), "AIOS_DATABASE_URL": database_url}
    async with mcp_session(env, tmp_path / "stderr.log") as session:
        result = await propose(session, {"order_id": 1002, "amount": 20, "reason": "strap tore"})
        assert not result.is_error, text(result)
        assert result.structured_content is not None
        (proposal,) = result.structured_content["proposals"]
        assert proposal["verdict"] == "allow" and proposal["rule"] == "small-refunds-are-fine"
        assert proposal["status"] == "executed" and proposal["execution_id"] == "E-1"
        assert proposal["approval_id"] is None
    (refund,) = json.loads(cli(env, "sandbox", "show", "--json").stdout)["refunds"]
    assert refund["order_id"] == 1002 and refund["amount"] == 20


INVALID_PROPOSALS: list[tuple[dict[str, Any], str]] = [
    ({"params": {**REFUND_250, "amount": -5}}, "amount: Input should be greater than 0"),
    ({"params": {**REFUND_250, "amount": 5000}}, "more than can be refunded"),
    ({"params": {**REFUND_250, "order_id": 9999}}, "there is no order 9999"),
    ({"action": "shop.drop_table", "params": {}}, "AIOS does not propose 'shop.drop_table'"),
    ({"requester": "alice"}, "requester 'alice' is not a Slack user id"),
    ({"channel": "#general"}, "channel '#general' is not a Slack channel id"),
]


async def test_an_invalid_proposal_is_a_tool_error_saying_why_and_records_nothing(tmp_path: Path) -> None:
    async with mcp_session(console_env(tmp_path), tmp_path / "stderr.log") as session:
        for arguments, problem in INVALID_PROPOSALS:
            request = {
                "action": "shop.refund",
                "params": REFUND_250,
                "rationale": "because",
                "requester": "U0ALICE",
                **arguments,
            }
            result = await session.call_tool("propose_action", request)
            assert result.is_error and problem in text(result), text(result)
        assert (await session.call_tool("why", {"id": "I-1"})).is_error  # no intent was stored
        pending = await session.call_tool("pending_approvals", {})
        assert pending.structured_content == {"approvals": []}


async def test_memory_search_finds_what_was_remembered(tmp_path: Path) -> None:
    env = console_env(tmp_path)
    cli(
        env,
        "memory",
        "remember",
        "Ana prefers email",
        "--kind",
        "customer",
        "--key",
        "customer:ana@example.com",
    )
    async with mcp_session(env, tmp_path / "stderr.log") as session:
        found = await session.call_tool("memory_search", {"query": "email"})
        other_team = await session.call_tool("memory_search", {"query": "email", "team": "T0OTHER"})
    assert found.structured_content is not None
    (hit,) = found.structured_content["hits"]
    assert hit["id"] == "M-1" and hit["text"] == "Ana prefers email" and hit["kind"] == "customer"
    assert other_team.structured_content == {"team": "T0OTHER", "hits": []}


async def test_with_slack_the_card_goes_to_the_named_channel(tmp_path: Path) -> None:
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/mcp.db", slack.url)
        async with mcp_session(env, tmp_path / "stderr.log") as session:
            without_channel = await propose(session, REFUND_250)
            assert without_channel.is_error and "channel is required" in text(without_channel)

            slack.fail_next("chat.postMessage", "channel_not_found")
            unreachable = await propose(session, REFUND_250, channel="C0GONE")
            assert unreachable.is_error and "channel_not_found" in text(unreachable)

            result = await propose(session, REFUND_250, channel="C0SHOP")
            assert not result.is_error, text(result)
            assert result.structured_content is not None
            assert result.structured_content["proposals"][0]["approval_id"] == "AP-1"
            pending = await session.call_tool("pending_approvals", {})
        (card,) = slack.approval_requests()
        assert card.params["channel"] == "C0SHOP" and "AP-1" in json.dumps(card.params)
        assert pending.structured_content is not None
        assert [a["id"] for a in pending.structured_content["approvals"]] == ["AP-1"]


async def test_streamable_http_lists_the_tools(tmp_path: Path) -> None:
    with running_mcp_over_http(console_env(tmp_path), tmp_path / "stderr.log") as url:
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
    assert names == {*READ_ONLY_TOOLS, "propose_action"}


@contextmanager
def running_mcp_over_http(env: dict[str, str], log: Path) -> Iterator[str]:
    """`aios mcp --http` on a free port, until it accepts connections; its stderr goes to ``log``."""
    port = free_port()
    with log.open("wb") as errlog:
        process = subprocess.Popen(
            [AIOS, "mcp", "--http", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=errlog
        )
    try:
        wait_until(lambda: _listening(port), 30, log.read_text)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(15)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
