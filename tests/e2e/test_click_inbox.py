"""An acknowledged click is never lost: `aios serve` is killed (SIGKILL) right after an approval click is stored
and acked, or right after it decided the approval; the restarted process finishes the work without anyone
clicking again, executes the action once, and tells nobody that their click "changed nothing"."""

from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, sign

MANAGER = "U0MANAGER"


def post(url: str, body: str, content_type: str) -> int | None:
    """The status, or None when the server died before answering."""
    request = urllib.request.Request(
        f"{url}/slack/events", data=body.encode(), headers={"Content-Type": content_type, **sign(body)}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def query(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def wait_until(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.parametrize("boundary", ["click_stored", "approval_decided"])
def test_a_click_acked_before_a_crash_is_carried_out_once_after_the_restart(
    boundary: str, tmp_path: Path
) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve({**env, "AIOS_CRASH_AT": boundary}) as doomed:
            assert (
                post(doomed.url, *app_mention("refund $150 on order 1001, broken", user="U0ALICE", ts="1.1"))
                == 200
            )
            wait_until(lambda: query(database, "SELECT id FROM approval WHERE status = 'pending'"))
            [(approval_id,)] = query(database, "SELECT id FROM approval")
            post(
                doomed.url, *block_action("aios_approve", f"AP-{approval_id}", user=MANAGER, message_ts="1.1")
            )
            doomed.process.wait(10)
            assert doomed.process.returncode == -9, f"the server never reached {boundary}"
        assert query(database, "SELECT approval_id, user, approve, processed_at FROM click") == [
            (approval_id, MANAGER, 1, None)
        ]

        with running_aios_serve(env):  # nobody clicks again
            wait_until(lambda: query(database, "SELECT status FROM run") == [("completed",)])
            wait_until(lambda: query(database, "SELECT processed_at IS NOT NULL FROM click") == [(1,)])

        assert query(database, "SELECT status, decided_by FROM approval") == [("approved", MANAGER)]
        assert query(database, "SELECT status FROM execution") == [("succeeded",)]
        assert query(database, "SELECT order_id, amount FROM sandbox_refund") == [(1001, 150.0)]
        assert query(database, "SELECT COUNT(*) FROM decision WHERE kind = 'refusal'") == [(0,)]
        assert [c.params["text"] for c in slack.calls_to("chat.postEphemeral")] == []
