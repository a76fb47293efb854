"""MCP servers' tools as gated actions, against real servers others wrote: mcp-server-git and mcp-server-time
(stdio), driven through the bus with Claude scripted on the local fake Messages API."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import stamina
from aiohttp import web
from sqlmodel import col, select

from agents.tools import tool_spec
from bot.bootstrap import Aios
from connectors.base import ConnectorContext
from connectors.catalogue import connector_statuses
from connectors.errors import (
    InvalidActionError,
    OutcomeUnknownError,
    PermanentConnectorError,
    TransientConnectorError,
)
from connectors.mcp_tools import (
    McpConfigError,
    McpToolAction,
    McpTools,
    ServerConfig,
    load_config,
    params_by_action,
)
from connectors.registry import ConnectorRegistry, installed_action_params
from policies.engine import Policy
from policies.errors import PolicyError
from runtime.messages import DecideApproval
from storage.records import Approval, Decision, Execution, ProposedAction
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask, everything_stored, start_aios


@pytest.fixture
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3):
        yield


SECRET = "user:s3cr3t-t0ken"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ROUTE_TO_TOOLS = Reply("", (ToolUse("route_to_agent", {"agent": "tools"}),))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-qm", "first")
    return path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def commits(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%s").splitlines()


def config_file(tmp_path: Path, servers: dict[str, object]) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def git_server(repo: Path) -> dict[str, object]:
    return {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)]}


@pytest.fixture
async def mcp_aios(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    repo: Path,
) -> AsyncIterator[Aios]:
    """The bot with Claude (scripted) and the git server, configured by AIOS_MCP_CONFIG, on the packaged
    policy's MCP rules."""
    config = config_file(tmp_path, {"git": git_server(repo)})
    instance = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
        AIOS_MCP_CONFIG=str(config),
    )
    yield instance
    await instance.close()


PACKAGED_POLICY = (Path(__file__).parents[2] / "policies" / "default_policy.yaml").read_text()


async def actions(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        query = select(ProposedAction).order_by(col(ProposedAction.id))
        return list((await uow.session.exec(query)).all())


async def executions(aios: Aios) -> list[Execution]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(Execution).order_by(col(Execution.id)))).all())


async def test_each_tool_is_an_action_with_the_tools_schema_and_annotations(repo: Path) -> None:
    tools = McpTools(
        load_config(
            str(
                config_file(
                    repo.parent,
                    {
                        "git": git_server(repo),
                        "time": {
                            "command": sys.executable,
                            "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
                        },
                    },
                )
            )
        )
    )
    registry = ConnectorRegistry([tools])
    try:
        await registry.connect()
        names = registry.action_names
        assert {"mcp.git.git_status", "mcp.git.git_commit", "mcp.time.get_current_time"} <= set(names)
        status = registry.model_for("mcp.git.git_status")
        commit = registry.model_for("mcp.git.git_commit")
        reset = registry.model_for("mcp.git.git_reset")
        assert issubclass(status, McpToolAction) and issubclass(commit, McpToolAction)
        assert issubclass(reset, McpToolAction)
        assert (status.read_only, status.destructive) == (True, False)
        assert (commit.read_only, commit.destructive) == (False, False)
        assert (reset.read_only, reset.destructive) == (False, True)
        spec = tool_spec(commit)
        assert spec.name == "mcp_git_git_commit"
        assert spec.input_schema == {  # the server's own schema (less its title), not one pydantic made
            "properties": {
                "repo_path": {"title": "Repo Path", "type": "string"},
                "message": {"title": "Message", "type": "string"},
            },
            "required": ["repo_path", "message"],
            "type": "object",
        }
        assert spec.description == commit.description and commit.description

        # Once connected, the policy's rules are checked against the tools' own parameters.
        connected = installed_action_params() | params_by_action(map(registry.model_for, names))
        assert connected["mcp.git.git_checkout"] == ["branch_name", "repo_path"]
        Policy.from_text(PACKAGED_POLICY, "default_policy.yaml").check_action_params(connected)
        misspelt = PACKAGED_POLICY.replace(
            "  - id: read-only-tools-are-fine\n",
            "  - id: not-main\n"
            '    when: action.name == "mcp.git.git_checkout" && action.params.branch == "main"\n'
            "    verdict: deny\n"
            "  - id: read-only-tools-are-fine\n",
        )
        with pytest.raises(PolicyError, match=r"`action\.params\.branch`, which mcp\.git\.git_checkout does"):
            Policy.from_text(misspelt, "p.yaml", installed_action_params()).check_action_params(connected)

        action = registry.validate("mcp.git.git_status", {"repo_path": str(repo)})
        assert action.model_dump(mode="json") == {"repo_path": str(repo)}
        with pytest.raises(InvalidActionError, match="'repo_path' is a required property"):
            registry.validate("mcp.git.git_status", {})
        with pytest.raises(InvalidActionError, match="123 is not of type 'string'"):
            registry.validate("mcp.git.git_commit", {"repo_path": str(repo), "message": 123})
        assert "On branch" in (await registry.execute(action, "key-1"))["text"]
        # A read-only call lost in a crash is simply made again; a write is not (it may have run).
        assert await registry.lookup(action, "key-1") is None
        write = registry.validate("mcp.git.git_commit", {"repo_path": str(repo), "message": "x"})
        in_flight = r"^mcp\.git\.git_commit: it was in flight .* cannot tell whether it ran"
        with pytest.raises(OutcomeUnknownError, match=in_flight) as unknown:
            await registry.lookup(write, "key-2")
        assert not isinstance(unknown.value, PermanentConnectorError | TransientConnectorError)
        # A tool's own error is a permanent failure with its words.
        with pytest.raises(PermanentConnectorError, match=r"git_show failed: .*no-such-revision"):
            show = registry.validate(
                "mcp.git.git_show", {"repo_path": str(repo), "revision": "no-such-revision"}
            )
            await registry.execute(show, "key-3")
    finally:
        await registry.close()


