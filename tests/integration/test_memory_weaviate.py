"""Weaviate as memory's search index: the index always ends up holding exactly what the record holds (writes,
forgets, expiry, caps, summaries, an outage, a crash between commit and push), with our vectors, in one tenant
per team. Against a local server speaking Weaviate's REST and gRPC protocols, or a real Weaviate when
WEAVIATE_URL is set (the outage test needs the local one: it stops and restarts it)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import weaviate
from sqlmodel import func, select
from weaviate.classes.init import Auth

from bot.memory_setup import open_memory_store
from bot.settings import Settings
from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore, Retention
from storage.memory.weaviate import COLLECTION, GRPC_PORT, IndexedMemoryStore, WeaviateIndex
from storage.migrate import upgrade_to_head
from storage.records import Incident, Memory, MemoryIndexQueue
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.weaviate_server import WeaviateServer
from tests.integration.conftest import ask, start_aios

SHOP, STUDIO = "T0SHOP", "T0STUDIO"
RETENTION = Retention(
    ttl={"chatter": timedelta(days=7)}, cap={"customer": 2}, summarise_after=timedelta(days=30)
)
WEAVIATE_URL = os.environ.get("WEAVIATE_URL")


class WordHashEmbedder:
    """A small deterministic embedder: each word hashed into one of 32 dimensions, unit length. Texts that share
    words are near each other, which is all hybrid search needs to be exercised."""

    model = "word-hash-32"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(text) for text in texts]

    @staticmethod
    def vector(text: str) -> list[float]:
        vector = [0.0] * 32
        for word in re.findall(r"\w+", text.lower()):
            vector[hashlib.sha256(word.encode()).digest()[0] % 32] += 1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]


@dataclass
class Where:
    url: str
    grpc_port: int
    server: WeaviateServer | None  # the local one, which a test may stop and start
    api_key: str | None = None


@pytest.fixture
def where(request: pytest.FixtureRequest) -> Where:
    """The real Weaviate WEAVIATE_URL names, or the session's local server (running again after a test that
    stopped it; each test has a collection of its own)."""
    if WEAVIATE_URL:
        grpc_port = int(os.environ.get("WEAVIATE_GRPC_PORT", GRPC_PORT))
        return Where(WEAVIATE_URL, grpc_port, None, os.environ.get("WEAVIATE_API_KEY"))
    server: WeaviateServer = request.getfixturevalue("weaviate_server")
    return Where(server.url, server.grpc_port, server)


@pytest.fixture
async def units(database_url: str) -> AsyncIterator[UnitOfWorkFactory]:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    yield UnitOfWorkFactory.for_engine(engine)
    await engine.dispose()


@pytest.fixture
def collection() -> str:
    return f"AiosMemoryTest{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(where: Where) -> AsyncIterator[Any]:
    """Our own client on the same server: what the index holds, seen without the store."""
    url = urlparse(where.url)
    host, secure = url.hostname or "127.0.0.1", url.scheme == "https"
    client = weaviate.use_async_with_custom(
        http_host=host,
        http_port=url.port or (443 if secure else 8080),
        http_secure=secure,
        grpc_host=host,
        grpc_port=where.grpc_port,
        grpc_secure=secure,
        auth_credentials=Auth.api_key(where.api_key) if where.api_key else None,
    )
    await client.connect()
    yield client
    await client.close()


def index_for(where: Where, collection: str) -> WeaviateIndex:
    return WeaviateIndex(where.url, where.api_key, grpc_port=where.grpc_port, collection=collection)


@pytest.fixture
async def store(
    where: Where, units: UnitOfWorkFactory, clock: Clock, collection: str
) -> AsyncIterator[IndexedMemoryStore]:
    store = IndexedMemoryStore(
        units, index_for(where, collection), clock, RETENTION, WordHashEmbedder(), reconnect_wait=(0.05, 0.2)
    )
    await store.start()
    await back_up(store)  # a new collection is filled in the background
    yield store
    await store.close()


async def indexed(client: Any, collection: str, team: str) -> dict[int, Any]:
    """Every object in the team's tenant, by memory id, with its vector."""
    tenants = await client.collections.use(collection).tenants.get()
    if team not in tenants:
        return {}
    tenant = client.collections.use(collection).with_tenant(team)
    return {int(obj.properties["memory_id"]): obj async for obj in tenant.iterator(include_vector=True)}


