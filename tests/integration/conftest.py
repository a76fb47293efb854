from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, select

from bot.bootstrap import Aios, bootstrap
from bot.settings import Settings
from bot.slack_transport import SlackTransport
from connectors.base import Connector
from connectors.registry import ConnectorRegistry
from runtime.handlers import Handlers
from runtime.intake import IncomingIntent
from runtime.messagebus import MessageBus
from runtime.messages import HandleIntent
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import Decision, Execution, ProposedAction
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.weaviate_server import WeaviateServer
from tests.fakes.wordpress_server import WordPressServer, wordpress_site

CHANNEL = "C0SHOP"
REQUESTER = "U0ALICE"
MANAGER = "U0MANAGER"
OTHER_MANAGER = "U0MANAGER2"


def write_policy(directory: Path, budgets: str = "") -> Path:
    path = directory / "policy.yaml"
    path.write_text(f"""
version: 1
roles:
  manager: [U0MANAGER, U0MANAGER2]
  editor: [U0EDITOR]
  finance: [U0FIN1, U0FIN2, U0FIN3]
rules:
  - id: big-refunds-need-two-from-finance
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 300.0
    verdict: require_approval
    approvers: [finance]
    quorum: 2
    timeout: 1h
    escalate_to: [manager]
  - id: refunds-over-100-need-a-manager
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 100.0
    verdict: require_approval
    approvers: [manager]
    forbid_self_approval: true
    timeout: 4h
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
  - id: email-goes-only-to-customers
    when: action.name == "email.send" && !action.params.to.endsWith("@example.com")
    verdict: deny
  - id: no-email-to-customers-who-opted-out
    when: action.name == "email.send" && action.params.to in ["sam@example.com", "lena@example.com"]
    verdict: deny
  - id: customer-emails-need-a-manager
    when: action.name == "email.send"
    verdict: require_approval
    approvers: [manager]
    timeout: 4h
default: require_approval
default_approvers: [manager]
{budgets}
""")
    return path


async def start_aios(
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    budgets: str = "",
    policy: str | None = None,
    **settings: str,
) -> Aios:
    """A bot on the test policy (plus ``budgets``), or on ``policy`` when given."""
    policy_file = write_policy(tmp_path, budgets)
    if policy is not None:
        policy_file.write_text(policy)
    configured = Settings(
        AIOS_DATABASE_URL=database_url,
        AIOS_POLICY_FILE=str(policy_file),
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_API_URL=slack_api.url,
        AIOS_MEMORY_EMBEDDINGS="off",  # the embeddings extra is tested on its own where it is installed
        **settings,  # type: ignore[arg-type]
    )
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    return await bootstrap(configured, SlackTransport(client), clock=clock)


@pytest.fixture
async def aios(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    """Planning offline: no Anthropic key."""
    instance = await start_aios(database_url, slack_api, clock, tmp_path)
    yield instance
    await instance.close()


@pytest.fixture(scope="session")
def wordpress_server() -> Iterator[WordPressServer]:
    """One real WordPress for the whole session (about 2 s to set up)."""
    yield from wordpress_site()


@pytest.fixture
def wordpress(wordpress_server: WordPressServer) -> Iterator[WordPressServer]:
    """The session's WordPress, emptied after each test so that its slugs are free again."""
    yield wordpress_server
    wordpress_server.delete_all_posts()


@pytest.fixture(scope="session")
def weaviate_session() -> Iterator[WeaviateServer]:
    """One local Weaviate (REST and gRPC, in a child process) per session and worker."""
    with WeaviateServer() as server:
        yield server


@pytest.fixture
def weaviate_server(weaviate_session: WeaviateServer) -> Iterator[WeaviateServer]:
    """The session's Weaviate, serving at the start and the end of each test, even one that stopped it."""
    if not weaviate_session.running:
        weaviate_session.start()
    yield weaviate_session
    if not weaviate_session.running:
        weaviate_session.start()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The migrated store's engine, for tests that watch the statements it sends."""
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    """The migrated store alone, for connectors tested without the bot."""
    return UnitOfWorkFactory.for_engine(engine)


@pytest.fixture
def anthropic_api() -> Iterator[FakeAnthropicApi]:
    with FakeAnthropicApi() as api:
        yield api


@pytest.fixture
async def claude_aios(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    """Planning by Claude through the anthropic SDK, against the local fake Messages API."""
    instance = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    yield instance
    await instance.close()


async def ask(
    aios: Aios,
    text: str,
    *,
    user: str = REQUESTER,
    thread_ts: str = "1700000000.000100",
    message_ts: str | None = None,
) -> int:
    """A mention in a thread; by default the mention is the thread's first message."""
    intent_id = await aios.accept(
        IncomingIntent(
            source="mention",
            team_id="T0FAKE",
            channel=CHANNEL,
            thread_ts=thread_ts,
            user=user,
            text=text,
            message_ts=message_ts or thread_ts,
        )
    )
    assert intent_id is not None
    await aios.process(HandleIntent(intent_id))
    return intent_id


def bus_with_connectors(aios: Aios, connectors: Sequence[Connector]) -> MessageBus:
    """The bot's handlers with these connectors in place of the installed ones (everything else as wired)."""
    registry = ConnectorRegistry(connectors)
    base = aios.handlers
    handlers = Handlers(
        units=aios.units,
        dispatcher=base.dispatcher,
        policy=aios.policy,
        registry=registry,
        transport=base.transport,
        clock=base.clock,
        offline=True,
        memory=aios.memory,
        lease=aios.lease,
    )
    bus = MessageBus()
    handlers.register(bus)
    return bus


async def run_with_connectors(
    aios: Aios, connectors: Sequence[Connector], text: str, thread_ts: str = "1.9"
) -> MessageBus:
    """Handle one intent with these connectors in place of the installed ones; the bus, to go on with them."""
    bus = bus_with_connectors(aios, connectors)
    intent_id = await aios.accept(
        IncomingIntent(
            source="mention", team_id="T", channel=CHANNEL, thread_ts=thread_ts, user=REQUESTER, text=text
        )
    )
    assert intent_id is not None
    await bus.handle(HandleIntent(intent_id))
    return bus


async def action_records(aios: Aios) -> list[Execution | ProposedAction | Decision]:
    """Every execution, proposed action and decision: where a leaked secret would be kept."""
    async with aios.units() as uow:
        session = uow.session
        return [
            *(await session.exec(select(Execution))).all(),
            *(await session.exec(select(ProposedAction))).all(),
            *(await session.exec(select(Decision))).all(),
        ]


async def everything_stored(aios: Aios) -> str:
    """Every row of every table, as text: where a leaked secret would be found."""
    async with aios.units() as uow:
        connection = await uow.session.connection()
        rows = [
            row
            for table in SQLModel.metadata.sorted_tables
            for row in (await connection.execute(sqlalchemy.select(table))).all()
        ]
    return "\n".join(repr(tuple(row)) for row in rows)


async def until_waiting_for_locks(engine: AsyncEngine, transactions: int) -> None:
    """Until ``transactions`` transactions of the PostgreSQL database wait for a lock, all at once."""
    waiting = sqlalchemy.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(1000):
        async with engine.connect() as connection:  # a new transaction: the statistics are read afresh
            if (await connection.execute(waiting)).scalar_one() == transactions:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{transactions} transactions never waited for a lock together")