async def test_a_read_only_tool_is_allowed_and_runs(
    mcp_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi, repo: Path
) -> None:
    anthropic_api.script(
        ROUTE_TO_TOOLS,
        Reply("Checking the repository.", (ToolUse("mcp_git_git_status", {"repo_path": str(repo)}),)),
    )
    await ask(mcp_aios, "what is the state of our repository?")

    tools_offered = [t["name"] for t in anthropic_api.requests[1]["tools"]]
    assert "mcp_git_git_status" in tools_offered and "shop_refund" not in tools_offered
    [action] = await actions(mcp_aios)
    assert (action.name, action.status) == ("mcp.git.git_status", "executed")
    async with mcp_aios.units() as uow:
        decision = (await uow.session.exec(select(Decision))).one()
    assert (decision.verdict, decision.rule_id) == ("allow", "read-only-tools-are-fine")
    [execution] = await executions(mcp_aios)
    assert execution.status == "succeeded" and "On branch" in execution.result["text"]


async def test_a_write_waits_for_a_manager_and_runs_once(
    mcp_aios: Aios, anthropic_api: FakeAnthropicApi, repo: Path
) -> None:
    (repo / "notes.txt").write_text("notes\n")
    git(repo, "add", "notes.txt")
    anthropic_api.script(
        ROUTE_TO_TOOLS,
        Reply(
            "Committing the staged notes.",
            (ToolUse("mcp_git_git_commit", {"repo_path": str(repo), "message": "Add notes"}),),
        ),
    )
    await ask(mcp_aios, "commit what is staged in our repository as 'Add notes'")

    [action] = await actions(mcp_aios)
    assert (action.name, action.status) == ("mcp.git.git_commit", "awaiting_approval")
    assert commits(repo) == ["first"]
    async with mcp_aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    for _ in range(2):  # a second click changes nothing
        await mcp_aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

    assert commits(repo) == ["Add notes", "first"]
    [execution] = await executions(mcp_aios)
    assert execution.status == "succeeded"


async def test_arguments_that_do_not_fit_the_schema_are_refused_before_proposing(
    mcp_aios: Aios, anthropic_api: FakeAnthropicApi
) -> None:
    bad = ToolUse("mcp_git_git_commit", {"message": "no repo"})
    anthropic_api.script(ROUTE_TO_TOOLS, Reply("Committing.", (bad,)), Reply("Committing.", (bad,)))
    await ask(mcp_aios, "commit the staged files")

    assert await actions(mcp_aios) == []
    [result] = anthropic_api.requests[2]["messages"][-1]["content"]
    assert result["is_error"] is True and "'repo_path' is a required property" in result["content"]


