"""Memory snapshots: export then import keeps every memory as it was (timestamps, use counts, lifetimes, vectors),
on SQLite and PostgreSQL, in the store and through the real `aios memory export` / `aios memory import`; a file
refused for any reason writes nothing and names the line."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import subprocess
from array import array
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from storage.embedding import Embedder
from storage.engine import create_engine
from storage.memory import EXPORT_FIELDS, EmbeddedMemoryStore, MemoryStoreError, Retention
from storage.memory.snapshot import import_snapshot, snapshot_lines
from storage.migrate import upgrade_to_head
from storage.records import Memory
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.aios_process import AIOS, aios_env

SHOP, STUDIO = "T0SHOP", "T0STUDIO"
DIMENSIONS = 16


class WordHashEmbedder:
    """Unit vectors from a text's hashed words: deterministic and instant, in place of the local model (not
    installed here). ``salt`` makes another embedder under the same model name, whose vectors differ."""

    def __init__(self, model: str = "word-hash-16", salt: str = "") -> None:
        self.model = model
        self._salt = salt

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * DIMENSIONS
            for word in text.lower().split():
                vector[int(hashlib.sha256((self._salt + word).encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
            norm = math.sqrt(sum(x * x for x in vector)) or 1.0
            vectors.append([x / norm for x in vector])
        return vectors


@asynccontextmanager
async def memory_store(
    url: str, clock: Clock, embedder: Embedder | None = None, retention: Retention | None = None
) -> AsyncIterator[EmbeddedMemoryStore]:
    engine = create_engine(url)
    await upgrade_to_head(engine)
    try:
        yield EmbeddedMemoryStore(UnitOfWorkFactory.for_engine(engine), clock, retention, embedder)
    finally:
        await engine.dispose()


async def snapshot_of(store: EmbeddedMemoryStore, team: str, clock: Clock) -> list[str]:
    return list(snapshot_lines(team, await store.export(team), clock()))


def without_export_time(lines: list[str]) -> list[Any]:
    header, *memories = (json.loads(line) for line in lines)
    del header["exported_at"]
    return [header, *memories]


async def fill(store: EmbeddedMemoryStore, clock: Clock) -> None:
    """Memories of every shape: keys and none, nested metadata, a lifetime, use counts, spread over 60 days."""
    await store.remember(
        SHOP,
        "Ana Lima's blender (order 1003) arrived cracked; refunded $129",
        kind="customer",
        key="order:1003",
        meta={"source": "thread", "refund": {"amount": 129.0, "currency": "USD"}, "tags": ["kitchen"]},
    )
    clock.advance(days=30)
    await store.remember(
        SHOP, "Lena's grinder is a gift — wrap it, no prices 🎁", kind="customer", key="order:1005"
    )
    await store.remember(SHOP, "We never ship on Sundays", ttl=timedelta(days=90))
    clock.advance(days=30, seconds=1.5)
    await store.remember(SHOP, "Brand voice: plain, warm, specific; no hype", kind="brand_voice")
    await store.search(SHOP, "blender cracked")
    clock.advance(hours=2)
    await store.search(SHOP, "blender grinder")


async def test_export_then_import_elsewhere_gives_the_same_snapshot(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    async with memory_store(f"sqlite+aiosqlite:///{tmp_path}/source.db", clock, WordHashEmbedder()) as source:
        await fill(source, clock)
        exported = await snapshot_of(source, SHOP, clock)
    # The same model name, other vectors: what arrives with a memory must be kept, not made again.
    async with memory_store(database_url, clock, WordHashEmbedder(salt="other")) as target:
        assert await import_snapshot(target, SHOP, exported) == 4
        clock.advance(minutes=5)
        again = await snapshot_of(target, SHOP, clock)

    assert without_export_time(again) == without_export_time(exported)
    header, *memories = without_export_time(exported)
    assert header == {"format": "aios-memory-snapshot", "version": 1, "team": SHOP, "memories": 4}
    assert all(set(memory) == {"team", *EXPORT_FIELDS} for memory in memories)
    blender = memories[0]
    assert blender["use_count"] == 2 and blender["last_used_at"] is not None
    assert blender["created_at"] < memories[1]["created_at"] < memories[3]["created_at"]
    assert memories[2]["expires_at"] is not None and blender["expires_at"] is None
    assert all(m["vector_model"] == "word-hash-16" and m["vector"] for m in memories)


async def test_imported_timestamps_and_use_counts_drive_recency_and_summaries(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    async with memory_store(f"sqlite+aiosqlite:///{tmp_path}/source.db", clock) as source:
        for n in range(2):
            await source.remember(
                SHOP, f"order 1003 returned parcel note {n}", kind="decision", key="order:1003"
            )
            await source.remember(
                SHOP, f"order 1004 returned parcel note {n}", kind="decision", key="order:1004"
            )
        for _ in range(2):  # the notes on order 1004 are used: kept as they are
            await source.lookup(SHOP, "order:1004")
        clock.advance(days=40)
        await source.remember(SHOP, "order 1005 returned parcel note 9", kind="decision")
        exported = await snapshot_of(source, SHOP, clock)
    since = clock() - timedelta(days=30)

    retention = Retention({}, {}, summarise_after=timedelta(days=30))
    async with memory_store(database_url, clock, retention=retention) as target:
        assert await import_snapshot(target, SHOP, exported) == 5
        [hit] = await target.search(SHOP, "returned parcel", since=since)
        assert hit.text == "order 1005 returned parcel note 9"
        ranked = await target.search(SHOP, "returned parcel", limit=5)
        assert ranked[0].text == hit.text  # all equally relevant: the recent one first
        assert (await target.maintain())["summarised"] == 2
        assert {h.kind for h in await target.lookup(SHOP, "order:1003")} == {"summary"}
        assert {h.kind for h in await target.lookup(SHOP, "order:1004")} == {"decision"}


async def test_the_same_text_is_stored_once_and_only_new_memories_count(
    database_url: str, clock: Clock
) -> None:
    async with memory_store(database_url, clock) as store:
        await store.remember(SHOP, "Tom prefers email over phone calls", kind="customer")
        before = await store.export(SHOP)
        clock.advance(days=3)
        lines = [
            json.dumps({"format": "aios-memory-snapshot", "version": 1, "team": SHOP}),
            json.dumps({"text": "tom prefers  email over phone calls", "kind": "note", "use_count": 9}),
            json.dumps({"text": "Packaging uses recycled paper", "created_at": "2026-01-05T10:00:00Z"}),
            json.dumps({"text": "packaging uses recycled  paper", "created_at": "2026-02-05T10:00:00Z"}),
            json.dumps(
                {"text": "The spring sale ended", "expires_at": (clock() - timedelta(days=1)).isoformat()}
            ),
        ]
        assert await import_snapshot(store, SHOP, lines) == 1
        assert await import_snapshot(store, SHOP, lines) == 0
        after = await store.export(SHOP)
    assert after[0] == before[0]  # what the team held is left as it was
    assert [(m["text"], m["created_at"]) for m in after[1:]] == [
        ("Packaging uses recycled paper", "2026-01-05T10:00:00+00:00")
    ]


async def test_vectors_of_another_model_are_made_again_or_kept_unused(tmp_path: Path, clock: Clock) -> None:
    vector = base64.b64encode(array("f", [1.0] + [0.0] * 7).tobytes()).decode()
    lines = [
        json.dumps({"format": "aios-memory-snapshot", "version": 1, "team": SHOP}),
        json.dumps({"text": "Ships from Berlin", "vector": vector, "vector_model": "another-model"}),
    ]
    embedder = WordHashEmbedder()
    async with memory_store(f"sqlite+aiosqlite:///{tmp_path}/hybrid.db", clock, embedder) as store:
        assert await import_snapshot(store, SHOP, lines) == 1
        [memory] = await store.export(SHOP)
        [expected] = await embedder.embed(["Ships from Berlin"])
        assert memory["vector_model"] == "word-hash-16"
        assert memory["vector"] == base64.b64encode(array("f", expected).tobytes()).decode()
        assert [h.text for h in await store.search(SHOP, "berlin")] == ["Ships from Berlin"]
    # Without embeddings the vector is kept as given, for a store that embeds with its model later; a store
    # embedding with another model searches it by keywords only.
    async with memory_store(f"sqlite+aiosqlite:///{tmp_path}/keywords.db", clock) as store:
        assert await import_snapshot(store, SHOP, lines) == 1
        [memory] = await store.export(SHOP)
        assert (memory["vector"], memory["vector_model"]) == (vector, "another-model")
    async with memory_store(f"sqlite+aiosqlite:///{tmp_path}/keywords.db", clock, embedder) as store:
        await store.remember(SHOP, "Ships to Lisbon on Fridays")
        assert {h.text for h in await store.search(SHOP, "ships")} == {
            "Ships from Berlin",
            "Ships to Lisbon on Fridays",
        }
        assert (await store.export(SHOP))[0]["vector_model"] == "another-model"


class RecordingStore(EmbeddedMemoryStore):
    """Records what the index hook is given, and whether those rows are visible in the writing transaction."""

    indexed: list[tuple[int, str, bool]]

    async def _indexed(self, session: Any, memories: Sequence[Memory]) -> None:
        ids = [m.id for m in memories]
        visible = set((await session.exec(select(Memory.id).where(col(Memory.id).in_(ids)))).all())
        self.indexed += [(m.id or 0, m.text, m.id in visible) for m in memories]


async def test_the_index_hook_is_given_each_new_memory_inside_the_writing_transaction(
    database_url: str, clock: Clock
) -> None:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    store = RecordingStore(UnitOfWorkFactory.for_engine(engine), clock)
    store.indexed = []
    try:
        await store.remember(SHOP, "already held")
        store.indexed.clear()
        header = json.dumps({"format": "aios-memory-snapshot", "version": 1, "team": SHOP})
        texts = ["already held", *(f"imported note {n}" for n in range(2500))]
        assert await import_snapshot(store, SHOP, [header, *(json.dumps({"text": t}) for t in texts)]) == 2500
        exported = {m["text"] for m in await store.export(SHOP)}
    finally:
        await engine.dispose()
    assert [text for _, text, _ in store.indexed] == texts[1:]
    assert all(visible for _, _, visible in store.indexed)
    assert len({memory_id for memory_id, _, _ in store.indexed}) == 2500
    assert exported == set(texts)


def good_lines() -> list[str]:
    return [
        json.dumps({"format": "aios-memory-snapshot", "version": 1, "team": SHOP, "memories": 2}),
        json.dumps({"text": "first", "team": SHOP, "created_at": "2026-03-01T09:30:00+00:00"}),
        json.dumps({"text": "second", "team": SHOP, "created_at": "2026-03-02T09:30:00+00:00"}),
    ]


def changed(number: int, **fields: Any) -> list[str]:
    lines = good_lines()
    lines[number - 1] = json.dumps({**json.loads(lines[number - 1]), **fields})
    return lines


def vector(values: int) -> str:
    return base64.b64encode(array("f", [0.5] * values).tobytes()).decode()


REFUSED = {
    "another team's memory": (changed(3, team=STUDIO), "line 3: the memory belongs to team 'T0STUDIO'"),
    "another team's snapshot": (changed(1, team=STUDIO), "line 1: this is a snapshot of team 'T0STUDIO'"),
    "bad JSON": ([*good_lines()[:2], '{"text": "third",'], "line 3 is not JSON"),
    "no text": (changed(2, text="  "), "line 2: the memory has no text"),
    "a NUL character": (changed(3, text="nul\x00"), "line 3: the text holds a NUL character"),
    "a key that is not a string": (changed(2, key=1003), "line 2: key must be a string"),
    "NaN": (
        [*good_lines()[:2], '{"text": "third", "meta": {"score": NaN}}'],
        "line 3 is not JSON: NaN is not",
    ),
    "a bad timestamp": (changed(3, created_at="last tuesday"), "line 3: created_at 'last tuesday' is not a"),
    "a timestamp without a zone": (changed(2, last_used_at="2026-03-01T09:30:00"), "line 2: last_used_at"),
    "an unknown version": (changed(1, version=2), "line 1: snapshot version 2 is not one"),
    "no header": (good_lines()[1:], "line 1: not a memory snapshot"),
    "a missing memory": (good_lines()[:2], "the header promises 2 memories but the file holds 1"),
    "a key that is not one": (changed(2, key="order:soon"), "line 2: key 'order:soon' is not a key"),
    "a moment before year 1 in UTC": (
        changed(2, created_at="0001-01-01T00:30:00+01:00"),
        "line 2: created_at '0001-01-01T00:30:00+01:00' is out of range",
    ),
    "a moment after 9999 in UTC": (
        changed(3, expires_at="9999-12-31T23:30:00-01:00"),
        "line 3: expires_at '9999-12-31T23:30:00-01:00' is out of range",
    ),
    "a bad use count": (changed(2, use_count=-1), "line 2: use_count must be a whole number"),
    "a vector that is not base64": (
        changed(3, vector="???", vector_model="m"),
        "line 3: vector must be base64",
    ),
    "a vector of the wrong length": (
        changed(3, vector=vector(8), vector_model="word-hash-16"),
        "line 3: its vector has 8 values, but word-hash-16 makes 16",
    ),
}


@pytest.mark.parametrize("lines, message", REFUSED.values(), ids=REFUSED.keys())
async def test_a_refused_snapshot_writes_nothing_and_names_the_line(
    database_url: str, clock: Clock, lines: list[str], message: str
) -> None:
    async with memory_store(database_url, clock, WordHashEmbedder()) as store:
        await store.remember(SHOP, "held before")
        before = await store.export(SHOP)
        with pytest.raises(MemoryStoreError) as refused:
            await import_snapshot(store, SHOP, lines)
        assert message in str(refused.value)
        assert await store.export(SHOP) == before


async def test_keys_are_stored_as_remember_stores_them(database_url: str, clock: Clock) -> None:
    lines = [*good_lines()[:2], json.dumps({"text": "second", "key": "Order:#1001"})]
    async with memory_store(database_url, clock) as store:
        assert await import_snapshot(store, SHOP, lines) == 2
        assert [m["key"] for m in await store.export(SHOP)] == [None, "order:1001"]
        assert [h.text for h in await store.lookup(SHOP, "order:1001")] == ["second"]


def aios(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


async def test_the_cli_exports_and_imports_a_snapshot(
    database_url: str, tmp_path: Path, clock: Clock
) -> None:
    source = aios_env(f"sqlite+aiosqlite:///{tmp_path}/source.db", "http://127.0.0.1:9/api/")
    target = aios_env(database_url, "http://127.0.0.1:9/api/")
    async with memory_store(source["AIOS_DATABASE_URL"], clock) as store:
        for text in ("Ana prefers email", "Ships on Mondays"):
            await store.remember(SHOP, text, ttl=timedelta(days=30))
        await store.search(SHOP, "email")

    printed = aios("memory", "export", "--team", SHOP, env=source)
    assert printed.returncode == 0, printed.stderr
    written = aios("memory", "export", "--team", SHOP, "--output", str(tmp_path / "shop.jsonl"), env=source)
    assert written.stdout.strip() == f"exported 2 memories of {SHOP} to {tmp_path / 'shop.jsonl'}"
    assert without_export_time((tmp_path / "shop.jsonl").read_text().splitlines()) == without_export_time(
        printed.stdout.splitlines()
    )

    refused = aios("memory", "import", str(tmp_path / "shop.jsonl"), env=target)  # the console's team
    assert refused.returncode == 2 and "never move between teams" in refused.stderr
    imported = aios("memory", "import", "-", "--team", SHOP, env=target, stdin=printed.stdout)
    assert imported.returncode == 0 and "imported 2 new memories into T0SHOP" in imported.stdout
    again = aios("memory", "export", "--team", SHOP, env=target)
    assert without_export_time(again.stdout.splitlines()) == without_export_time(printed.stdout.splitlines())
    assert json.loads(again.stdout.splitlines()[1])["use_count"] == 1


def test_the_cli_reads_lines_as_json_does(tmp_path: Path) -> None:
    """A text may hold line and paragraph separators (U+2028, U+2029, form feeds) that str.splitlines() breaks
    at; a line may end in CR LF; stdin may start with a byte-order mark."""
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/lines.db", "http://127.0.0.1:9/api/")
    text = "Gift wrap:\u2028ribbon\u2029card\x0cnote\x1cend"
    snapshot = "\r\n".join(
        [
            json.dumps({"format": "aios-memory-snapshot", "version": 1, "team": SHOP, "memories": 1}),
            json.dumps({"text": text}, ensure_ascii=False),
        ]
    )
    imported = aios("memory", "import", "-", "--team", SHOP, env=env, stdin="\ufeff" + snapshot + "\r\n")
    assert imported.returncode == 0 and "imported 1 new memories" in imported.stdout, imported.stderr
    exported = aios("memory", "export", "--team", SHOP, env=env).stdout.split("\n")
    assert json.loads(exported[1])["text"] == text


def test_the_cli_refuses_a_bad_snapshot_in_one_line_and_writes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    env = aios_env(database_url, "http://127.0.0.1:9/api/")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(changed(3, created_at="last tuesday")) + "\n")
    for args in (
        ("memory", "import", str(bad), "--team", SHOP),
        ("memory", "import", str(tmp_path / "none")),
    ):
        result = aios(*args, env=env)
        assert result.returncode == 2
        assert "Traceback" not in result.stdout + result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and ("line 3: created_at" in line or "cannot read" in line), line
    exported = aios("memory", "export", "--team", SHOP, env=env).stdout.splitlines()
    assert json.loads(exported[0])["memories"] == 0 and exported[1:] == []
