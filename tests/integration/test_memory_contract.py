"""The memory contract: every MemoryStore backend must pass it. The embedded store runs it on SQLite and
PostgreSQL; the Weaviate-indexed store runs it against a real Weaviate when WEAVIATE_URL is set, else against
the local server speaking Weaviate's REST and gRPC protocols (tests/fakes/weaviate_server.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore, MemoryStore, MemoryStoreError, Retention
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.weaviate_server import WeaviateServer

SHOP, STUDIO = "T0SHOP", "T0STUDIO"


RETENTION = Retention(
    ttl={"chatter": timedelta(days=7)}, cap={"customer": 3}, summarise_after=timedelta(days=30)
)


WEAVIATE_URL = os.environ.get("WEAVIATE_URL")


@pytest.fixture(params=["embedded", pytest.param("weaviate", marks=pytest.mark.weaviate)])
async def store(
    request: pytest.FixtureRequest, database_url: str, clock: Clock
) -> AsyncIterator[MemoryStore]:
    """Each backend over a fresh database; Weaviate in a collection of its own, on the server WEAVIATE_URL names
    or on the session's local one."""
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    units = UnitOfWorkFactory.for_engine(engine)
    if request.param == "embedded":
        yield EmbeddedMemoryStore(units, clock, RETENTION)
    else:
        from storage.memory.weaviate import GRPC_PORT, IndexedMemoryStore, WeaviateIndex

        if WEAVIATE_URL:
            url, grpc_port = WEAVIATE_URL, int(os.environ.get("WEAVIATE_GRPC_PORT") or GRPC_PORT)
        else:
            server: WeaviateServer = request.getfixturevalue("weaviate_server")
            url, grpc_port = server.url, server.grpc_port
        api_key = os.environ.get("WEAVIATE_API_KEY") if WEAVIATE_URL else None
        collection = f"AiosMemoryTest{uuid.uuid4().hex[:8]}"
        index = WeaviateIndex(url, api_key, grpc_port=grpc_port, collection=collection)
        await index.open()
        indexed = IndexedMemoryStore(units, index, clock, RETENTION)
        try:
            yield indexed
            # The store answers from SQL while Weaviate fails: the contract is about Weaviate's answers.
            assert indexed.index_up, "Weaviate failed during the test and the store fell back to SQL"
        finally:
            await indexed.close()
            headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
            async with httpx.AsyncClient(headers=headers) as http:
                (await http.delete(f"{url.rstrip('/')}/v1/schema/{collection}")).raise_for_status()
    await engine.dispose()


async def test_remember_search_and_forget(store: MemoryStore) -> None:
    blender, _ = await store.remember(
        SHOP,
        "Ana Lima's blender (order 1003) arrived cracked; refunded $129",
        kind="customer",
        key="order:1003",
    )
    await store.remember(
        SHOP, "Tom prefers email over phone calls", kind="customer", key="customer:tom@example.com"
    )
    await store.remember(SHOP, "Brand voice: plain, warm, specific; no hype", kind="brand_voice")

    hits = await store.search(SHOP, "cracked blender")
    assert hits and hits[0].id == blender and hits[0].tier == "keyword"
    assert [h.id for h in await store.lookup(SHOP, "order:1003")] == [blender]
    assert [h.kind for h in await store.search(SHOP, "voice", kinds=["brand_voice"])] == ["brand_voice"]

    assert await store.forget(SHOP, blender) is True
    assert await store.search(SHOP, "cracked blender") == []
    assert await store.forget(SHOP, blender) is False


async def test_tenants_never_see_or_touch_each_others_memories(store: MemoryStore) -> None:
    secret, _ = await store.remember(SHOP, "the supplier discount code is SPRING24")
    await store.remember(STUDIO, "the studio's discount code is different")

    assert [h.id for h in await store.search(SHOP, "discount code")] == [secret]
    assert secret not in [h.id for h in await store.search(STUDIO, "discount code SPRING24")]
    assert await store.forget(STUDIO, secret) is False  # another tenant cannot forget it
    assert [h.id for h in await store.search(SHOP, "SPRING24")] == [secret]
    with pytest.raises(MemoryStoreError, match="belongs to team 'T0SHOP'"):
        await store.import_records(STUDIO, [{"text": "smuggled", "team": SHOP}])
    assert await store.search(STUDIO, "smuggled") == []


async def test_the_same_fact_twice_is_one_memory_and_the_older_is_kept(store: MemoryStore) -> None:
    first, created = await store.remember(SHOP, "Order 1005 ships from the Berlin warehouse")
    again, created_again = await store.remember(SHOP, "order 1005   ships from the Berlin warehouse")
    assert (created, created_again) == (True, False) and again == first
    assert [h.id for h in await store.search(SHOP, "Berlin warehouse")] == [first]


