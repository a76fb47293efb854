"""`aios serve --no-work` stores intents and acks; `aios worker` processes plan them. One worker on SQLite, two
on PostgreSQL sharing the work with none of it done twice, and a worker killed (SIGKILL) mid-run whose intents
another worker finishes. Clicks, on a card or on the App Home, are decided by the front door that stored them,
and one whose front door was killed (SIGKILL) right after the ack is decided by a live worker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_crash_recovery import REFUNDS, Database, post, query
from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve, running_aios_worker
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_home_opened, app_mention, block_action, view_block_action

SMALL = [text for text, _ in REFUNDS if "$5 " in text or "$6 " in text]  # the policy allows them at once
MANAGER = "U0MANAGER"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Database, str]:
    """The database a test inspects, and the URL the processes are given."""
    if backend == "sqlite":
        database = tmp_path / "aios.db"
        return database, f"sqlite+aiosqlite:///{database}"
    url: str = request.getfixturevalue("postgres_database")
    return url, url


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


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_worker_killed_mid_run_leaves_its_intents_to_another(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database, url = store(backend, tmp_path, request)
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


async def wait_for(
    database: Database, sql: str, expected: list[tuple[object, ...]], seconds: float = 30
) -> None:
    deadline = time.monotonic() + seconds
    while (rows := await query(database, sql)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{sql}: {rows}, not {expected}")
        await asyncio.sleep(0.1)


async def asked_for_approval(url: str, database: Database) -> int:
    """A refund the policy sends to a manager, planned by a worker, its card posted: its approval's id."""
    mention = app_mention("refund $150 on order 1001, arrived broken", user="U0ALICE", ts="1.1")
    assert await post(url, *mention)
    await wait_for(database, "SELECT COUNT(*) FROM approval WHERE message_ts IS NOT NULL", [(1,)])
    [(approval_id,)] = await query(database, "SELECT id FROM approval")
    return int(str(approval_id))


async def approved_and_done_once(database: Database, approval_id: int) -> None:
    await wait_for(database, "SELECT status FROM run", [("completed",)])
    await wait_for(database, "SELECT processed_at IS NOT NULL FROM click", [(True,)])
    assert await query(database, f"SELECT status, decided_by FROM approval WHERE id = {approval_id}") == [
        ("approved", MANAGER)
    ]
    assert await query(database, "SELECT status FROM execution") == [("succeeded",)]
    assert await query(database, "SELECT order_id, amount FROM sandbox_refund") == [(1001, 150.0)]
    assert await query(database, "SELECT COUNT(*) FROM decision WHERE kind = 'refusal'") == [(0,)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_split_mode_a_click_on_the_app_home_is_decided_by_the_front_door(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database, url = store(backend, tmp_path, request)
    with FakeSlackApi() as slack:
        env = aios_env(url, slack.url)
        with running_aios_serve(env, work=False) as serve, running_aios_worker(env):
            approval_id = asyncio.run(asked_for_approval(serve.url, database))
            assert asyncio.run(post(serve.url, *app_home_opened(MANAGER)))
            home = view_block_action("aios_approve", f"AP-{approval_id}", user=MANAGER)
            assert asyncio.run(post(serve.url, *home))
            asyncio.run(approved_and_done_once(database, approval_id))
            [(owner,)] = asyncio.run(query(database, "SELECT owner FROM click"))
            assert owner == asyncio.run(lease_of(database, serve.process.pid))
            deadline = time.monotonic() + 15
            while "home_notice" not in str(slack.homes.get(MANAGER, {}).get("blocks", [""])[0]):
                assert time.monotonic() < deadline, slack.homes.get(MANAGER)
                time.sleep(0.1)
        assert slack.homes[MANAGER]["blocks"][0]["text"]["text"] == (
            f":information_source: Your click on `AP-{approval_id}`: approved."
        )
        assert [c.params["text"] for c in slack.calls_to("chat.postEphemeral")] == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_click_acked_by_a_front_door_killed_right_after_is_decided_by_a_live_worker(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database, url = store(backend, tmp_path, request)
    with FakeSlackApi() as slack:
        env = aios_env(url, slack.url)
        with (
            running_aios_worker(env) as worker,
            running_aios_serve({**env, "AIOS_CRASH_AT": "click_stored"}, work=False) as doomed,
        ):
            approval_id = asyncio.run(asked_for_approval(doomed.url, database))
            click = block_action("aios_approve", f"AP-{approval_id}", user=MANAGER, message_ts="1.1")
            # Stored and acked, then the process is killed before the answer is written (as test_click_inbox).
            asyncio.run(post(doomed.url, *click))
            assert doomed.process.wait(10) == -9, "the front door never reached click_stored"
            front_door = asyncio.run(lease_of(database, doomed.process.pid))
            assert asyncio.run(query(database, "SELECT owner FROM click")) == [(front_door,)]
            # Nobody starts the front door again, and nobody clicks again: the worker's sweep decides it.
            asyncio.run(approved_and_done_once(database, approval_id))
            assert asyncio.run(query(database, "SELECT owner FROM click")) == [
                (asyncio.run(lease_of(database, worker.process.pid)),)
            ]
        assert [c.params["text"] for c in slack.calls_to("chat.postEphemeral")] == []


def priority_of_threads(pid: int) -> set[tuple[int, int]]:
    """The niceness and scheduling policy of each of the process's threads (Linux keeps them per thread); a
    thread that ends between being listed and being read (a connection's, closed by its pool) is left out."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.add((int(fields[16]), int(fields[38])))  # proc(5): fields 19 (nice) and 41 (policy)
    return found


@pytest.mark.parametrize(
    ("setting", "nice", "policy"),
    [(None, 10, os.SCHED_OTHER), ("3", 3, os.SCHED_OTHER), ("idle", 19, os.SCHED_IDLE)],
)
def test_a_worker_plans_at_a_lower_cpu_priority_than_the_front_door(
    tmp_path: Path, setting: str | None, nice: int, policy: int
) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path / 'aios.db'}", slack.url)
        if setting is not None:
            env["AIOS_WORKER_NICE"] = setting
        with running_aios_serve(env, work=False) as serve, running_aios_worker(env) as worker:
            # Every thread of the worker, SQLite's included; the front door as it was started.
            assert priority_of_threads(worker.process.pid) == {(max(nice, own), policy)}
            assert priority_of_threads(serve.process.pid) == {(own, os.SCHED_OTHER)}
            # At its priority, whatever it is, the worker does the work.
            asyncio.run(deliver(serve.url, mentions(setting or "default")))
            asyncio.run(wait_until_done(tmp_path / "aios.db", 30))
    asyncio.run(assert_each_done_once(tmp_path / "aios.db"))
