"""MCP tools end to end: the real `aios mcp` proposing the git server's tools, the MCP connector over
streamable HTTP against another `aios mcp --http`, and `aios connectors` listing the servers' tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from connectors.mcp_tools import McpTools, ServerConfig
from connectors.registry import ConnectorRegistry
from tests.e2e.test_mcp_server import console_env, mcp_session, running_mcp_over_http, text
from tests.fakes.aios_process import AIOS
from tests.integration.test_mcp_tools import commits, git


async def test_aios_mcp_proposes_a_git_servers_tools_through_the_policy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "first")
    config = tmp_path / "mcp.json"
    server = {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)]}
    config.write_text(json.dumps({"mcpServers": {"git": server}}))
    env = {**console_env(tmp_path), "AIOS_MCP_CONFIG": str(config)}

    async with mcp_session(env, tmp_path / "stderr.log") as session:
        status = await session.call_tool(
            "propose_action",
            {
                "action": "mcp.git.git_status",
                "params": {"repo_path": str(repo)},
                "rationale": "what is staged?",
                "requester": "U0ALICE",
            },
        )
        commit = await session.call_tool(
            "propose_action",
            {
                "action": "mcp.git.git_commit",
                "params": {"repo_path": str(repo), "message": "from a client"},
                "rationale": "save the work",
                "requester": "U0ALICE",
            },
        )
    assert not status.is_error and status.structured_content is not None, text(status)
    (allowed,) = status.structured_content["proposals"]
    assert (allowed["verdict"], allowed["rule"], allowed["status"]) == (
        "allow",
        "read-only-tools-are-fine",
        "executed",
    )
    assert not commit.is_error and commit.structured_content is not None, text(commit)
    (waiting,) = commit.structured_content["proposals"]
    assert (waiting["verdict"], waiting["rule"]) == ("require_approval", "other-tools-need-a-manager")
    assert commits(repo) == ["first"]


async def test_a_streamable_http_servers_tools_are_actions(tmp_path: Path) -> None:
    with running_mcp_over_http(console_env(tmp_path), tmp_path / "stderr.log") as url:
        registry = ConnectorRegistry([McpTools([ServerConfig(name="aios", url=url)])])
        try:
            await registry.connect()
            assert {"mcp.aios.why", "mcp.aios.pending_approvals", "mcp.aios.propose_action"} <= set(
                registry.action_names
            )
            pending = registry.model_for("mcp.aios.pending_approvals")
            assert getattr(pending, "read_only", None) is True
            propose = registry.model_for("mcp.aios.propose_action")
            assert getattr(propose, "read_only", None) is False
            action = registry.validate("mcp.aios.pending_approvals", {})
            result = await registry.execute(action, "key-1")
            assert result["server"] == "aios" and result["tool"] == "pending_approvals"
        finally:
            await registry.close()


def test_aios_connectors_lists_each_servers_tools_or_why_it_is_unreachable(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    config = tmp_path / "mcp.json"
    servers = {
        "git": {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)]},
        "broken": {"command": sys.executable, "args": ["-c", "raise SystemExit(3)"]},
    }
    config.write_text(json.dumps({"mcpServers": servers}))
    env = {**console_env(tmp_path), "AIOS_MCP_CONFIG": str(config), "COLUMNS": "1000"}

    result = subprocess.run([AIOS, "connectors"], env=env, capture_output=True, text=True, timeout=120)

    assert result.returncode == 1, result.stderr  # a server is unreachable
    [row] = [line for line in result.stdout.splitlines() if line.startswith("│ mcp-tools ")]
    assert "mcp.git.git_status (read-only), " in row and "mcp.git.git_reset (destructive), " in row
    assert "mcp.git.git_commit, " in row and "mcp.broken." not in row
    assert "MCP server broken cannot be reached" in row and "git: 12 tools" in row
    assert "Traceback" not in result.stdout + result.stderr


POLICY_NAMING_A_MISSPELT_PARAMETER = """
version: 1
roles: {manager: [U0MANAGER]}
rules:
  - id: not-main
    when: action.name == "mcp.git.git_checkout" && action.params.branch == "main"
    verdict: deny
default: require_approval
default_approvers: [manager]
"""


def test_a_rule_naming_a_parameter_the_tool_does_not_have_stops_the_start(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    config = tmp_path / "mcp.json"
    server = {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)]}
    config.write_text(json.dumps({"mcpServers": {"git": server}}))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_NAMING_A_MISSPELT_PARAMETER)
    env = {**console_env(tmp_path), "AIOS_MCP_CONFIG": str(config), "AIOS_POLICY_FILE": str(policy)}

    result = subprocess.run([AIOS, "chat"], env=env, input="", capture_output=True, text=True, timeout=120)

    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "rule 'not-main': its `when` names `action.params.branch`, which mcp.git.git_checkout does not have "
        "(did you mean `action.params.branch_name`?)"
    ) in result.stderr
    assert "Traceback" not in result.stderr
