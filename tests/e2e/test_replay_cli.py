"""`aios replay` through the installed executable: a run's diff, a window's summary as JSON, bad input as one
line, and proof that it calls no model, no connector and nothing on the network, and writes nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes.aios_process import AIOS, aios_env

CANDIDATE = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: refunds-over-100-are-denied
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 100.0
    verdict: deny
  - id: refunds-over-30-need-a-manager
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 30.0
    verdict: require_approval
    approvers: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path, Path]:
    """Two runs recorded by `aios chat` under the packaged policy: $50 allowed, $150 for a manager."""
    folder = tmp_path_factory.mktemp("replay")
    database = folder / "aios.db"
    env = aios_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9/api/")
    script = "refund order 1004, $50, scratched\nrefund order 1001, $150, arrived broken\nquit\n"
    result = run("chat", "--as", "U0ALICE", env=env, stdin=script)
    assert result.returncode == 0, result.stderr
    candidate = folder / "candidate.yaml"
    candidate.write_text(CANDIDATE)
    return env, database, candidate


def test_one_run_is_shown_as_a_diff(recorded: tuple[dict[str, str], Path, Path]) -> None:
    env, _, candidate = recorded
    result = run("replay", "R-1", "--policy", str(candidate), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Replay of R-1 under {candidate}")
    assert (
        "allow by small-refunds-are-fine (allowed without approval) → require_approval by "
        "refunds-over-30-need-a-manager (needs approval by manager) — stricter"
    ) in result.stdout


def test_a_window_is_summarised_as_one_json_document(recorded: tuple[dict[str, str], Path, Path]) -> None:
    env, _, candidate = recorded
    result = run("replay", "--since", "7d", "--policy", str(candidate), "--json", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    summary = document["summary"]
    assert (summary["actions"], summary["changed"], summary["by_change"]["stricter"]) == (2, 2, 2)
    assert [(g["verdict"], g["money"]) for g in summary["groups"]] == [
        ("deny", 150.0),
        ("require_approval", 50.0),
    ]
    assert [a["run"] for a in document["actions"]] == [1, 2]


def test_a_window_may_start_at_a_date(recorded: tuple[dict[str, str], Path, Path]) -> None:
    env, _, candidate = recorded
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    counted = []
    for start in (yesterday, tomorrow):
        result = run("replay", "--since", start, "--policy", str(candidate), "--json", env=env)
        assert result.returncode == 0, result.stderr
        counted.append(json.loads(result.stdout)["summary"]["actions"])
    assert counted == [2, 0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["R-1"], "give the policy to compare with: --policy FILE"),
        (
            ["--since", "7x", "--policy", "{candidate}"],
            "--since '7x' is neither a window (7d, 24h, 30m) nor a date",
        ),
        (["X-1", "--policy", "{candidate}"], "'X-1' is not a run id; run ids look like R-17"),
        (["R-1", "--since", "7d", "--policy", "{candidate}"], "give a run id"),
        (["R-1", "--policy", "{missing}"], "cannot read policy file"),
        (["R-1", "--policy", "{broken}"], "its `when` is not valid CEL"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(
    recorded: tuple[dict[str, str], Path, Path], args: list[str], message: str
) -> None:
    env, _, candidate = recorded
    broken = candidate.with_name("broken.yaml")
    broken.write_text(CANDIDATE.replace('action.name == "shop.refund" && run', "action.name == && run"))
    paths = {"candidate": candidate, "missing": candidate.with_name("nope.yaml"), "broken": broken}
    result = run("replay", *[arg.format(**paths) for arg in args], env=env)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("run_id", ["R-99", "R-99999999999"])  # the second is too big for any table
def test_an_unknown_run_is_said_in_one_line(recorded: tuple[dict[str, str], Path, Path], run_id: str) -> None:
    env, _, candidate = recorded
    result = run("replay", run_id, "--policy", str(candidate), env=env)
    assert (result.returncode, result.stderr.strip()) == (1, f"error: there is no run {run_id}")


# The command run in a process whose sockets refuse to connect: no model, connector or Slack could be reached.
NO_NETWORK = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("replay tried to reach something it must not")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
from connectors.registry import ConnectorRegistry
ConnectorRegistry.__init__ = refuse  # no connector is ever built
from bot.cli import main
sys.argv = ["aios", "replay", "--since", "7d", "--policy", sys.argv[1], "--json"]
try:
    main()
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("anthropic", "slack_sdk", "httpx2", "weaviate")
    or m in ("bot.bootstrap", "agents.llm", "agents.dispatcher", "connectors.catalogue", "storage.memory"))
print(json.dumps(loaded), file=sys.stderr)
"""


def test_replay_calls_no_model_no_connector_no_network_and_writes_nothing(
    recorded: tuple[dict[str, str], Path, Path],
) -> None:
    env, database, candidate = recorded

    def dump() -> list[str]:
        with sqlite3.connect(database) as connection:
            return list(connection.iterdump())

    before = dump()
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, str(candidate)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["changed"] == 2
    # Nothing that builds the bot (the model client, the memory store, Slack) was even imported.
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
    assert dump() == before


def test_the_console_shows_the_same_replay_as_text(recorded: tuple[dict[str, str], Path, Path]) -> None:
    env, _, candidate = recorded
    result = run(
        "chat",
        "--as",
        "U0CAROL",
        env={**env, "AIOS_CANDIDATE_POLICY_FILE": str(candidate)},
        stdin="/aios replay R-2\nquit\n",
    )
    assert result.returncode == 0, result.stderr
    assert f"Replay of R-2 under {candidate}" in result.stdout
    assert "require_approval by refunds-over-100-need-a-manager" in result.stdout
    assert "→ deny by refunds-over-100-are-denied (denied) — stricter" in result.stdout
