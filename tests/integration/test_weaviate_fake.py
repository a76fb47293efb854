"""The local Weaviate server, driven only through the real weaviate-client: what AIOS's memory index does
(the collection it creates, tenants, inserts with its own vectors, BM25, hybrid with filters, near_vector,
deletes), ranking as Weaviate ranks, the errors a real server gives, and a restart."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization
from weaviate.classes.query import Filter, FilterReturn, MetadataQuery, Sort
from weaviate.client import WeaviateAsyncClient
from weaviate.collections import CollectionAsync
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateConnectionError,
    WeaviateDeleteManyError,
    WeaviateInsertManyAllFailedError,
    WeaviateQueryError,
)

from tests.fakes.weaviate_rest import SERVER_VERSION
from tests.fakes.weaviate_server import HOST, WeaviateServer

SHOP, STUDIO = "T0SHOP", "T0STUDIO"
NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def connect(server: WeaviateServer) -> WeaviateAsyncClient:
    return weaviate.use_async_with_custom(
        http_host=HOST,
        http_port=server.http_port,
        http_secure=False,
        grpc_host=HOST,
        grpc_port=server.grpc_port,
        grpc_secure=False,
    )


@pytest.fixture
async def client(weaviate_server: WeaviateServer) -> AsyncIterator[WeaviateAsyncClient]:
    client = connect(weaviate_server)
    await client.connect()
    yield client
    await client.close()


async def create_memory_collection(
    client: WeaviateAsyncClient, *, auto_tenant_creation: bool = True
) -> CollectionAsync:
    """The collection WeaviateIndex creates: one tenant per team, the bot's own vectors."""
    name = f"AiosMemoryFake{uuid.uuid4().hex[:8]}"
    return await client.collections.create(
        name,
        multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=auto_tenant_creation),
        vector_config=Configure.Vectors.self_provided(),
        properties=[
            Property(name="memory_id", data_type=DataType.INT, skip_vectorization=True),
            Property(name="text", data_type=DataType.TEXT),
            Property(name="kind", data_type=DataType.TEXT, skip_vectorization=True),
            Property(name="key", data_type=DataType.TEXT, skip_vectorization=True),
            Property(name="created_at", data_type=DataType.DATE, skip_vectorization=True),
        ],
    )


@pytest.fixture
async def memories(client: WeaviateAsyncClient) -> AsyncIterator[CollectionAsync]:
    collection = await create_memory_collection(client)
    yield collection
    await client.collections.delete(collection.name)


async def remember(
    collection: CollectionAsync,
    team: str,
    memory_id: int,
    text: str,
    vector: list[float],
    *,
    kind: str = "note",
    created_at: datetime = NOW,
) -> uuid.UUID:
    return await collection.with_tenant(team).data.insert(
        properties={"memory_id": memory_id, "text": text, "kind": kind, "key": "", "created_at": created_at},
        vector=vector,
    )


async def test_the_client_connects_and_creates_the_collection_aios_uses(
    client: WeaviateAsyncClient, weaviate_server: WeaviateServer
) -> None:
    assert (await client.get_meta())["version"] == SERVER_VERSION
    assert await client.is_ready()
    name = f"AiosMemoryFake{uuid.uuid4().hex[:8]}"
    assert await client.collections.exists(name) is False
    collection = await create_memory_collection(client)
    assert await client.collections.exists(collection.name)

    config = await collection.config.get()
    assert config.multi_tenancy_config.enabled and config.multi_tenancy_config.auto_tenant_creation
    assert {p.name: p.data_type.value for p in config.properties} == {
        "memory_id": "int",
        "text": "text",
        "kind": "text",
        "key": "text",
        "created_at": "date",
    }
    assert config.vector_config is not None and list(config.vector_config) == ["default"]
    assert collection.name in await client.collections.list_all()

    with pytest.raises(UnexpectedStatusCodeError, match="already exists") as exists:
        await client.collections.create(collection.name)
    assert exists.value.status_code == 422
    await collection.config.update(description="long-term memory")
    await collection.config.add_property(Property(name="source", data_type=DataType.TEXT))
    config = await collection.config.get()
    assert config.description == "long-term memory" and "source" in [p.name for p in config.properties]
    await client.collections.delete(collection.name)
    assert await client.collections.exists(collection.name) is False


