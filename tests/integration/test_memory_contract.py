"""The memory contract: every MemoryStore backend must pass it. The embedded store runs it on SQLite and
PostgreSQL; a Weaviate backend is to join the same suite when WEAVIATE_URL is set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore, MemoryStore, MemoryStoreError
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock

SHOP, STUDIO = "T0SHOP", "T0STUDIO"


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[MemoryStore]:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    yield EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), clock)
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
