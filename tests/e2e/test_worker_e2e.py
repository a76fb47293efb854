"""`aios serve --no-work` stores intents and acks; `aios worker` processes plan them. One worker on SQLite, two
on PostgreSQL sharing the work with none of it done twice, and a worker killed (SIGKILL) mid-run whose intents
another worker finishes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_crash_recovery import REFUNDS, Database, post, query
from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve, running_aios_worker
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention

SMALL = [text for text, _ in REFUNDS if "$5 " in text or "$6 " in text]  # the policy allows them at once


def mentions(tag: str) -> list[tuple[str, str]]:
    return [
        app_mention(text, user="U0ALICE", ts=f"1700002000.{n:06d}", event_id=f"Ev{tag}{n}")
        for n, text in enumerate(SMALL)
    ]


async def deliver(url: str, deliveries: list[tuple[str, str]]) -> None:
    assert all([await post(url, *delivery) for delivery in deliveries])


async def wait_until_done(database: Database, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = await query(database, "SELECT status FROM run")
        if len(runs) == len(SMALL) and all(status == "completed" for (status,) in runs):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(await query(database, "SELECT id, intent_id, status FROM run"))


async def assert_each_done_once(database: Database) -> None:
    assert await query(database, "SELECT COUNT(*) FROM intent") == [(len(SMALL),)]
    # One run per intent, one succeeded execution and one refund per action.
    assert await query(database, "SELECT COUNT(DISTINCT intent_id), COUNT(*) FROM run") == [(len(SMALL),) * 2]
    per_action = await query(
        database,
        """
        SELECT a.id, COUNT(DISTINCT e.id), COUNT(DISTINCT r.id) FROM proposed_action a
        LEFT JOIN execution e ON e.action_id = a.id AND e.status = 'succeeded'
        LEFT JOIN sandbox_refund r ON r.idempotency_key = e.idempotency_key GROUP BY a.id""",
    )
    assert len(per_action) == len(SMALL)
    assert all((executions, refunds) == (1, 1) for _, executions, refunds in per_action), per_action
    assert await query(database, "SELECT COUNT(*) FROM sandbox_refund") == [(len(SMALL),)]


async def owners(database: Database) -> set[int]:
    return {int(str(owner)) for (owner,) in await query(database, "SELECT DISTINCT owner FROM intent")}


async def lease_of(database: Database, pid: int) -> int:
    [(lease,)] = await query(database, f"SELECT id FROM process_lease WHERE pid = {pid}")
    return int(str(lease))


def test_on_sqlite_the_front_door_only_stores_and_one_worker_plans_everything(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve(env, work=False) as serve:
            asyncio.run(deliver(serve.url, mentions("sqlite")))
            time.sleep(1)
            # Stored and acked, nothing planned: there is no worker yet.
            assert asyncio.run(query(database, "SELECT COUNT(*), COUNT(owner) FROM run")) == [(0, 0)]
            assert asyncio.run(query(database, "SELECT COUNT(*), COUNT(owner) FROM intent")) == [
                (len(SMALL), 0)
            ]
            with running_aios_worker(env) as worker:
                asyncio.run(wait_until_done(database, 30))
                assert asyncio.run(owners(database)) == {asyncio.run(lease_of(database, worker.process.pid))}
    asyncio.run(assert_each_done_once(database))


@pytest.mark.postgres
def test_on_postgresql_two_workers_share_the_intents_and_none_is_planned_twice(
    postgres_database: str,
) -> None:
    with FakeSlackApi() as slack:
        env = aios_env(postgres_database, slack.url)
        with (
            running_aios_serve(env, work=False) as serve,
            running_aios_worker(env) as first,
            running_aios_worker(env) as second,
        ):
            asyncio.run(deliver(serve.url, mentions("pg")))
            asyncio.run(wait_until_done(postgres_database, 30))
            workers = {asyncio.run(lease_of(postgres_database, w.process.pid)) for w in (first, second)}
            assert asyncio.run(owners(postgres_database)) <= workers
    asyncio.run(assert_each_done_once(postgres_database))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_worker_killed_mid_run_leaves_its_intents_to_another(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        database: Database = tmp_path / "aios.db"
        url = f"sqlite+aiosqlite:///{database}"
    else:
        database = url = request.getfixturevalue("postgres_database")
    with FakeSlackApi() as slack:
        env = aios_env(url, slack.url)
        with running_aios_serve(env, work=False) as serve:
            asyncio.run(deliver(serve.url, mentions(backend)))
            doomed = subprocess.Popen(
                [AIOS, "worker"],
                env={**env, "AIOS_CRASH_AT": "run_started"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert doomed.wait(30) == -9, "the worker never reached run_started"
            assert asyncio.run(query(database, "SELECT COUNT(*) FROM intent WHERE owner IS NULL")) != [
                (len(SMALL),)
            ]  # it had claimed some
            with running_aios_worker(env):
                asyncio.run(wait_until_done(database, 30))
    asyncio.run(assert_each_done_once(database))