async def recorded(units: UnitOfWorkFactory, team: str) -> set[int]:
    async with units() as uow:
        ids = (await uow.session.exec(select(Memory.id).where(Memory.team_id == team))).all()
    return {i for i in ids if i is not None}


async def queued(units: UnitOfWorkFactory) -> int:
    async with units() as uow:
        return int((await uow.session.exec(select(func.count()).select_from(MemoryIndexQueue))).one())


async def assert_in_step(units: UnitOfWorkFactory, client: Any, collection: str, *teams: str) -> None:
    assert await queued(units) == 0
    for team in teams:
        assert set(await indexed(client, collection, team)) == await recorded(units, team), team


async def back_up(store: IndexedMemoryStore) -> None:
    """Wait for the store's reconnection (it retries every 0.05–0.2 s here)."""
    for _ in range(400):
        if store.index_up:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the store did not reconnect within 20 s")


async def test_forget_expiry_caps_and_summaries_keep_the_index_equal_to_the_record(
    store: IndexedMemoryStore, units: UnitOfWorkFactory, client: Any, collection: str, clock: Clock
) -> None:
    notes = [
        (await store.remember(SHOP, f"order 1003 note {n}", kind="decision", key="order:1003"))[0]
        for n in range(3)
    ]
    chatter, _ = await store.remember(SHOP, "the coffee machine is broken again", kind="chatter")
    customers = []
    for n in range(4):
        customers.append((await store.remember(SHOP, f"customer fact number {n}", kind="customer"))[0])
        clock.advance(minutes=1)
    await store.remember(STUDIO, "the studio's order 1003 is a print")
    await assert_in_step(units, client, collection, SHOP, STUDIO)
    assert {chatter, *notes, *customers} <= set(await indexed(client, collection, SHOP))

    assert await store.forget(SHOP, notes[0]) is True
    await assert_in_step(units, client, collection, SHOP)

    clock.advance(days=31)
    counts = await store.maintain()
    assert counts == {"expired": 1, "summarised": 2, "over_cap": 2}
    await assert_in_step(units, client, collection, SHOP, STUDIO)
    held = await indexed(client, collection, SHOP)
    assert chatter not in held and not set(notes) & set(held)  # expired, summarised away
    assert not set(customers[:2]) & set(held)  # beyond the cap
    [summary] = [obj for obj in held.values() if obj.properties["kind"] == "summary"]
    assert "order 1003 note 1" in summary.properties["text"]


async def test_summaries_are_found_by_search(store: IndexedMemoryStore, clock: Clock) -> None:
    for n in range(2):
        await store.remember(
            SHOP, f"grinder order 1005 left the warehouse {n}", kind="decision", key="order:1005"
        )
    clock.advance(days=31)
    assert (await store.maintain())["summarised"] == 2
    [hit] = await store.search(SHOP, "grinder warehouse")
    assert hit.kind == "summary" and hit.tier == "hybrid"


async def test_the_index_holds_our_own_vectors(
    store: IndexedMemoryStore, client: Any, collection: str
) -> None:
    text = "Ana Lima's blender arrived cracked"
    memory_id, _ = await store.remember(SHOP, text)
    vector = (await indexed(client, collection, SHOP))[memory_id].vector["default"]
    assert vector == pytest.approx(WordHashEmbedder.vector(text), abs=1e-6)


async def test_hybrid_search_honours_kind_and_time_filters(store: IndexedMemoryStore, clock: Clock) -> None:
    await store.remember(SHOP, "packaging uses recycled paper", kind="note")
    clock.advance(days=10)
    since = clock.now
    recent, _ = await store.remember(SHOP, "packaging now uses compostable tape", kind="note")
    post, _ = await store.remember(SHOP, "packaging story for the blog", kind="post")
    await store.remember(SHOP, "the packaging voice is plain", kind="brand_voice")

    hits = await store.search(SHOP, "packaging", kinds=["post"])
    assert [h.id for h in hits] == [post] and hits[0].tier == "hybrid"
    assert {h.id for h in await store.search(SHOP, "packaging", kinds=["note"], since=since)} == {recent}
    assert [h.kind for h in await store.search(SHOP, "packaging voice", kinds=["voice"])] == []