async def test_tenants_are_created_listed_checked_and_removed(memories: CollectionAsync) -> None:
    await memories.tenants.create([SHOP, STUDIO])
    await memories.tenants.create(SHOP)  # creating one that exists changes nothing
    assert set(await memories.tenants.get()) == {SHOP, STUDIO}
    assert await memories.tenants.exists(SHOP) and not await memories.tenants.exists("T0NOBODY")
    shop = await memories.tenants.get_by_name(SHOP)
    assert shop is not None and shop.activity_status.value == "ACTIVE"
    assert await memories.tenants.get_by_name("T0NOBODY") is None
    await memories.tenants.remove(STUDIO)
    assert list(await memories.tenants.get()) == [SHOP]

    await memories.tenants.deactivate(SHOP)
    with pytest.raises(WeaviateQueryError, match="tenant not active: 'T0SHOP'"):
        await memories.with_tenant(SHOP).query.bm25("anything")
    await memories.tenants.activate(SHOP)
    assert (await memories.with_tenant(SHOP).query.bm25("anything")).objects == []


async def test_objects_round_trip_with_their_types_and_are_updated_and_replaced(
    client: WeaviateAsyncClient, memories: CollectionAsync
) -> None:
    object_id = await remember(
        memories, SHOP, 7, "Lena's grinder is a gift", [0.25, 0.5, 1.0], kind="customer"
    )
    shop = memories.with_tenant(SHOP)
    stored = await shop.query.fetch_object_by_id(object_id, include_vector=True)
    assert stored is not None
    assert stored.properties == {
        "memory_id": 7,
        "text": "Lena's grinder is a gift",
        "kind": "customer",
        "key": "",
        "created_at": NOW,
    }
    assert isinstance(stored.properties["memory_id"], int)
    assert stored.vector == {"default": [0.25, 0.5, 1.0]}
    assert await shop.data.exists(object_id)
    with pytest.raises(UnexpectedStatusCodeError, match="already exists"):
        await shop.data.insert({"memory_id": 8, "text": "again"}, uuid=object_id)

    await shop.data.update(object_id, properties={"kind": "decision"})
    rest = await client.debug.get_object_over_rest(memories.name, object_id, tenant=SHOP)
    assert rest is not None and rest.properties["kind"] == "decision" and rest.properties["memory_id"] == 7
    await shop.data.replace(
        object_id, properties={"memory_id": 9, "text": "replaced"}, vector=[1.0, 0.0, 0.0]
    )
    replaced = await shop.query.fetch_object_by_id(object_id, include_vector=True)
    assert replaced is not None and replaced.properties == {"memory_id": 9, "text": "replaced"}
    assert replaced.vector == {"default": [1.0, 0.0, 0.0]}
    with pytest.raises(UnexpectedStatusCodeError, match="invalid integer property 'memory_id'") as invalid:
        await shop.data.insert({"memory_id": "seven", "text": "not a number"})
    assert invalid.value.status_code == 422

    # Auto-schema, on by default: properties the schema lacks are added with the type of their first value.
    await shop.data.insert(
        {"text": "auto", "rating": 3, "seen_at": "2026-03-01T12:00:00Z", "source": "thread"}
    )
    types = {p.name: p.data_type.value for p in (await memories.config.get()).properties}
    assert (types["rating"], types["seen_at"], types["source"]) == ("number", "date", "text")


async def test_bm25_ranks_by_word_with_weaviate_scores(client: WeaviateAsyncClient) -> None:
    collection = await client.collections.create(
        f"Fruit{uuid.uuid4().hex[:8]}",
        vector_config=Configure.Vectors.self_provided(),
        properties=[
            Property(name="text", data_type=DataType.TEXT),
            Property(name="kind", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
        ],
    )
    try:
        await collection.data.insert({"text": "apple banana", "kind": "brand voice"})
        await collection.data.insert({"text": "Apple"})
        await collection.data.insert({"text": "cherry"})
        [hit] = (await collection.query.bm25("the banana", return_metadata=MetadataQuery(score=True))).objects
        # idf = ln(1 + (3 - 1 + 0.5) / (1 + 0.5)); tf part = 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / (4 / 3)))
        expected = math.log(1 + 2.5 / 1.5) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / (4 / 3)))
        assert hit.properties["text"] == "apple banana"
        assert hit.metadata.score == pytest.approx(expected, rel=1e-6)
        apples = (await collection.query.bm25("APPLE", return_metadata=MetadataQuery(score=True))).objects
        assert [o.properties["text"] for o in apples] == ["Apple", "apple banana"]  # the shorter text first
        assert apples[0].metadata.score > apples[1].metadata.score  # type: ignore[operator]
        assert (await collection.query.bm25("the")).objects == []  # a stopword alone matches nothing
        assert (await collection.query.bm25("durian")).objects == []
        # A field-tokenised property matches the whole value only.
        assert (await collection.query.bm25("brand", query_properties=["kind"])).objects == []
        assert len((await collection.query.bm25("brand voice", query_properties=["kind"])).objects) == 1
    finally:
        await client.collections.delete(collection.name)