async def test_memories_expire_after_their_time_to_live(store: MemoryStore, clock: Clock) -> None:
    await store.remember(SHOP, "holiday returns window is 60 days", ttl=timedelta(days=30))
    keep, _ = await store.remember(SHOP, "returns window is 30 days")
    clock.advance(days=31)
    assert [h.id for h in await store.search(SHOP, "returns window")] == [keep]
    assert await store.expire() == 1


async def test_export_then_import_round_trip(store: MemoryStore) -> None:
    await store.remember(
        SHOP,
        "Lena's grinder order 1005 is a gift",
        kind="customer",
        key="order:1005",
        meta={"source": "thread"},
    )
    await store.remember(SHOP, "We never ship on Sundays", ttl=timedelta(days=90))
    exported = await store.export(SHOP)
    assert {r["text"] for r in exported} == {
        "Lena's grinder order 1005 is a gift",
        "We never ship on Sundays",
    }
    assert all(r["team"] == SHOP for r in exported)

    assert await store.import_records(STUDIO, [{**r, "team": None} for r in exported]) == 2
    assert await store.import_records(STUDIO, [{**r, "team": None} for r in exported]) == 0  # no duplicates
    reimported = await store.export(STUDIO)
    assert [(r["text"], r["kind"], r["key"], r["meta"]) for r in reimported] == [
        (r["text"], r["kind"], r["key"], r["meta"]) for r in exported
    ]


async def test_kinds_have_default_lifetimes_and_caps(store: MemoryStore, clock: Clock) -> None:
    await store.remember(SHOP, "the coffee machine is broken again", kind="chatter")
    for n in range(5):
        await store.remember(SHOP, f"customer fact number {n}", kind="customer")
        clock.advance(minutes=1)
    clock.advance(days=8)
    counts = await store.maintain()
    assert counts["expired"] == 1 and counts["over_cap"] == 2
    assert [h.text for h in await store.search(SHOP, "customer fact", limit=10)] == [
        "customer fact number 4",
        "customer fact number 3",
        "customer fact number 2",
    ]


async def test_old_little_used_memories_are_summarised_with_provenance(
    store: MemoryStore, clock: Clock
) -> None:
    old = [
        (await store.remember(SHOP, f"order 1003 note {n}", kind="decision", key="order:1003"))[0]
        for n in range(3)
    ]
    single, _ = await store.remember(SHOP, "order 1004 note", kind="decision", key="order:1004")
    clock.advance(days=31)
    fresh, _ = await store.remember(SHOP, "order 1003 fresh note", kind="decision", key="order:1003")

    assert (await store.maintain())["summarised"] == 3
    hits = await store.lookup(SHOP, "order:1003")
    [summary] = [h for h in hits if h.kind == "summary"]
    assert sorted(h.id for h in hits) == sorted([fresh, summary.id])
    assert all(f"order 1003 note {n}" in summary.text for n in range(3))
    exported = {r["text"]: r for r in await store.export(SHOP)}
    assert exported[summary.text]["meta"]["replaces"] == old
    assert [h.id for h in await store.lookup(SHOP, "order:1004")] == [single]  # alone: kept as it is
    assert (await store.maintain())["summarised"] == 0


async def test_search_filters_on_kind_and_time(store: MemoryStore, clock: Clock) -> None:
    await store.remember(SHOP, "packaging uses recycled paper", kind="note")
    clock.advance(days=10)
    since = clock.now
    recent, _ = await store.remember(SHOP, "packaging now uses compostable tape", kind="note")
    post, _ = await store.remember(SHOP, "packaging story for the blog", kind="post")
    assert {h.id for h in await store.search(SHOP, "packaging", since=since)} == {recent, post}
    assert [h.id for h in await store.search(SHOP, "packaging", kinds=["post"])] == [post]


async def test_a_search_naming_an_order_finds_its_memories_first_and_never_another_orders(
    store: MemoryStore,
) -> None:
    ours, _ = await store.remember(
        SHOP, "refunded $20 on order 1001, the lid cracked", kind="decision", key="order:1001"
    )
    credit, _ = await store.remember(SHOP, "Maya wants store credit next time", kind="note", key="order:1001")
    theirs, _ = await store.remember(
        SHOP, "refunded $15 on order 1002, the lid cracked", kind="decision", key="order:1002"
    )
    unkeyed, _ = await store.remember(SHOP, "order lids crack in the cold")
    customer, _ = await store.remember(
        SHOP, "Maya asks for order updates by email", kind="customer", key="customer:maya@example.com"
    )

    hits = await store.search(SHOP, "order 1001 lid cracked", limit=10)
    assert {h.id for h in hits[:2]} == {ours, credit} and {h.tier for h in hits[:2]} == {"exact"}
    assert theirs not in [h.id for h in hits]
    assert unkeyed in [h.id for h in hits[2:]]  # unkeyed notes still come by their words
    assert customer in [h.id for h in hits[2:]]  # another namespace than the one the query names
    assert theirs not in [h.id for h in await store.search(SHOP, "#1001", limit=10)]
    assert next(h.id for h in await store.search(SHOP, "order #1002", limit=10)) == theirs
    assert {ours, theirs} <= {h.id for h in await store.search(SHOP, "lid cracked", limit=10)}