async def test_each_team_is_its_own_tenant_created_by_the_bot(
    store: IndexedMemoryStore, client: Any, collection: str
) -> None:
    secret, _ = await store.remember(SHOP, "the supplier discount code is SPRING24")
    theirs, _ = await store.remember(STUDIO, "the studio's discount code is different")

    config = await client.collections.use(collection).config.get()
    assert config.multi_tenancy_config.enabled and not config.multi_tenancy_config.auto_tenant_creation
    assert set(await client.collections.use(collection).tenants.get()) == {SHOP, STUDIO}
    assert set(await indexed(client, collection, SHOP)) == {secret}
    assert set(await indexed(client, collection, STUDIO)) == {theirs}
    assert [h.id for h in await store.search(STUDIO, "discount code SPRING24")] == [theirs]
    assert await store.forget(STUDIO, secret) is False
    assert set(await indexed(client, collection, SHOP)) == {secret}


async def test_an_outage_queues_writes_serves_searches_from_sql_and_drains_when_weaviate_is_back(
    where: Where, store: IndexedMemoryStore, units: UnitOfWorkFactory, client: Any, collection: str
) -> None:
    if where.server is None:
        pytest.skip("stopping Weaviate needs the local server (WEAVIATE_URL is set)")
    kept, _ = await store.remember(SHOP, "Sam's skillet ships from Lisbon")
    gone, _ = await store.remember(SHOP, "Sam's kettle ships from Porto")

    where.server.stop()
    hits = await store.search(SHOP, "skillet Lisbon")
    assert hits[0].id == kept and hits[0].tier == "hybrid"  # SQL's own keywords and vectors
    assert not store.index_up
    new, _ = await store.remember(SHOP, "Sam's wok ships from Madrid")
    assert await store.forget(SHOP, gone) is True
    assert (await store.search(SHOP, "wok Madrid"))[0].id == new
    assert await queued(units) == 2
    async with units() as uow:
        incidents = (await uow.session.exec(select(Incident).where(Incident.kind == "memory"))).all()
    assert len(incidents) == 1  # one outage, one incident, however many searches and writes

    where.server.start()
    await back_up(store)
    await assert_in_step(units, client, collection, SHOP)
    assert set(await indexed(client, collection, SHOP)) == {kept, new}
    assert (await store.search(SHOP, "wok Madrid"))[0].id == new


async def test_a_store_started_after_a_crash_pushes_what_was_committed_but_not_indexed(
    where: Where, units: UnitOfWorkFactory, client: Any, collection: str, clock: Clock
) -> None:
    crashed = IndexedMemoryStore(units, index_for(where, collection), clock, RETENTION, WordHashEmbedder())
    # Never connected nor started: its writes commit with their queue rows, and the push never happens, as
    # when a process dies right after a commit.
    first, _ = await crashed.remember(SHOP, "order 1007 was a gift")
    second, _ = await crashed.remember(SHOP, "order 1008 ships late")
    await crashed.forget(SHOP, first)
    assert await queued(units) == 3

    started = IndexedMemoryStore(units, index_for(where, collection), clock, RETENTION, WordHashEmbedder())
    await started.start()
    try:
        await back_up(started)  # the new collection is filled in the background
        await assert_in_step(units, client, collection, SHOP)
        assert set(await indexed(client, collection, SHOP)) == {second}
    finally:
        await started.close()


