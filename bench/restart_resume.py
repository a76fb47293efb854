"""How soon a restarted `aios serve` finishes what a killed one left, at each step boundary.

For each boundary, the real server is started with AIOS_CRASH_AT set and given one refund that reaches it (a
small one the policy allows, or a large one a manager approves before the crash for the boundaries after the
click), so it kills itself (SIGKILL) there. A second server is started on the same database with the default
grace period (60 s); the figure is the time from its /healthz answering 200 until the refund is done, with
nothing more sent to it. Run from the repository root:

    .venv/bin/python -m bench.restart_resume [--repeat 3] [--postgres]

--postgres runs on a throwaway database at AIOS_TEST_POSTGRES_URL instead of a SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from runtime.crashpoints import BOUNDARIES
from tests.conftest import throwaway_postgres
from tests.e2e.test_crash_recovery import Database, post, query
from tests.fakes.aios_process import ServeProcess, aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action

AFTER_THE_CLICK = ("click_stored", "approval_decided", "approval_committed")
DEADLINE_SECONDS = 120.0  # well past the grace period, so a resume that waited for it would still show


async def crash_at(boundary: str, serve: ServeProcess, database: Database) -> None:
    """Send the refund (and the click, where the boundary comes after it) until the server dies there."""
    large = boundary in AFTER_THE_CLICK
    text = "refund $150 on order 1001, broken" if large else "refund $5 on order 1002, late"
    await post(
        serve.url, *app_mention(text, user="U0ALICE", ts="1700003000.000100", event_id=f"Ev{boundary}")
    )
    deadline = time.monotonic() + 20
    while serve.process.poll() is None and time.monotonic() < deadline:
        if large:
            for (approval_id,) in await query(database, "SELECT id FROM approval WHERE status = 'pending'"):
                click = block_action("aios_approve", f"AP-{approval_id}", user="U0MANAGER", message_ts="1.1")
                await post(serve.url, *click)
        await asyncio.sleep(0.05)


async def seconds_until_done(database: Database) -> float:
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_SECONDS:
        if await query(database, "SELECT id FROM execution WHERE status = 'succeeded'"):
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    return float("inf")


def one_round(boundary: str, database: Database, url: str) -> float:
    with FakeSlackApi() as slack:
        env = aios_env(url, slack.url)
        with running_aios_serve({**env, "AIOS_CRASH_AT": boundary}) as doomed:
            asyncio.run(crash_at(boundary, doomed, database))
            doomed.process.wait(10)
            if doomed.process.returncode != -9:
                raise SystemExit(f"the server never reached {boundary}")
        with running_aios_serve(env):  # returns once /healthz answers 200
            return asyncio.run(seconds_until_done(database))


def measure(boundary: str, postgres: str | None) -> float:
    if postgres is None:
        with tempfile.TemporaryDirectory(prefix="aios-bench-") as directory:
            database = Path(directory) / "aios.db"
            return one_round(boundary, database, f"sqlite+aiosqlite:///{database}")
    throwaway = throwaway_postgres(postgres)
    url = asyncio.run(throwaway.__aenter__())
    try:
        return one_round(boundary, url, url)
    finally:
        asyncio.run(throwaway.__aexit__(None, None, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds per boundary")
    parser.add_argument("--postgres", action="store_true", help="use AIOS_TEST_POSTGRES_URL")
    args = parser.parse_args()
    postgres = os.environ.get("AIOS_TEST_POSTGRES_URL") if args.postgres else None
    if args.postgres and not postgres:
        raise SystemExit(
            "--postgres needs AIOS_TEST_POSTGRES_URL, e.g. postgresql+asyncpg://postgres@127.0.0.1/test"
        )
    print(
        f"{'postgresql' if postgres else 'sqlite'}: seconds from the restarted server's /healthz to the refund done"
    )
    for boundary in BOUNDARIES:
        rounds = [measure(boundary, postgres) for _ in range(args.repeat)]
        print(
            f"{boundary:<18} median={statistics.median(rounds):6.2f} s  max={max(rounds):6.2f} s  "
            f"({', '.join(f'{r:.2f}' for r in rounds)})"
        )


if __name__ == "__main__":
    main()
