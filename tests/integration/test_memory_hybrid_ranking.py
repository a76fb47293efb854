"""Hybrid memory search ranks its two shortlists (the best by keywords, the best by vectors) as ranking every
memory would: each candidate is scored by both, each score as a share of its best. On SQLite (the in-process
keyword index) and PostgreSQL (ts_rank_cd)."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore
from storage.memory.keyword_index import TeamIndex, Tokenizer
from storage.memory.ranking import fuse
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock

SHOP = "T0SHOP"
DIMENSIONS = 16
VOCABULARY = (
    "blender grinder skillet apron kettle teapot mug knife board scale cracked late lid scratch colour refund "
    "partial gift wrap email phone warehouse berlin lisbon spring summer post draft"
)
WORDS = VOCABULARY.split()


class WordHashEmbedder:
    """Unit vectors from a text's hashed words: deterministic and instant, in place of the local model."""

    model = "word-hash-16"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * DIMENSIONS
            for word in text.lower().split():
                vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
            norm = math.sqrt(sum(x * x for x in vector)) or 1.0
            vectors.append([x / norm for x in vector])
        return vectors


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[EmbeddedMemoryStore]:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    store = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), clock, embedder=WordHashEmbedder())
    yield store
    await store.close()
    await engine.dispose()


async def test_the_shortlists_rank_as_every_memory_ranked(store: EmbeddedMemoryStore, clock: Clock) -> None:
    rng = random.Random(3)
    notes = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(400)]
    made = clock().isoformat()  # one time for all: recency does not reorder them
    records = [
        {"text": f"{n}: {note}", "kind": "note", "created_at": made, "meta": {}}
        for n, note in enumerate(notes)
    ]
    assert await store.import_records(SHOP, records) == len(notes)
    await store.warm(SHOP)
    queries = [" ".join(rng.sample(WORDS, 2)) for _ in range(20)]
    shares = []
    for query in queries:
        found = [hit.id for hit in await store.search(SHOP, query, limit=5)]
        # every memory is a candidate when as many are asked for: the exact ranking, by the same scores
        exact = [hit.id for hit in await store.search(SHOP, query, limit=len(notes))][:5]
        shares.append(len(set(found) & set(exact)) / 5)
    assert sum(shares) / len(shares) >= 0.9, shares


def test_a_candidates_fused_score_does_not_depend_on_the_others_fetched() -> None:
    keyword = {1: 8.0, 2: 4.0, 3: 2.0, 4: 1.0}
    vector = {1: 0.2, 2: 0.9, 3: 0.5, 4: -0.1}
    every = fuse(keyword, vector, 0.5)
    fewer = fuse({i: keyword[i] for i in (1, 2, 3)}, {i: vector[i] for i in (1, 2, 3)}, 0.5)
    assert fewer == {i: every[i] for i in (1, 2, 3)}
    assert every[4] == 0.5 * 1.0 / 8.0  # a negative similarity counts as none


def test_the_index_scores_chosen_memories_as_it_scores_every_one() -> None:
    from datetime import UTC, datetime

    rng = random.Random(5)
    texts = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(200)]
    postings, lengths = Tokenizer().postings(texts)
    index = TeamIndex(built_at=0.0)
    ids = [10 + 3 * n for n in range(len(texts))]
    index.add([(i, "note", datetime.now(UTC)) for i in ids], postings, lengths)
    terms = Tokenizer().terms("refunded kettles")
    every = index.scores(terms)
    chosen = [ids[7], ids[120], ids[199], 11]  # 11 is not held
    assert index.scores_of(terms, chosen) == pytest.approx({ids[p]: float(every[p]) for p in (7, 120, 199)})
    assert np.count_nonzero(every) > 0


async def test_a_memory_committed_after_a_newer_one_is_still_found(database_url: str, clock: Clock) -> None:
    """PostgreSQL hands out ids as memories are inserted but commits them as transactions end: the keyword index
    must take in id n committed after id n + 1. (SQLite commits one writer at a time, in id order.)"""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite commits ids in order")
    from sqlalchemy import insert

    from storage.memory import content_hash
    from storage.records import Memory

    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    store = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), clock)
    first, _ = await store.remember(SHOP, "the kettle lid was cracked")
    await store.warm(SHOP)
    late_text = "a second kettle arrived cracked"
    async with engine.connect() as late:
        transaction = await late.begin()
        inserted = await late.execute(
            insert(Memory.__table__)  # type: ignore[attr-defined]
            .values(
                team_id=SHOP,
                kind="note",
                text=late_text,
                content_hash=content_hash(late_text),
                meta={},
                created_at=clock(),
                use_count=0,
            )
            .returning(Memory.__table__.c.id)  # type: ignore[attr-defined]
        )
        late_id = inserted.scalar_one()
        newer, _ = await store.remember(SHOP, "the kettle was refunded")
        assert late_id < newer
        assert {h.id for h in await store.search(SHOP, "kettle")} == {first, newer}
        await transaction.commit()
    assert {h.id for h in await store.search(SHOP, "kettle")} == {first, newer, late_id}
    assert {h.id for h in await store.search(SHOP, "cracked")} == {first, late_id}
    assert store._keyword_indexes, "the search was answered by the in-process index"
    await store.close()
    await engine.dispose()