async def test_weaviate_down_at_start_serves_from_sql_then_reconnects(
    where: Where, units: UnitOfWorkFactory, client: Any, collection: str, clock: Clock
) -> None:
    if where.server is None:
        pytest.skip("stopping Weaviate needs the local server (WEAVIATE_URL is set)")
    where.server.stop()
    store = IndexedMemoryStore(
        units, index_for(where, collection), clock, RETENTION, reconnect_wait=(0.05, 0.2)
    )
    await store.start()
    try:
        assert not store.index_up
        memory_id, _ = await store.remember(SHOP, "the Berlin warehouse closes at six")
        hits = await store.search(SHOP, "Berlin warehouse")
        assert [h.id for h in hits] == [memory_id] and hits[0].tier == "keyword"

        where.server.start()
        await back_up(store)
        await assert_in_step(units, client, collection, SHOP)
        assert set(await indexed(client, collection, SHOP)) == {memory_id}
    finally:
        await store.close()


async def test_the_bot_starts_with_weaviate_down_and_uses_it_once_it_is_up(
    where: Where, units: UnitOfWorkFactory, client: Any, clock: Clock
) -> None:
    if where.server is None:
        pytest.skip("stopping Weaviate needs the local server (WEAVIATE_URL is set)")
    await client.collections.delete(COLLECTION)  # another test's memories in the bot's collection
    where.server.stop()
    settings = Settings(
        _env_file=None,
        WEAVIATE_URL=where.url,
        WEAVIATE_GRPC_PORT=str(where.grpc_port),
        AIOS_MEMORY_EMBEDDINGS="off",
    )
    store = await open_memory_store(settings, units, clock, RETENTION)
    try:
        assert isinstance(store, IndexedMemoryStore) and not store.index_up
        memory_id, _ = await store.remember(SHOP, "the Lisbon warehouse closes at five")
        assert [h.id for h in await store.search(SHOP, "Lisbon warehouse")] == [memory_id]

        where.server.start()
        await back_up(store)
        await assert_in_step(units, client, COLLECTION, SHOP)
    finally:
        await store.close()


async def test_memories_from_before_weaviate_are_indexed_when_it_is_first_used(
    where: Where, units: UnitOfWorkFactory, client: Any, collection: str, clock: Clock
) -> None:
    embedded = EmbeddedMemoryStore(units, clock, RETENTION)
    before = {(await embedded.remember(team, f"{team} ships on Fridays"))[0] for team in (SHOP, STUDIO)}

    store = IndexedMemoryStore(units, index_for(where, collection), clock, RETENTION)
    await store.start()
    try:
        await back_up(store)
        await assert_in_step(units, client, collection, SHOP, STUDIO)
        assert (
            set(await indexed(client, collection, SHOP)) | set(await indexed(client, collection, STUDIO))
            == before
        )
    finally:
        await store.close()


async def test_a_weaviate_that_comes_back_empty_is_filled_again_from_the_record(
    where: Where, store: IndexedMemoryStore, units: UnitOfWorkFactory, client: Any, collection: str
) -> None:
    if where.server is None:
        pytest.skip("emptying Weaviate needs the local server (WEAVIATE_URL is set)")
    first, _ = await store.remember(SHOP, "the blender is out of stock")
    second, _ = await store.remember(STUDIO, "the print run is late")

    where.server.restart(keep_data=False)
    third, _ = await store.remember(SHOP, "the kettle is back in stock")  # its push finds no collection
    await back_up(store)
    await assert_in_step(units, client, collection, SHOP, STUDIO)
    assert set(await indexed(client, collection, SHOP)) == {first, third}
    assert set(await indexed(client, collection, STUDIO)) == {second}


class HeldIndex(WeaviateIndex):
    """Weaviate, with writes that wait until the test lets them through: a push caught between reading the record
    and writing the index."""

    def __init__(self, where: Where, collection: str) -> None:
        super().__init__(where.url, where.api_key, grpc_port=where.grpc_port, collection=collection)
        self.reached, self.release = asyncio.Event(), asyncio.Event()

    async def put(self, team: str, memories: Sequence[Memory], vector_model: str | None = None) -> None:
        self.reached.set()
        await self.release.wait()
        await super().put(team, memories, vector_model)