async def test_hybrid_fuses_relative_scores_weighted_by_alpha(memories: CollectionAsync) -> None:
    await remember(memories, SHOP, 1, "red apple", [1.0, 0.0])
    await remember(memories, SHOP, 2, "red red car", [0.0, 1.0])
    await remember(memories, SHOP, 3, "blue sky", [0.7, 0.7])
    shop = memories.with_tenant(SHOP)

    async def hybrid(alpha: float) -> list[tuple[int, float]]:
        result = await shop.query.hybrid(
            "red", vector=[1.0, 0.0], alpha=alpha, return_metadata=MetadataQuery(score=True)
        )
        return [(int(o.properties["memory_id"]), o.metadata.score or 0.0) for o in result.objects]  # type: ignore[arg-type]

    # Keywords: "red red car" best (1), "red apple" worst (0). Vectors: "red apple" nearest (1), "blue sky"
    # at distance 1 - 0.7071 (0.7071 once scaled), "red red car" farthest (0).
    mostly_words = await hybrid(0.25)
    assert [memory for memory, _ in mostly_words] == [2, 1, 3]
    assert [score for _, score in mostly_words] == pytest.approx(
        [0.75, 0.25, 0.25 * (1 - (1 - 0.5**0.5))], abs=1e-6
    )
    assert [memory for memory, _ in await hybrid(0.75)] == [1, 3, 2]
    assert [memory for memory, _ in await hybrid(0.0)] == [2, 1]  # keywords alone
    assert [memory for memory, _ in await hybrid(1.0)] == [1, 3, 2]  # vectors alone


async def test_hybrid_filters_on_kind_and_date_as_aios_searches(memories: CollectionAsync) -> None:
    await remember(
        memories, SHOP, 1, "packaging uses recycled paper", [1.0, 0.0], created_at=NOW - timedelta(days=10)
    )
    await remember(memories, SHOP, 2, "packaging now uses compostable tape", [0.9, 0.1])
    await remember(memories, SHOP, 3, "packaging story for the blog", [0.1, 0.9], kind="post")
    await remember(memories, SHOP, 4, "brand voice: warm", [0.5, 0.5], kind="brand_voice")
    shop = memories.with_tenant(SHOP)

    async def search(filters: FilterReturn) -> set[int]:
        result = await shop.query.hybrid("packaging", vector=[1.0, 0.0], alpha=0.5, filters=filters)
        return {int(o.properties["memory_id"]) for o in result.objects}  # type: ignore[arg-type]

    since = Filter.by_property("created_at").greater_or_equal(NOW - timedelta(days=1))
    posts = Filter.by_property("kind").contains_any(["post"])
    assert await search(since) == {2, 3, 4}  # the vector half finds the brand voice too
    assert await search(Filter.all_of([since, posts])) == {3}
    assert await search(Filter.any_of([posts, Filter.by_property("memory_id").equal(1)])) == {1, 3}
    assert await search(Filter.by_property("kind").equal("note") & since) == {2}
    # A word-tokenised text property matches filters by word: "brand_voice" is "brand" and "voice".
    assert await search(Filter.by_property("kind").contains_any(["voice"])) == {4}


