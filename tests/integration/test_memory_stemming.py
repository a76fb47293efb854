"""Keyword search stems and folds case on every backend ("refund" finds "refunded"): through the database's own
index, on SQLite through the in-process index that takes over once built, and through Weaviate's BM25 on the
stemmed text it is given; the in-process index keeps the store's rules: one team's memories only, none
forgotten or expired, the kind and time filters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore, embedded
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.weaviate_server import WeaviateServer

SHOP, STUDIO = "T0SHOP", "T0STUDIO"


@pytest.fixture(params=["embedded", pytest.param("weaviate", marks=pytest.mark.weaviate)])
async def store(
    request: pytest.FixtureRequest, database_url: str, clock: Clock
) -> AsyncIterator[EmbeddedMemoryStore]:
    """Each backend; Weaviate (the session's local server) in a collection of its own."""
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    units = UnitOfWorkFactory.for_engine(engine)
    if request.param == "embedded":
        store = EmbeddedMemoryStore(units, clock)
    else:
        from storage.memory.weaviate import IndexedMemoryStore, WeaviateIndex

        server: WeaviateServer = request.getfixturevalue("weaviate_server")
        collection = f"AiosMemoryStem{uuid.uuid4().hex[:8]}"
        index = WeaviateIndex(server.url, None, grpc_port=server.grpc_port, collection=collection)
        await index.open()
        store = IndexedMemoryStore(units, index, clock)
    yield store
    # Weaviate failing would have the store answer from SQL: the test is about Weaviate's answers.
    assert getattr(store, "index_up", True), "Weaviate failed and the store fell back to SQL"
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


class StalledBuilds(EmbeddedMemoryStore):
    """Keyword index builds that never end by themselves: closing comes in the middle of one."""

    async def warm(self, team: str) -> None:
        await asyncio.Event().wait()


async def test_closing_waits_for_the_index_builds_it_cancels(database_url: str, clock: Clock) -> None:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    store = StalledBuilds(UnitOfWorkFactory.for_engine(engine), clock)
    await store.remember(SHOP, "kettle note")
    await store.search(SHOP, "kettle")  # starts the team's index build, in the background
    builds = list(store._index_builds.values())
    assert builds and not any(build.done() for build in builds)
    await store.close()
    assert all(build.cancelled() for build in builds)
    await engine.dispose()


async def test_keyword_indexes_of_teams_that_stop_searching_are_dropped(
    database_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    store = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), clock)
    teams = [f"T0TEAM{n}" for n in range(4)]
    for team in teams:
        await store.remember(team, f"{team} ships kettles")
    monkeypatch.setattr(embedded, "KEYWORD_INDEXES_KEPT", 2)
    for team in teams[:3]:
        await store.warm(team)
    assert list(store._keyword_indexes) == teams[1:3]  # the least recently used went first
    assert [h.text for h in await store.search(teams[1], "kettle")] == ["T0TEAM1 ships kettles"]
    await store.warm(teams[3])
    assert list(store._keyword_indexes) == [teams[1], teams[3]]
    monkeypatch.setattr(embedded, "KEYWORD_INDEX_IDLE_SECONDS", 0.0)
    assert [h.text for h in await store.search(teams[0], "kettle")] == ["T0TEAM0 ships kettles"]
    assert not {teams[1], teams[3]} & set(store._keyword_indexes)  # unused since: dropped
    await store.close()
    await engine.dispose()
