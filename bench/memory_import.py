"""Memory snapshots: import (and export) throughput at 10k and 100k memories, into an empty embedded store.

    .venv/bin/python -m bench.memory_import [--sizes 10000 100000] [--vectors] [--postgres URL]

Each size is a snapshot of that many generated memories (every field set: key, metadata, timestamps spread over a
year, use counts, lifetimes), imported as `aios memory import` does — every line parsed and checked, then written
in batches in one transaction — into a fresh SQLite database (PostgreSQL with --postgres, an empty database whose
tables are created and emptied between sizes). The timed part starts from the file's lines and excludes the
process start-up; the CPU time this process spent is printed too, since on a busy machine the wall time says more
about the other processes. --vectors adds a 384-dimension vector to every memory under the store's model, so that
they are kept as they are (the model embeds one text, to check their length).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import tempfile
import time
from array import array
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from bench.memory_search import WORDS
from storage.engine import create_engine
from storage.memory import EmbeddedMemoryStore
from storage.memory.snapshot import import_snapshot, snapshot_lines
from storage.migrate import upgrade_to_head
from storage.records import utcnow
from storage.unit_of_work import UnitOfWorkFactory

TEAM = "T0BENCH"
DIMENSIONS = 384
MODEL = "all-MiniLM-L6-v2"


class FixedEmbedder:
    """Stands in for the local model under its name: the snapshot carries every vector, so it only embeds the
    one text the importer checks their length against."""

    model = MODEL

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] + [0.0] * (DIMENSIONS - 1) for _ in texts]


def snapshot(size: int, vectors: bool, rng: random.Random) -> list[str]:
    now = utcnow()
    vector = base64.b64encode(array("f", [rng.random() for _ in range(DIMENSIONS)]).tobytes()).decode()
    memories = []
    for n in range(size):
        created = now - timedelta(minutes=rng.randrange(365 * 24 * 60))
        memories.append(
            {
                "team": TEAM,
                "text": f"note {n}: " + " ".join(rng.choice(WORDS) for _ in range(12)),
                "kind": rng.choice(["note", "customer", "decision"]),
                "key": f"order:{1000 + n % 5000}" if n % 3 else None,
                "meta": {"source": "thread", "n": n},
                "created_at": created.isoformat(),
                "last_used_at": (created + timedelta(days=1)).isoformat() if n % 4 else None,
                "use_count": n % 7,
                "expires_at": (now + timedelta(days=365)).isoformat() if n % 5 == 0 else None,
                "vector": vector if vectors else None,
                "vector_model": MODEL if vectors else None,
            }
        )
    return list(snapshot_lines(TEAM, memories, now))


async def main(sizes: list[int], vectors: bool, postgres: str | None) -> None:
    rng = random.Random(7)
    mode = f"with {DIMENSIONS}-dimension vectors" if vectors else "without vectors"
    with tempfile.TemporaryDirectory() as workdir:
        for size in sizes:
            lines = snapshot(size, vectors, rng)
            url = postgres or f"sqlite+aiosqlite:///{Path(workdir) / f'import-{size}.db'}"
            engine = create_engine(url)
            await upgrade_to_head(engine)
            if postgres:
                async with engine.begin() as connection:
                    await connection.execute(text("TRUNCATE memory RESTART IDENTITY"))
            store = EmbeddedMemoryStore(
                UnitOfWorkFactory.for_engine(engine), embedder=FixedEmbedder() if vectors else None
            )
            started, cpu = time.perf_counter(), time.process_time()
            imported = await import_snapshot(store, TEAM, lines)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert imported == size, imported
            started = time.perf_counter()
            exported = list(snapshot_lines(TEAM, await store.export(TEAM), utcnow()))
            export_elapsed = time.perf_counter() - started
            assert [json.loads(line)["text"] for line in exported[1:]] == [
                json.loads(line)["text"] for line in lines[1:]
            ]
            print(
                f"{size:>7,} memories, {mode}, {engine.dialect.name}: import {size / elapsed:,.0f} memories/s "
                f"({elapsed:.2f} s; {cpu:.2f} s of this process's CPU), export {size / export_elapsed:,.0f} "
                f"memories/s ({export_elapsed:.2f} s)"
            )
            await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--vectors", action="store_true")
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL (its tables are created)")
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.vectors, args.postgres))