async def test_near_vector_orders_by_cosine_distance(memories: CollectionAsync) -> None:
    await remember(memories, SHOP, 1, "north", [0.0, 1.0])
    await remember(memories, SHOP, 2, "east", [1.0, 0.0])
    await remember(memories, SHOP, 3, "north-east", [1.0, 1.0])
    result = await memories.with_tenant(SHOP).query.near_vector(
        [0.0, 2.0],
        return_metadata=MetadataQuery(distance=True, certainty=True),
        return_properties=["memory_id"],
    )
    assert [o.properties for o in result.objects] == [{"memory_id": 1}, {"memory_id": 3}, {"memory_id": 2}]
    distances = [o.metadata.distance for o in result.objects]
    assert distances == pytest.approx([0.0, 1 - 0.5**0.5, 1.0], abs=1e-6)
    assert result.objects[0].metadata.certainty == pytest.approx(1.0)
    near = await memories.with_tenant(SHOP).query.near_vector([0.0, 1.0], distance=0.5)
    assert len(near.objects) == 2


async def test_fetches_page_through_every_object_once_and_sort_by_property(
    memories: CollectionAsync,
) -> None:
    for memory_id in range(7):
        await remember(memories, SHOP, memory_id, f"fact {memory_id}", [1.0, float(memory_id)])
    seen = [int(o.properties["memory_id"]) async for o in memories.with_tenant(SHOP).iterator(cache_size=3)]  # type: ignore[arg-type]
    assert sorted(seen) == list(range(7))
    newest = await memories.with_tenant(SHOP).query.fetch_objects(
        sort=Sort.by_property("memory_id", ascending=False), limit=3
    )
    assert [o.properties["memory_id"] for o in newest.objects] == [6, 5, 4]


async def test_tenants_are_isolated(memories: CollectionAsync) -> None:
    secret = await remember(memories, SHOP, 1, "the supplier discount code is SPRING24", [1.0, 0.0])
    await remember(memories, STUDIO, 1, "the studio's discount code is different", [1.0, 0.0])
    shop, studio = memories.with_tenant(SHOP), memories.with_tenant(STUDIO)
    assert [o.uuid for o in (await shop.query.bm25("discount code")).objects] == [secret]
    assert (await studio.query.bm25("SPRING24")).objects == []
    assert await studio.query.fetch_object_by_id(secret) is None
    assert await studio.data.delete_by_id(secret) is False
    assert await shop.data.exists(secret)


async def test_deletes_by_id_and_by_filter_within_one_tenant(memories: CollectionAsync) -> None:
    first = await remember(memories, SHOP, 1, "order 1003 note", [1.0, 0.0])
    await remember(memories, SHOP, 2, "order 1004 note", [1.0, 0.0])
    await remember(memories, SHOP, 3, "order 1005 note", [1.0, 0.0])
    await remember(memories, STUDIO, 2, "the studio's own note", [1.0, 0.0])
    shop = memories.with_tenant(SHOP)
    assert await shop.data.delete_by_id(first) is True
    assert await shop.data.delete_by_id(first) is False

    dry = await shop.data.delete_many(Filter.by_property("memory_id").contains_any([2, 3]), dry_run=True)
    assert (dry.matches, dry.successful) == (2, 2)
    deleted = await shop.data.delete_many(Filter.by_property("memory_id").equal(2), verbose=True)
    assert deleted.matches == 1 and deleted.objects is not None and deleted.objects[0].successful
    assert [o.properties["memory_id"] for o in (await shop.query.fetch_objects()).objects] == [3]
    assert len((await memories.with_tenant(STUDIO).query.fetch_objects()).objects) == 1
    with pytest.raises(WeaviateDeleteManyError, match="without tenant"):
        await memories.data.delete_many(Filter.by_property("memory_id").equal(3))


async def test_batch_inserts_carry_tenant_and_vectors(memories: CollectionAsync) -> None:
    shop = memories.with_tenant(SHOP)
    result = await shop.data.insert_many(
        [
            weaviate.classes.data.DataObject(
                properties={
                    "memory_id": n,
                    "text": f"fact {n}",
                    "kind": "note",
                    "key": "",
                    "created_at": NOW,
                },
                vector=[float(n), 1.0],
            )
            for n in (1, 2)
        ]
    )
    assert not result.has_errors and len(result.uuids) == 2
    assert await memories.tenants.exists(SHOP)  # created on the first write
    stored = await shop.query.fetch_object_by_id(result.uuids[0], include_vector=True)
    assert (
        stored is not None and stored.properties["memory_id"] == 1 and stored.properties["created_at"] == NOW
    )
    assert stored.vector == {"default": [1.0, 1.0]}


