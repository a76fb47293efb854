"""A wrong setting stops `aios serve` before it touches the store: one clear line, a non-zero exit, no traceback,
no lease taken (neither a row nor a log line saying so), and on a fresh machine not even a database file."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.fakes.aios_process import AIOS, aios_env

BAD_SETTINGS = {
    "smtp-url": (
        {"AIOS_SMTP_URL": "ftp://mailer:pa55word-x@mail.example.com"},
        "error: AIOS_SMTP_URL must start with smtp:// or smtps://",
    ),
    "webhooks": (
        {"AIOS_WEBHOOKS": '{"crm": {"url": "https://crm.example.com/h", "secret": "whsec-123456"'},
        "error: AIOS_WEBHOOKS is not valid JSON",
    ),
    "llm-prices": (
        {"ANTHROPIC_API_KEY": "sk-ant-test-0123456789", "AIOS_LLM_PRICES": "cheap"},
        "error: AIOS_LLM_PRICES must be JSON",
    ),
}


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIOS, "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("setting", list(BAD_SETTINGS))
def test_a_wrong_setting_is_one_line_and_leaves_no_lease(tmp_path: Path, setting: str) -> None:
    bad, expected = BAD_SETTINGS[setting]
    database = tmp_path / "aios.db"
    env = {**aios_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9/api/"), **bad}
    assert subprocess.run([AIOS, "db", "upgrade"], env=env, capture_output=True, timeout=60).returncode == 0

    result = serve(env)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith(expected)
    assert "Traceback" not in result.stderr and "lease" not in result.stderr
    for value in bad.values():
        assert value not in result.stderr  # the line names the setting, never its value
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM process_lease").fetchone() == (0,)


def test_on_a_fresh_machine_a_wrong_setting_creates_no_database(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    bad, expected = BAD_SETTINGS["smtp-url"]
    result = serve({**aios_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9/api/"), **bad})
    assert result.returncode == 2 and result.stderr.startswith(expected)
    assert not database.exists()


def test_a_setting_found_wrong_after_the_lease_is_taken_releases_it(tmp_path: Path) -> None:
    """The embeddings setting is checked when the memory store opens, after the lease: the start still ends
    with one line and the lease given back."""
    if importlib.util.find_spec("sentence_transformers") is not None:
        pytest.skip("the embeddings extra is installed here, so AIOS_MEMORY_EMBEDDINGS=on is not wrong")
    database = tmp_path / "aios.db"
    env = {
        **aios_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9/api/"),
        "AIOS_MEMORY_EMBEDDINGS": "on",
    }

    result = serve(env)

    assert result.returncode == 2 and "Traceback" not in result.stderr
    *logged, last = result.stderr.strip().splitlines()
    assert last.startswith("error: AIOS_MEMORY_EMBEDDINGS=on but the embeddings extra is not installed")
    assert [json.loads(line)["event"] for line in logged] == ["lease_taken"]
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM process_lease").fetchone() == (0,)