async def test_a_push_overtaken_by_another_process_forgetting_leaves_the_index_equal_to_the_record(
    where: Where, database_url: str, units: UnitOfWorkFactory, client: Any, collection: str, clock: Clock
) -> None:
    other_engine = create_engine(database_url)  # another process on the same database
    other = IndexedMemoryStore(
        UnitOfWorkFactory.for_engine(other_engine), index_for(where, collection), clock, RETENTION
    )
    held = HeldIndex(where, collection)
    slow = IndexedMemoryStore(units, held, clock, RETENTION)
    try:
        await other.start()
        await back_up(other)
        crashed = IndexedMemoryStore(units, index_for(where, collection), clock, RETENTION)
        memory_id, _ = await crashed.remember(SHOP, "order 1011 ships on Monday")  # committed, not pushed

        starting = asyncio.create_task(slow.start())  # reads the record (the memory is there), then waits
        await held.reached.wait()
        forgetting = asyncio.create_task(other.forget(SHOP, memory_id))
        # On SQLite the forget's push runs at once and removes the memory before the held write lands; on
        # PostgreSQL it waits for the held push's turn to end.
        await asyncio.wait({forgetting}, timeout=2)
        held.release.set()
        await starting
        assert await forgetting is True

        await assert_in_step(units, client, collection, SHOP)
        assert memory_id not in await indexed(client, collection, SHOP)
    finally:
        await slow.close()
        await other.close()
        await other_engine.dispose()


class ShortEmbedder(WordHashEmbedder):
    """Another model, making vectors of another length than the collection's first ones."""

    model = "word-hash-8"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(text)[:8] for text in texts]


async def test_a_memory_weaviate_refuses_is_parked_and_the_queue_moves_on(
    where: Where,
    store: IndexedMemoryStore,
    units: UnitOfWorkFactory,
    client: Any,
    collection: str,
    clock: Clock,
) -> None:
    first, _ = await store.remember(SHOP, "the kettle ships on Monday")  # SHOP's vectors are 32 long
    other = IndexedMemoryStore(units, index_for(where, collection), clock, RETENTION, ShortEmbedder())
    await other.start()
    try:
        refused, _ = await other.remember(SHOP, "the teapot ships on Tuesday")  # 8 long: refused
        studio, _ = await other.remember(STUDIO, "the print run ships on Friday")  # a tenant of its own
        later, _ = await store.remember(SHOP, "the skillet ships on Thursday")
        assert other.index_up and store.index_up
        assert set(await indexed(client, collection, SHOP)) == {first, later}
        assert set(await indexed(client, collection, STUDIO)) == {studio}
        assert await queued(units) == 1  # parked for a day
        async with units() as uow:
            [incident] = (await uow.session.exec(select(Incident).where(Incident.kind == "memory"))).all()
        assert f"M-{refused}" in incident.detail and "length 8" in incident.detail

        clock.advance(days=1, seconds=1)
        await other.remember(STUDIO, "the poster ships on Saturday")  # the push retries the parked memory
        assert await queued(units) == 1 and refused not in await indexed(client, collection, SHOP)
        assert await other.forget(SHOP, refused)
        clock.advance(days=1, seconds=1)
        await other.remember(STUDIO, "the frame ships on Sunday")
        await assert_in_step(units, client, collection, SHOP, STUDIO)
    finally:
        await other.close()


async def test_a_team_id_weaviate_would_refuse_as_a_tenant_name_gets_one_it_takes(
    store: IndexedMemoryStore, client: Any, collection: str
) -> None:
    odd = "acme corp/ünïcode"
    memory_id, _ = await store.remember(odd, "acme's orders ship from Leeds")
    assert store.index_up
    [tenant] = await client.collections.use(collection).tenants.get()
    assert re.fullmatch(r"t-[0-9a-f]{40}", tenant)
    [hit] = await store.search(odd, "shipping from leeds")
    assert hit.id == memory_id and hit.tier == "hybrid"