async def test_a_server_down_at_start_leaves_its_tools_out_and_shows_unhealthy(
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    repo: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_file(
        tmp_path,
        {
            "git": git_server(repo),
            "broken": {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"]},
            "remote": {"url": f"http://{SECRET}@127.0.0.1:{closed_port()}/mcp?token={SECRET}"},
        },
    )
    aios = await start_aios(
        database_url, slack_api, clock, tmp_path, policy=PACKAGED_POLICY, AIOS_MCP_CONFIG=str(config)
    )
    try:
        names = aios.registry.action_names
        assert "mcp.git.git_status" in names and not any(n.startswith("mcp.broken.") for n in names)
    finally:
        await aios.close()

    context = ConnectorContext(units_of_work=aios.units, settings={"AIOS_MCP_CONFIG": str(config)})
    [status] = await connector_statuses(context, factories=[("mcp-tools", McpTools)])
    assert status.in_use and status.healthy is False
    # Each server connected is listed with its tools and their marks; each other one with why it is not.
    assert {"mcp.git.git_status (read-only)", "mcp.git.git_commit", "mcp.git.git_reset (destructive)"} <= set(
        status.actions
    )
    assert not any(".broken." in name or ".remote." in name for name in status.actions)
    assert "git: 12 tools" in status.state
    assert "MCP server broken cannot be reached" in status.state and "AIOS_MCP_CONFIG" in status.state
    assert "MCP server remote cannot be reached" in status.state and SECRET not in status.state
    logged = capsys.readouterr()
    assert "mcp_server_unreachable" in logged.out + logged.err and SECRET not in logged.out + logged.err


async def test_a_server_gone_before_an_approved_write_fails_it_cleanly(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    repo: Path,
    no_backoff: None,
) -> None:
    # The server is started through a script that says its pid; once the script is gone it cannot restart.
    pid_file, script = tmp_path / "server.pid", tmp_path / "server.sh"
    script.write_text(
        f"#!/bin/sh\necho $$ > {pid_file}\nexec {sys.executable} -m mcp_server_git --repository {repo}\n"
    )
    script.chmod(0o755)
    config = config_file(tmp_path, {"git": {"command": str(script)}})
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
        AIOS_MCP_CONFIG=str(config),
    )
    try:
        (repo / "notes.txt").write_text("notes\n")
        git(repo, "add", "notes.txt")
        commit = ToolUse("mcp_git_git_commit", {"repo_path": str(repo), "message": "Add notes"})
        anthropic_api.script(ROUTE_TO_TOOLS, Reply("Committing.", (commit,)))
        await ask(aios, "commit what is staged")
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        script.unlink()
        async with aios.units() as uow:
            approval = (await uow.session.exec(select(Approval))).one()
        assert approval.id is not None
        await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

        [action] = await actions(aios)
        [execution] = await executions(aios)
        assert action.status == "failed" and execution.status == "failed"
        assert execution.error is not None and "MCP server git cannot be reached" in execution.error
        assert commits(repo) == ["first"]
    finally:
        await aios.close()


DYING_SERVER = """
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("dying")


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def launch(marker: str) -> str:
    Path(marker).write_text("launched")
    os._exit(1)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def peek() -> str:
    os._exit(1)


server.run()
"""


async def test_a_write_whose_server_dies_during_the_call_may_have_run_and_is_not_called_again(
    tmp_path: Path,
) -> None:
    script = tmp_path / "dying.py"
    script.write_text(DYING_SERVER)
    tools = McpTools([ServerConfig(name="dying", command=sys.executable, args=(str(script),))])
    registry = ConnectorRegistry([tools])
    try:
        await registry.connect()
        marker = tmp_path / "launched"
        launch = registry.validate("mcp.dying.launch", {"marker": str(marker)})
        broke = r"^mcp\.dying\.launch: the call to MCP server dying .* cannot tell whether it ran"
        with pytest.raises(OutcomeUnknownError, match=broke) as unknown:
            await registry.execute(launch, "key-1")
        # It did run: the thread must not be told that nothing changed, and nothing may call it again.
        assert marker.read_text() == "launched"
        assert not isinstance(unknown.value, PermanentConnectorError | TransientConnectorError)
        # A read-only call that broke is only worth trying again.
        with pytest.raises(TransientConnectorError, match="the call to MCP server dying broke"):
            await registry.execute(registry.validate("mcp.dying.peek", {}), "key-2")
    finally:
        await registry.close()


TOKEN = "ghp_0123456789abcdefTOKEN"


async def test_a_tools_result_is_scrubbed_of_its_servers_secrets(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    repo: Path,
) -> None:
    # The server holds a token in its environment, and the repository shows it in a commit message.
    git(repo, "commit", "--allow-empty", "-qm", f"Deploy with {TOKEN}")
    server = {**git_server(repo), "env": {"GITHUB_TOKEN": TOKEN, "GIT_TERMINAL_PROMPT": "0"}}
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
        AIOS_MCP_CONFIG=str(config_file(tmp_path, {"git": server})),
    )
    try:
        anthropic_api.script(
            ROUTE_TO_TOOLS,
            Reply("Reading the log.", (ToolUse("mcp_git_git_log", {"repo_path": str(repo)}),)),
        )
        await ask(aios, "what was committed lately?")

        [execution] = await executions(aios)
        assert execution.status == "succeeded", execution.error
        # The rest of the tool's words are kept.
        assert "Deploy with [REDACTED:AIOS_MCP_CONFIG]" in execution.result["text"]
        assert TOKEN not in await everything_stored(aios)
        posted = " ".join(str(call.params) for call in slack_api.calls_to("chat.postMessage"))
        assert "Deploy with [REDACTED:AIOS_MCP_CONFIG]" in posted and TOKEN not in posted
        # A tool's error is scrubbed too.
        show = aios.registry.validate("mcp.git.git_show", {"repo_path": str(repo), "revision": TOKEN})
        with pytest.raises(PermanentConnectorError) as refused:
            await aios.registry.execute(show, "key-1")
        assert "git_show failed" in str(refused.value) and TOKEN not in str(refused.value)
    finally:
        await aios.close()


