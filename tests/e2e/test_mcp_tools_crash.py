"""A real crash during an MCP write: `aios serve` is killed (SIGKILL) after mcp-server-git committed and before
the execution was recorded, then restarted. MCP has no idempotency keys, so the restarted bot cannot tell that
the commit landed: it must not commit again, and it tells the thread once that the call may have run."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.test_crash_recovery import post
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action
from tests.integration.test_mcp_tools import commits, git

UNKNOWN = "MCP cannot tell whether it ran"


def rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def wait_until(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def told_unknown(slack: FakeSlackApi) -> list[str]:
    """The thread's messages saying the write may have run."""
    texts = [str(call.params.get("text", "")) for call in slack.calls_to("chat.postMessage")]
    return [text for text in texts if UNKNOWN in text]


def test_a_write_lost_in_a_crash_is_not_repeated_and_the_thread_is_told_once(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "first")
    (repo / "notes.txt").write_text("notes\n")
    git(repo, "add", "notes.txt")
    # The server's commits need an author whatever the machine's git configuration.
    author = {
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    server = {
        "command": sys.executable,
        "args": ["-m", "mcp_server_git", "--repository", str(repo)],
        "env": author,
    }
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"git": server}}))
    database = tmp_path / "aios.db"

    with FakeSlackApi() as slack, FakeAnthropicApi() as claude:
        claude.script(
            Reply("", (ToolUse("route_to_agent", {"agent": "tools"}),)),
            Reply(
                "Committing the staged notes.",
                (ToolUse("mcp_git_git_commit", {"repo_path": str(repo), "message": "Add notes"}),),
            ),
        )
        env = {
            **aios_env(f"sqlite+aiosqlite:///{database}", slack.url),
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": claude.url,
            "AIOS_MCP_CONFIG": str(config),
        }
        with running_aios_serve({**env, "AIOS_CRASH_AT": "connector_done"}) as doomed:
            mention = app_mention(
                "commit what is staged as 'Add notes'", user="U0ALICE", ts="1700002000.000100"
            )
            assert asyncio.run(post(doomed.url, *mention))
            pending = "SELECT id FROM approval WHERE status = 'pending'"
            wait_until(lambda: rows(database, pending), 30, "the approval card")
            [(approval_id,)] = rows(database, pending)
            click = block_action("aios_approve", f"AP-{approval_id}", user="U0MANAGER", message_ts="1.1")
            asyncio.run(post(doomed.url, *click))  # the answer may be lost to the kill
            doomed.process.wait(30)
            assert doomed.process.returncode == -9, "the server never reached connector_done"
        # The server committed; the bot died before it could record that.
        assert commits(repo) == ["Add notes", "first"]
        assert rows(database, "SELECT status FROM execution") == [("started",)]

        with running_aios_serve(env):
            wait_until(
                lambda: rows(database, "SELECT status FROM execution") != [("started",)],
                30,
                "the reconciliation",
            )
            wait_until(lambda: told_unknown(slack), 10, "the thread to be told")
        with running_aios_serve(env):  # a further start finds nothing left in flight
            time.sleep(2)

    assert commits(repo) == ["Add notes", "first"]  # exactly one commit: the call was not made again
    [(status, error)] = rows(database, "SELECT status, error FROM execution")
    assert status == "failed" and UNKNOWN in str(error)
    assert rows(database, "SELECT status FROM proposed_action") == [("failed",)]
    assert rows(database, "SELECT status FROM run") == [("failed",)]  # ended, not left executing
    [told] = told_unknown(slack)
    assert "may still have taken effect" in told and "Nothing was changed" not in told
    assert rows(database, "SELECT kind, outcome FROM execution_attempt") == [("lookup", "unknown")]
