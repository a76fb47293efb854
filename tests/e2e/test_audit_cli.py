"""`aios audit` through the installed executable, on a store `aios chat` wrote: intact, then edited by hand."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_two_replicas import scenario
from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """$50 allowed by the packaged policy, $150 approved by a manager: both executed."""
    database = tmp_path / "aios.db"
    env = aios_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9/api/")
    script = "refund order 1004, $50, scratched\nrefund order 1001, $150, arrived broken\napprove as U0MANAGER\nquit\n"
    result = run("chat", "--as", "U0ALICE", env=env, stdin=script)
    assert result.returncode == 0, result.stderr
    return env, database


def test_an_intact_trail_verifies_and_exports(recorded: tuple[dict[str, str], Path]) -> None:
    env, database = recorded

    verified = run("audit", "verify", env=env)
    exported = run("audit", "export", "--since", "1d", "--json", env=env)

    assert verified.returncode == 0, verified.stderr
    with sqlite3.connect(database) as db:
        entries, head = db.execute("SELECT count(*), max(seq) FROM audit_entry").fetchone()
        [head_hash] = db.execute("SELECT entry_hash FROM audit_entry WHERE seq = ?", (head,)).fetchone()
    assert verified.stdout.startswith(f"intact: {entries} entries over ")
    assert "2 executions covered" in verified.stdout and verified.stdout.rstrip().endswith(head_hash)
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, entries + 1))
    assert lines[-1]["entry_hash"] == head_hash
    assert {"E-1", "E-2", "AP-1", "D-2"} <= {line["record"] for line in lines}
    approved = [line["content"] for line in lines if line["record"] == "AP-1"][-1]
    assert (approved["status"], approved["decided_by"]) == ("approved", "U0MANAGER")


def test_an_edited_decision_is_named_with_exit_code_1(recorded: tuple[dict[str, str], Path]) -> None:
    env, database = recorded
    with sqlite3.connect(database) as db:
        db.execute("UPDATE decision SET verdict = 'allow' WHERE id = 2")

    verified = run("audit", "verify", env=env)
    as_json = run("audit", "verify", "--json", env=env)

    assert verified.returncode == 1, verified.stderr
    assert verified.stdout.startswith("broken: D-2: edited (audit entry #")
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and document["intact"] is False
    assert [(p["kind"], p["record"]) for p in document["problems"]] == [("edited", "D-2")]


def test_bad_input_is_one_line_and_exit_code_2(recorded: tuple[dict[str, str], Path]) -> None:
    env, _ = recorded

    result = run("audit", "export", "--since", "last tuesday", env=env)

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: --since 'last tuesday' is neither a window (7d, 24h, 30m) nor a date (2026-11-01)"
    ]


def test_two_replicas_at_once_leave_one_intact_chain(postgres_database: str) -> None:
    """The same event and click delivered many times to two `aios serve` processes sharing PostgreSQL: both
    append to the chain at once, and it verifies as one."""
    with FakeSlackApi() as slack:
        env = aios_env(postgres_database, slack.url)
        with running_aios_serve(env) as first, running_aios_serve(env) as second:
            asyncio.run(scenario([first.url, second.url], postgres_database))

        verified = run("audit", "verify", "--json", env=env)

    report = json.loads(verified.stdout)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert report["problems"] == [] and report["executions_checked"] == 2
