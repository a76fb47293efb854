"""No transaction of ours waits on another system: while planning asks Shopify or Stripe about what a request
names, none of the bot's PostgreSQL connections is "idle in transaction" (the reads before and after the call
have their transactions, ended before it and begun after it), nor while a task started during a read waits on
its call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import respx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from connectors.stripe_shop import DEFAULT_API_BASE
from storage.records import Intent
from storage.unit_of_work import UnitOfWorkFactory, awaiting_remote, reading_together
from tests.conftest import Clock
from tests.fakes.shopify_api import SHOP, TOKEN, FakeShopify
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import ask, start_aios
from tests.integration.test_stripe import SECRET_KEY, listing
from tests.integration.test_stripe_payments import CHARGE, INTENT

STRIPE_HOST = httpx.URL(DEFAULT_API_BASE).host
# The bot's connections to its database (this test's own), each in a transaction it is not using.
IDLE_IN_TRANSACTION = """
    SELECT query FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'
"""


@pytest.fixture
async def watcher(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to the bot's PostgreSQL database, looking at pg_stat_activity."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("pg_stat_activity is PostgreSQL's")
    connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    yield connection
    await connection.close()


def shopify(router: respx.MockRouter) -> dict[str, str]:
    router.route(host=SHOP).mock(side_effect=FakeShopify().handle)
    return {"SHOPIFY_SHOP": SHOP, "SHOPIFY_ACCESS_TOKEN": TOKEN}


def stripe(router: respx.MockRouter) -> dict[str, str]:
    """pi_3Kettle, paid $120.00 by charge ch_3Kettle, nothing refunded (Stripe's documented shapes)."""
    router.get(f"{DEFAULT_API_BASE}/v1/payment_intents/pi_3Kettle").respond(json=INTENT)
    router.get(f"{DEFAULT_API_BASE}/v1/charges/ch_3Kettle").respond(json=CHARGE)
    router.get(f"{DEFAULT_API_BASE}/v1/refunds").respond(json=listing("/v1/refunds", []))
    return {"STRIPE_API_KEY": SECRET_KEY}


@pytest.fixture
def remote() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.mark.parametrize(
    ("answering", "host", "request_text"),
    [
        (shopify, SHOP, "refund order 1001 $250 arrived broken"),
        (stripe, STRIPE_HOST, "refund $30 of payment pi_3Kettle, lid cracked"),
    ],
)
async def test_no_connection_is_idle_in_transaction_while_planning_waits_on_the_shop_or_stripe(
    watcher: asyncpg.Connection,
    remote: respx.MockRouter,
    answering: Callable[[respx.MockRouter], dict[str, str]],
    host: str,
    request_text: str,
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
) -> None:
    held: list[list[str]] = []

    async def look(_request: httpx.Request) -> None:
        held.append([row["query"] for row in await watcher.fetch(IDLE_IN_TRANSACTION)])
        return None  # not an answer: the next route gives it

    remote.route(url__startswith=f"https://{host}/").mock(side_effect=look)
    settings = answering(remote)
    remote.route().pass_through()
    aios = await start_aios(database_url, slack_api, clock, tmp_path, **settings)
    try:
        await ask(aios, request_text)
    finally:
        await aios.close()
    assert held, f"nothing was asked of {host}"
    assert held == [[]] * len(held)


async def test_no_connection_is_idle_in_transaction_while_a_task_started_by_a_read_waits_on_its_call(
    watcher: asyncpg.Connection, engine: AsyncEngine
) -> None:
    """The call began during the read that started it, which kept the shared transaction to read on; that read
    has ended since, and with it the transaction."""
    units = UnitOfWorkFactory.for_engine(engine)
    calling, answered = asyncio.Event(), asyncio.Event()
    held: list[list[str]] = []

    async def remote_call() -> None:
        async with awaiting_remote():
            calling.set()
            await answered.wait()
            held.append([row["query"] for row in await watcher.fetch(IDLE_IN_TRANSACTION)])

    async with reading_together():
        async with units.read() as uow:
            await uow.session.exec(select(Intent))
            call = asyncio.create_task(remote_call())
            await calling.wait()
        answered.set()
        async with asyncio.timeout(10):
            await call
    assert held == [[]]