async def test_missing_tenants_are_refused_as_the_real_server_refuses_them(
    client: WeaviateAsyncClient,
) -> None:
    collection = await create_memory_collection(client, auto_tenant_creation=False)
    try:
        with pytest.raises(WeaviateQueryError, match="multi-tenancy enabled, but request was without tenant"):
            await collection.query.bm25("anything")
        with pytest.raises(UnexpectedStatusCodeError, match="without tenant") as untenanted:
            await collection.data.insert({"text": "no tenant"})
        assert untenanted.value.status_code == 422
        ghost = collection.with_tenant("T0GHOST")
        with pytest.raises(UnexpectedStatusCodeError, match='tenant not found: "T0GHOST"') as missing:
            await ghost.data.insert({"text": "nobody home"})
        assert missing.value.status_code == 422
        with pytest.raises(WeaviateInsertManyAllFailedError, match="tenant not found"):
            await ghost.data.insert_many([{"text": "nobody home"}])
        with pytest.raises(WeaviateQueryError, match='tenant not found: "T0GHOST"'):
            await ghost.query.bm25("home")
        await collection.tenants.create("T0GHOST")
        await ghost.data.insert({"text": "somebody home"})
        assert len((await ghost.query.bm25("home")).objects) == 1
    finally:
        await client.collections.delete(collection.name)


async def test_tenant_names_and_vector_lengths_are_refused_as_the_real_server_refuses_them(
    memories: CollectionAsync,
) -> None:
    for name in ("acme corp", "T0/SHOP", "x" * 65, ""):
        with pytest.raises(UnexpectedStatusCodeError, match="tenant name should only contain") as refused:
            await memories.tenants.create(name)
        assert refused.value.status_code == 422
    await memories.tenants.create(["T0_SHOP-2"])
    await remember(memories, SHOP, 1, "first", [1.0, 0.0, 0.0])
    shop = memories.with_tenant(SHOP)
    result = await shop.data.insert_many(
        [
            weaviate.classes.data.DataObject(properties={"memory_id": 2, "text": "short"}, vector=[1.0, 0.0]),
            weaviate.classes.data.DataObject(
                properties={"memory_id": 3, "text": "long"}, vector=[0.0, 1.0, 0.0]
            ),
        ]
    )
    assert list(result.errors) == [0] and "new node has a vector with length 2" in result.errors[0].message
    await remember(memories, STUDIO, 1, "each tenant has its own index", [1.0, 0.0])


async def test_a_restarted_server_answers_the_same_client_with_its_data_kept_or_dropped(
    weaviate_server: WeaviateServer,
) -> None:
    client = connect(weaviate_server)
    await client.connect()
    try:
        collection = await create_memory_collection(client)
        await remember(collection, SHOP, 1, "kept across the restart", [1.0, 0.0])
        weaviate_server.stop()
        with pytest.raises(WeaviateConnectionError):
            await client.collections.exists(collection.name)
        weaviate_server.start()
        assert [
            o.properties["text"] for o in (await collection.with_tenant(SHOP).query.bm25("restart")).objects
        ] == ["kept across the restart"]
        weaviate_server.restart(keep_data=False)
        assert await client.collections.exists(collection.name) is False
    finally:
        await client.close()


def test_the_sync_client_connects_too(weaviate_server: WeaviateServer) -> None:
    with weaviate.connect_to_custom(
        http_host=HOST,
        http_port=weaviate_server.http_port,
        http_secure=False,
        grpc_host=HOST,
        grpc_port=weaviate_server.grpc_port,
        grpc_secure=False,
    ) as client:
        collection = client.collections.create(
            f"Sync{uuid.uuid4().hex[:8]}",
            vector_config=Configure.Vectors.self_provided(),
            properties=[Property(name="text", data_type=DataType.TEXT, tokenization=Tokenization.FIELD)],
        )
        collection.data.insert({"text": "brand_voice"}, vector=[1.0])
        assert (
            len(
                collection.query.fetch_objects(
                    filters=Filter.by_property("text").equal("brand_voice")
                ).objects
            )
            == 1
        )
        assert collection.query.fetch_objects(filters=Filter.by_property("text").equal("brand")).objects == []
        client.collections.delete(collection.name)