async def test_a_collection_made_before_stemming_gains_the_property_and_is_filled_again(
    where: Where, units: UnitOfWorkFactory, client: Any, collection: str, clock: Clock
) -> None:
    from weaviate.classes.config import Configure, DataType, Property, Tokenization

    await client.collections.create(
        collection,
        multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=False),
        vector_config=Configure.Vectors.self_provided(),
        properties=[
            Property(name="memory_id", data_type=DataType.INT, skip_vectorization=True),
            Property(name="text", data_type=DataType.TEXT),
            Property(name="kind", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            Property(name="key", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
            Property(name="created_at", data_type=DataType.DATE, skip_vectorization=True),
        ],
    )
    refunded, _ = await EmbeddedMemoryStore(units, clock).remember(SHOP, "Order 1003 was refunded in full")
    store = IndexedMemoryStore(units, index_for(where, collection), clock, reconnect_wait=(0.05, 0.2))
    await store.start()
    try:
        await back_up(store)
        config = await client.collections.use(collection).config.get()
        assert "stemmed" in {prop.name for prop in config.properties}
        [hit] = await store.search(SHOP, "refund")
        assert hit.id == refunded and hit.tier == "keyword"
    finally:
        await store.close()


class SlowIndex(WeaviateIndex):
    """Weaviate with writes that wait until the test lets them through: a long fill of a new collection."""

    def __init__(self, where: Where, collection: str) -> None:
        super().__init__(where.url, where.api_key, grpc_port=where.grpc_port, collection=collection)
        self.release = asyncio.Event()

    async def put(self, team: str, memories: Sequence[Memory], vector_model: str | None = None) -> None:
        await self.release.wait()
        await super().put(team, memories, vector_model)


async def test_filling_a_new_collection_keeps_neither_start_nor_the_first_command_waiting(
    where: Where, units: UnitOfWorkFactory, client: Any, collection: str, clock: Clock
) -> None:
    from storage.memory.weaviate import PUSH_BATCH

    embedded = EmbeddedMemoryStore(units, clock)
    await embedded.import_records(SHOP, [{"text": f"kettle note {n}"} for n in range(PUSH_BATCH)])
    before, _ = await embedded.remember(SHOP, "the blender ships from Lisbon")
    first = IndexedMemoryStore(units, SlowIndex(where, collection), clock, reconnect_wait=(0.05, 0.2))
    async with asyncio.timeout(5):
        await first.start()
        assert not first.index_up  # SQL answers meanwhile
        new, _ = await first.remember(SHOP, "the kettle ships from Porto")
        assert [h.id for h in await first.search(SHOP, "blender Lisbon")] == [before]
        await first.close()  # a command ends before the fill does

    index = SlowIndex(where, collection)
    store = IndexedMemoryStore(units, index, clock, reconnect_wait=(0.05, 0.2))
    try:
        async with asyncio.timeout(5):
            await store.start()  # the collection exists, and the queue is longer than one push
            assert not store.index_up
        index.release.set()
        await back_up(store)
        await assert_in_step(units, client, collection, SHOP)
        assert {before, new} <= set(await indexed(client, collection, SHOP))
    finally:
        await store.close()


async def test_the_store_writes_no_memory_within_another_transaction(
    store: IndexedMemoryStore, units: UnitOfWorkFactory
) -> None:
    """Its index is pushed after its own commit: a memory committed with someone else's work would wait."""
    async with units() as uow:
        assert await store.prepare(SHOP, "the Lisbon warehouse closes at five") is None
        await uow.commit()
    assert await recorded(units, SHOP) == set() and await queued(units) == 0


async def test_an_executed_actions_outcome_is_remembered_after_its_booking_and_indexed(
    where: Where,
    units: UnitOfWorkFactory,
    client: Any,
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
) -> None:
    await client.collections.delete(COLLECTION)  # another test's memories in the bot's collection
    weaviate = {"WEAVIATE_URL": where.url, "WEAVIATE_GRPC_PORT": str(where.grpc_port)}
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        **weaviate,
        **({"WEAVIATE_API_KEY": where.api_key} if where.api_key else {}),
    )
    try:
        assert isinstance(aios.memory, IndexedMemoryStore)
        await back_up(aios.memory)  # the new collection is filled in the background
        await ask(aios, "refund $20 on order 1003, the lid cracked")
        [memory] = await aios.memory.lookup("T0FAKE", "order:1003")
        assert "refunded $20.00 on order 1003" in memory.text
        await assert_in_step(units, client, COLLECTION, "T0FAKE")
    finally:
        await aios.close()