def test_headers_and_url_credentials_are_secrets_and_short_values_are_not() -> None:
    config = ServerConfig(
        name="remote",
        url="https://bot:pass-word@mcp.example.com/mcp?key=q-0123456789&v=2",
        env={"DEBUG": "1"},
        headers={"Authorization": "Bearer tok-0123456789", "X-Api-Key": "key-abcdef"},
    )
    text = "Bearer tok-0123456789, tok-0123456789, key-abcdef, pass-word, q-0123456789, v=2, 1 + 1"
    hidden = "[REDACTED:AIOS_MCP_CONFIG]"
    assert config.redact(text) == ", ".join([hidden] * 5) + ", v=2, 1 + 1"
    assert config.redact(f"at {config.url}") == f"at {hidden}"
    assert config.redact(base64.b64encode(b"tok-0123456789").decode()) == hidden  # as the Redactor knows it


async def test_headers_are_sent_to_a_streamable_http_server_and_kept_out_of_errors(tmp_path: Path) -> None:
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, text=f"bad token {request.headers.get('Authorization')}")

    app = web.Application()
    app.router.add_route("*", "/mcp", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = closed_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    config = config_file(
        tmp_path,
        {"remote": {"url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": f"Bearer {TOKEN}"}}},
    )
    tools = McpTools(load_config(str(config)))
    try:
        assert await tools.connect() == ()
        assert seen and seen[0] == f"Bearer {TOKEN}"
        assert "MCP server remote cannot be reached" in tools.unreachable["remote"]
        assert TOKEN not in tools.unreachable["remote"]
    finally:
        await tools.close()
        await runner.cleanup()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "there is no file"),
        ("{not json", "is not JSON (line 1, column 2"),
        ('{"servers": {}}', 'has no "mcpServers" object'),
        ('{"mcpServers": {"git": {"args": []}}}', 'needs either "command" (stdio) or "url"'),
        ('{"mcpServers": {"my.git": {"command": "x"}}}', "no dots"),
        ('{"mcpServers": {"git": {"url": "ftp://x"}}}', "http:// or https://"),
        (
            '{"mcpServers": {"git": {"command": "x", "env": {"TOKEN": 5}}}}',
            '"env" must be an object of strings',
        ),
        (
            '{"mcpServers": {"git": {"command": "x", "headers": {"Authorization": "Bearer t"}}}}',
            '"headers" must be an object of strings, and only with "url"',
        ),
        (
            '{"mcpServers": {"git": {"url": "https://x/mcp", "headers": ["Authorization"]}}}',
            '"headers" must be an object of strings',
        ),
    ],
)
def test_a_malformed_config_is_one_clear_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "mcp.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(McpConfigError, match="AIOS_MCP_CONFIG") as raised:
        load_config(str(path))
    assert message in str(raised.value) and "\n" not in str(raised.value)
