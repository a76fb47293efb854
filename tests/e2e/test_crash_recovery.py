"""Crash injection: `aios serve` is killed with SIGKILL at each step boundary, restarted, and the scenario
finished. Every run must end completed, with exactly one execution and one refund per approved action.

9 runs per boundary (5 small refunds the policy allows, 4 large ones a manager approves) × 6 boundaries."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from bot.crashpoints import BOUNDARIES
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, sign

REFUNDS = [
    ("refund $5 on order 1002, late", 1002),
    ("refund $5 on order 1003, late", 1003),
    ("refund $5 on order 1004, late", 1004),
    ("refund $6 on order 1002, scuffed", 1002),
    ("refund $6 on order 1003, scuffed", 1003),
    ("refund $150 on order 1001, broken", 1001),
    ("refund $150 on order 1005, broken", 1005),
    ("refund $151 on order 1001, cracked", 1001),
    ("refund $151 on order 1005, cracked", 1005),
]


async def post(url: str, body: str, content_type: str) -> bool:
    """Deliver one signed request; False when the server is gone (Slack would retry it later)."""
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": content_type, **sign(body)}
            async with session.post(
                f"{url}/slack/events", data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=5)
            ) as response:
                return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


def mentions(boundary: str) -> list[tuple[str, str]]:
    return [
        app_mention(text, user="U0ALICE", ts=f"1700001000.{n:06d}", event_id=f"Ev{boundary}{n}")
        for n, (text, _) in enumerate(REFUNDS)
    ]


def query(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(sql).fetchall()


async def approve_pending(url: str, database: Path) -> None:
    for (approval_id,) in query(database, "SELECT id FROM approval WHERE status = 'pending'"):
        await post(
            url, *block_action("aios_approve", f"AP-{approval_id}", user="U0MANAGER", message_ts="1.1")
        )


def finished(database: Path) -> bool:
    runs = query(database, "SELECT status FROM run")
    return len(runs) == len(REFUNDS) and all(status == "completed" for (status,) in runs)


async def drive(
    url: str, database: Path, deliveries: list[tuple[str, str]], seconds: float, alive: object = None
) -> list[tuple[str, str]]:
    """Send what is undelivered, approve what waits, until everything finished, time runs out, or the
    server dies. Returns what could not be delivered."""
    undelivered = [d for d in deliveries if not await post(url, *d)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not finished(database):
        if callable(alive) and not alive():
            break
        await approve_pending(url, database)
        await asyncio.sleep(0.2)
    return undelivered


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_crash_at_any_boundary_loses_nothing_and_repeats_nothing(boundary: str, tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        env["AIOS_RECOVERY_GRACE_SECONDS"] = "0"
        with running_aios_serve({**env, "AIOS_CRASH_AT": boundary}) as doomed:
            undelivered = asyncio.run(
                drive(
                    doomed.url, database, mentions(boundary), 20, alive=lambda: doomed.process.poll() is None
                )
            )
            doomed.process.wait(10)
            assert doomed.process.returncode == -9, f"the server never reached {boundary}"
        with running_aios_serve(env) as restarted:
            asyncio.run(drive(restarted.url, database, undelivered, 30))

    assert finished(database), query(database, "SELECT id, status FROM run")
    assert query(database, "SELECT COUNT(*) FROM intent") == [(len(REFUNDS),)]
    per_action = query(
        database,
        """
        SELECT a.id, COUNT(DISTINCT e.id), COUNT(DISTINCT r.id) FROM proposed_action a
        LEFT JOIN execution e ON e.action_id = a.id AND e.status = 'succeeded'
        LEFT JOIN sandbox_refund r ON r.idempotency_key = e.idempotency_key GROUP BY a.id""",
    )
    assert len(per_action) == len(REFUNDS)
    assert all((executions, refunds) == (1, 1) for _, executions, refunds in per_action), per_action
    assert query(database, "SELECT COUNT(*) FROM sandbox_refund") == [(len(REFUNDS),)]
    approvals = query(database, "SELECT status FROM approval")
    assert sorted(str(status) for (status,) in approvals) == ["approved"] * 4