async def test_a_key_written_unnormalised_still_names_its_order(store: MemoryStore) -> None:
    """A key stored as a person wrote it (before keys were normalised) is still order 1002's."""
    theirs, _ = await store.remember(SHOP, "refunded $15, the lid cracked", key="Order:#1002")
    assert theirs not in [h.id for h in await store.search(SHOP, "order 1001 lid cracked", limit=10)]


async def test_a_general_note_is_not_crowded_out_by_other_orders(store: MemoryStore) -> None:
    """Other orders' memories match the words better than the note, and outnumber what a search ranks: the note
    still comes, since they are left out before the best are kept."""
    for n in range(2000, 2030):
        await store.remember(SHOP, f"refund sent for order {n}", key=f"order:{n}")
    note, _ = await store.remember(
        SHOP, "Refund policy for damaged items: refund in full within 30 days, the customer keeps the item"
    )
    assert [h.id for h in await store.search(SHOP, "refund for order 1001")] == [note]


async def test_exact_keys_respect_kinds_time_tenants_and_forgetting(store: MemoryStore, clock: Clock) -> None:
    old, _ = await store.remember(SHOP, "Ana wants store credit", kind="note", key="order:1003")
    clock.advance(days=2)
    since = clock.now
    ana, _ = await store.remember(SHOP, "Ana prefers email", kind="customer", key="customer:ana@example.com")
    tom, _ = await store.remember(SHOP, "Tom prefers email", kind="customer", key="customer:tom@example.com")
    await store.remember(STUDIO, "the studio's order 1003 is theirs", key="order:1003")

    assert [h.id for h in await store.search(SHOP, "order 1003")] == [old]  # no word in common: the key
    assert await store.search(SHOP, "order 1003", kinds=["customer"]) == []
    assert await store.search(SHOP, "order 1003", since=since) == []
    mail = "<mailto:Ana@Example.com|Ana@Example.com> prefers email?"
    found = [h.id for h in await store.search(SHOP, mail)]
    # tom@… is another customer; order 1003's note may come by "Ana"
    assert found[0] == ana and tom not in found
    assert tom in [h.id for h in await store.search(SHOP, "prefers email")]
    assert await store.forget(SHOP, old) is True
    assert await store.search(SHOP, "order 1003") == []


async def test_several_keys_are_looked_up_together_each_with_its_newest(
    store: MemoryStore, clock: Clock
) -> None:
    notes = []
    for n in range(3):
        notes.append(
            (await store.remember(SHOP, f"order 1003, note {n}", kind="customer", key="order:1003"))[0]
        )
        clock.advance(minutes=1)
    ana, _ = await store.remember(
        SHOP, "Ana prefers store credit", kind="customer", key="customer:ana@example.com"
    )
    await store.remember(SHOP, "order 1004 came late", kind="customer", key="order:1004")
    await store.remember(STUDIO, "the studio's order 1003 is theirs", key="order:1003")

    hits = await store.lookup(SHOP, "customer:ana@example.com", "order:1003", limit=2)
    assert [h.id for h in hits] == [ana, notes[2], notes[1]]  # key by key as asked, newest first under each
    assert {h.tier for h in hits} == {"exact"}
    assert await store.lookup(SHOP, "order:1005", "customer:tom@example.com") == []


async def test_what_forgetting_and_retention_remove_is_never_found_and_summaries_are(
    store: MemoryStore, clock: Clock
) -> None:
    notes = [
        (await store.remember(SHOP, f"kettle order 1009 note {n}", kind="decision", key="order:1009"))[0]
        for n in range(2)
    ]
    chatter, _ = await store.remember(SHOP, "the kettle in the kitchen leaks", kind="chatter")
    customers = []
    for n in range(4):
        customers.append((await store.remember(SHOP, f"kettle customer fact {n}", kind="customer"))[0])
        clock.advance(minutes=1)
    forgotten, _ = await store.remember(SHOP, "the kettle supplier is Acme")
    assert await store.forget(SHOP, forgotten) is True
    clock.advance(days=31)

    assert await store.maintain() == {"expired": 1, "summarised": 2, "over_cap": 1}
    found = {h.id: h for h in await store.search(SHOP, "kettle", limit=20)}
    assert not {chatter, forgotten, customers[0], *notes} & set(found)
    assert set(customers[1:]) <= set(found)
    [summary] = [h for h in found.values() if h.kind == "summary"]
    assert all(f"kettle order 1009 note {n}" in summary.text for n in range(2))
