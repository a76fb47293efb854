"""`aios replay --model` through the installed executable, against the local fake Messages API: runs recorded
by `aios chat` are planned again by another model once the estimate is confirmed; nothing is written, no
connector is built, nothing but the model is reached; a question not answered, or answered no, calls nothing;
bad input is one line."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.aios_process import AIOS, aios_env
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, Script, ToolUse

REFUND_1004 = ToolUse("shop_refund", {"order_id": 1004, "amount": 50.0, "reason": "scratched"})
REFUND_1001 = ToolUse("shop_refund", {"order_id": 1001, "amount": 150.0, "reason": "arrived broken"})
MODEL = "claude-haiku-4-5"


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


def replay_answers(body: dict[str, Any]) -> Script:
    """The other model: the same refund for 1004, an email instead of 1001's refund."""
    if "1004" in body["messages"][-1]["content"]:
        return Reply("Refunding $50.", (REFUND_1004,))
    email = {"to": "maya@example.com", "subject": "Your order", "body": "We are looking into it."}
    return Reply("Asking Maya first.", (ToolUse("email_send", email),))


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAnthropicApi]:
    with FakeAnthropicApi() as fake:
        yield fake


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, api: FakeAnthropicApi) -> tuple[dict[str, str], Path]:
    """Two runs planned by Claude in `aios chat` under the packaged policy: $50 allowed, $150 for a manager."""
    database = tmp_path_factory.mktemp("model-replay") / "aios.db"
    env = aios_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9/api/")
    env |= {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": api.url}
    api.script(Reply("On it.", (REFUND_1004,)), Reply("On it.", (REFUND_1001,)))
    script = "refund order 1004, $50, scratched\nrefund order 1001, $150, arrived broken\nquit\n"
    result = run("chat", "--as", "U0ALICE", env=env, stdin=script)
    assert result.returncode == 0, result.stderr
    assert len(api.requests) == 2
    api.default = replay_answers
    return env, database


def dump(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return list(connection.iterdump())


# The command in a process where building any connector fails and only the fake Messages API can be reached.
GUARDED = """
import socket, sys
from importlib.metadata import entry_points
allowed = int(sys.argv[1])
connect = socket.socket.connect
def only_the_model(self, address, *args):
    if not (isinstance(address, tuple) and address[1] == allowed):
        raise AssertionError(f"replay tried to reach {address}")
    return connect(self, address, *args)
socket.socket.connect = only_the_model
def refuse(cls, context):
    raise AssertionError(f"replay built the connector {cls.__name__}")
for entry_point in entry_points(group="aios.connectors"):
    entry_point.load().configured = classmethod(refuse)
from bot.cli import main
sys.argv = ["aios", *sys.argv[2:]]
main()
"""


def test_runs_are_planned_again_compared_and_nothing_is_written_or_built(
    recorded: tuple[dict[str, str], Path], api: FakeAnthropicApi
) -> None:
    env, database = recorded
    # A Stripe key offers stripe.refund to the returns agent; its (unreachable) API must not be asked anything.
    env = env | {"STRIPE_API_KEY": "sk_test_replay", "STRIPE_API_BASE": "http://127.0.0.1:9"}
    before, seen = dump(database), len(api.requests)
    args = ["replay", "--since", "7d", "--model", MODEL, "--yes", "--json"]

    result = subprocess.run(
        [sys.executable, "-c", GUARDED, str(api.port), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [(r["run"], r["outcome"], r["verdict_changed"]) for r in document["runs"]] == [
        ("R-1", "same", False),
        ("R-2", "different action", False),  # a manager's approval either way
    ]
    assert document["summary"]["live_lookups_repeated"] is False
    replay_cost = document["cost"]["replay"]
    assert (replay_cost["calls"], replay_cost["models"]) == (2, [MODEL])
    assert document["cost"]["original_planning"]["models"] == ["claude-sonnet-4-6"]
    assert "2 runs to re-plan with claude-haiku-4-5" in result.stderr  # the estimate, shown before
    requests = api.requests[seen:]
    assert [r["model"] for r in requests] == [MODEL, MODEL]
    assert [t["name"] for t in requests[0]["tools"]][:3] == ["shop_refund", "email_send", "stripe_refund"]
    assert dump(database) == before


def test_the_text_report_names_the_runs_that_differ(
    recorded: tuple[dict[str, str], Path], api: FakeAnthropicApi
) -> None:
    env, _ = recorded
    result = run("replay", "--since", "7d", "--model", MODEL, "--agent", "returns", "--yes", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Model replay of the runs of the returns agent since ") and lines[0].endswith(
        f" with {MODEL}"
    )
    assert (
        "2 runs re-planned: 1 same, 1 different action, 0 different parameters, 0 nothing proposed." in lines
    )
    assert any(
        line.startswith('≠ R-2 returns "refund order 1001, $150, arrived broken": then shop.refund')
        and "→ now email.send" in line
        and line.endswith("— different action")
        for line in lines
    ), result.stdout


def test_without_a_terminal_or_yes_nothing_is_asked_of_the_model(
    recorded: tuple[dict[str, str], Path], api: FakeAnthropicApi
) -> None:
    env, _ = recorded
    seen = len(api.requests)
    result = run("replay", "--since", "7d", "--model", MODEL, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: a model replay spends money: confirm it on a terminal, or pass --yes"
    )
    assert len(api.requests) == seen


def test_answering_no_on_a_terminal_calls_nothing(
    recorded: tuple[dict[str, str], Path], api: FakeAnthropicApi
) -> None:
    env, _ = recorded
    seen = len(api.requests)
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"n\n")
        result = subprocess.run(
            [AIOS, "replay", "--since", "7d", "--model", MODEL],
            env=env,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 1, result.stderr
    assert "estimated $" in result.stderr and "Re-plan them? [y/N]" in result.stderr
    assert result.stderr.strip().endswith("Nothing was re-planned.")
    assert len(api.requests) == seen


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        (["--policy", "x.yaml"], {}, "--policy and --model are exclusive"),
        ([], {"ANTHROPIC_API_KEY": ""}, "a model replay asks Claude: set ANTHROPIC_API_KEY"),
        (["--agent", "billing"], {}, "no agent named 'billing'; agents: returns, content, tools"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    recorded: tuple[dict[str, str], Path], args: list[str], settings: dict[str, str], message: str
) -> None:
    env, _ = recorded
    result = run("replay", "--since", "7d", "--model", MODEL, *args, env=env | settings)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_an_unknown_model_lists_the_known_ones(recorded: tuple[dict[str, str], Path]) -> None:
    env, _ = recorded
    result = run("replay", "--since", "7d", "--model", "claude-nope", env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no price for model 'claude-nope'; known models: claude-haiku-4-5, ")
    assert "offline" not in line and line.endswith("(AIOS_LLM_PRICES adds one)")


def test_an_estimate_over_what_a_budget_has_left_is_refused(
    recorded: tuple[dict[str, str], Path], api: FakeAnthropicApi, tmp_path: Path
) -> None:
    env, _ = recorded
    policy = tmp_path / "policy.yaml"
    policy.write_text("""
version: 1
rules:
  - id: refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
roles:
  manager: [U0MANAGER]
budgets:
  - id: returns-daily
    scope: agent
    match: returns
    period: day
    limit_usd: 0.0001
""")
    seen = len(api.requests)
    result = run(
        "replay", "--since", "7d", "--model", MODEL, "--yes", env=env | {"AIOS_POLICY_FILE": str(policy)}
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the replay may cost $") and "budget returns-daily (agent returns)" in last
    assert len(api.requests) == seen
