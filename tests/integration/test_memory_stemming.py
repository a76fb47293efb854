"""Keyword search stems and folds case on every backend ("refund" finds "refunded"), both through the database's
own index and, on SQLite, through the in-process index that takes over once built; that index keeps the
store's rules: one team's memories only, none forgotten or expired, the kind and time filters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock

SHOP, STUDIO = "T0SHOP", "T0STUDIO"


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[EmbeddedMemoryStore]:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    store = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), clock)
    yield store
    await store.close()
    await engine.dispose()


@pytest.mark.parametrize("warm", [False, True], ids=["database index", "warm index"])
async def test_words_are_found_in_their_other_forms(store: EmbeddedMemoryStore, warm: bool) -> None:
    refunded, _ = await store.remember(SHOP, "Order 1003 was refunded in full")
    refund, _ = await store.remember(SHOP, "Maya asked for a refund of her kettle")
    await store.remember(SHOP, "The teapot shipped on Monday")
    if warm:
        await store.warm(SHOP)
    assert {h.id for h in await store.search(SHOP, "refund")} == {refunded, refund}
    assert {h.id for h in await store.search(SHOP, "REFUNDS")} == {refunded, refund}
    assert [h.id for h in await store.search(SHOP, "Kettles")] == [refund]


async def test_accents_are_folded(store: EmbeddedMemoryStore, database_url: str) -> None:
    if database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's english configuration keeps accents (unaccent is an extension)")
    cafe, _ = await store.remember(SHOP, "Deliveries to the Café Lisboa go to the back door")
    assert [h.id for h in await store.search(SHOP, "cafe")] == [cafe]
    await store.warm(SHOP)
    assert [h.id for h in await store.search(SHOP, "CAFÉ")] == [cafe]


async def test_the_warm_index_keeps_up_with_the_store(store: EmbeddedMemoryStore, clock: Clock) -> None:
    kept, _ = await store.remember(SHOP, "the blender arrived cracked")
    forgotten, _ = await store.remember(SHOP, "the blender was late")
    await store.remember(STUDIO, "the studio blender is ours")
    await store.warm(SHOP)
    added, _ = await store.remember(SHOP, "a second blender was refunded")
    brief, _ = await store.remember(SHOP, "blender promo code BLEND10", ttl=timedelta(hours=1))
    assert await store.forget(SHOP, forgotten)
    assert {h.id for h in await store.search(SHOP, "blenders")} == {kept, added, brief}
    clock.advance(hours=2)
    assert {h.id for h in await store.search(SHOP, "blenders")} == {kept, added}


async def test_filters_apply_before_the_best_are_kept(store: EmbeddedMemoryStore, clock: Clock) -> None:
    """More notes outrank the one post than a search keeps as candidates: the post is still found."""
    for n in range(30):
        await store.remember(SHOP, f"shipping shipping note {n}", kind="note")
    clock.advance(days=1)
    since = clock.now
    post, _ = await store.remember(SHOP, "a post about shipping, with many other words in it", kind="post")
    for warm in (False, True):
        if warm:
            await store.warm(SHOP)
        assert [h.id for h in await store.search(SHOP, "shipping", kinds=["post"])] == [post]
        assert [h.id for h in await store.search(SHOP, "shipping", since=since)] == [post]
