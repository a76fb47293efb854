"""Two `aios serve` processes sharing one PostgreSQL database: the same event and the same click, delivered
many times to both at once, each take effect once."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.engine import make_url

from tests.e2e.test_crash_recovery import post
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action

COPIES = 10  # per server


async def fetch(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


async def everywhere(urls: list[str], body: str, content_type: str) -> int:
    results = await asyncio.gather(*(post(url, body, content_type) for url in urls for _ in range(COPIES)))
    return sum(results)


async def wait_for(url: str, sql: str, expected: object, seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.1)):
        if [tuple(r) for r in await fetch(url, sql)] == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{sql} never gave {expected}: {[tuple(r) for r in await fetch(url, sql)]}")


def test_duplicate_deliveries_across_two_replicas_take_effect_once(postgres_database: str) -> None:
    with FakeSlackApi() as slack:
        env = aios_env(postgres_database, slack.url)
        with running_aios_serve(env) as first, running_aios_serve(env) as second:
            urls = [first.url, second.url]
            asyncio.run(scenario(urls, postgres_database))


async def scenario(urls: list[str], database: str) -> None:
    big = app_mention(
        "refund order 1001, $250, broken", user="U0ALICE", ts="1700002000.000100", event_id="EvBIG"
    )
    small = app_mention(
        "refund $20 on order 1002, late", user="U0ALICE", ts="1700002000.000200", event_id="EvSMALL"
    )
    delivered = await everywhere(urls, *big) + await everywhere(urls, *small)
    await wait_for(database, "SELECT COUNT(*) FROM approval WHERE status = 'pending'", [(1,)])
    [(approval_id,)] = [tuple(r) for r in await fetch(database, "SELECT id FROM approval")]
    clicks = await everywhere(
        urls, *block_action("aios_approve", f"AP-{approval_id}", user="U0MANAGER", message_ts="1.1")
    )
    await wait_for(database, "SELECT COUNT(*) FROM execution WHERE status = 'succeeded'", [(2,)])
    await asyncio.sleep(1)  # let any late duplicate finish before counting
    assert (delivered, clicks) == (4 * COPIES, 2 * COPIES)
    assert [tuple(r) for r in await fetch(database, "SELECT COUNT(*) FROM intent")] == [(2,)]
    assert [tuple(r) for r in await fetch(database, "SELECT COUNT(*) FROM execution")] == [(2,)]
    refunds = [
        tuple(r)
        for r in await fetch(database, "SELECT order_id, amount FROM sandbox_refund ORDER BY order_id")
    ]
    assert refunds == [(1001, 250.0), (1002, 20.0)]
    print(
        f"\n{delivered} event deliveries and {clicks} clicks across 2 replicas → 2 intents, 2 executions, 2 refunds"
    )
