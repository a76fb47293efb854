"""Crash injection: `aios serve` is killed with SIGKILL at each step boundary, restarted, and the scenario
finished. Every run must end completed, with exactly one execution and one refund per approved action.

9 runs per boundary (5 small refunds the policy allows, 4 large ones a manager approves) × each boundary, on
SQLite and on PostgreSQL. The recovery grace period stays at its default (60 s), longer than the restarted
process is given: the killed process's work is carried on because its lease is gone, not because it aged."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from runtime.crashpoints import BOUNDARIES
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


Database = Path | str  # a SQLite file, or a PostgreSQL URL


async def query(database: Database, sql: str) -> list[tuple[object, ...]]:
    if isinstance(database, Path):
        with sqlite3.connect(database, timeout=30) as connection:
            return connection.execute(sql).fetchall()
    connection = await asyncpg.connect(
        make_url(database).set(drivername="postgresql").render_as_string(False)
    )
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def approve_pending(url: str, database: Database) -> None:
    for (approval_id,) in await query(database, "SELECT id FROM approval WHERE status = 'pending'"):
        await post(
            url, *block_action("aios_approve", f"AP-{approval_id}", user="U0MANAGER", message_ts="1.1")
        )


async def finished(database: Database) -> bool:
    runs = await query(database, "SELECT status FROM run")
    return len(runs) == len(REFUNDS) and all(status == "completed" for (status,) in runs)


async def drive(
    url: str, database: Database, deliveries: list[tuple[str, str]], seconds: float, alive: object = None
) -> list[tuple[str, str]]:
    """Send what is undelivered, approve what waits, until everything finished, time runs out, or the
    server dies. Returns what could not be delivered."""
    undelivered = [d for d in deliveries if not await post(url, *d)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await finished(database):
        if callable(alive) and not alive():
            break
        await approve_pending(url, database)
        await asyncio.sleep(0.2)
    return undelivered


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_crash_at_any_boundary_loses_nothing_and_repeats_nothing(boundary: str, tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    crash_restart_and_finish(boundary, database, f"sqlite+aiosqlite:///{database}")


@pytest.mark.postgres
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_crash_on_postgresql_loses_nothing_and_repeats_nothing(
    boundary: str, postgres_database: str
) -> None:
    crash_restart_and_finish(boundary, postgres_database, postgres_database)


def crash_restart_and_finish(boundary: str, database: Database, database_url: str) -> None:
    with FakeSlackApi() as slack:
        env = aios_env(database_url, slack.url)
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

    def rows(sql: str) -> list[tuple[object, ...]]:
        return asyncio.run(query(database, sql))

    assert asyncio.run(finished(database)), rows("SELECT id, status FROM run")
    assert rows("SELECT COUNT(*) FROM intent") == [(len(REFUNDS),)]
    # The restarted process forgot the killed one's lease at start, and released its own when it stopped.
    assert rows("SELECT COUNT(*) FROM process_lease") == [(0,)]
    per_action = rows(
        """
        SELECT a.id, COUNT(DISTINCT e.id), COUNT(DISTINCT r.id) FROM proposed_action a
        LEFT JOIN execution e ON e.action_id = a.id AND e.status = 'succeeded'
        LEFT JOIN sandbox_refund r ON r.idempotency_key = e.idempotency_key GROUP BY a.id"""
    )
    assert len(per_action) == len(REFUNDS)
    assert all((executions, refunds) == (1, 1) for _, executions, refunds in per_action), per_action
    assert rows("SELECT COUNT(*) FROM sandbox_refund") == [(len(REFUNDS),)]
    # At least the 4 large refunds waited for the manager (the policy may ask for more), and every wait ended.
    approvals = [str(status) for (status,) in rows("SELECT status FROM approval")]
    assert len(approvals) >= 4 and set(approvals) == {"approved"}, approvals
