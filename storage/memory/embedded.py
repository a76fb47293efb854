"""The embedded memory store, inside the SQL database.

Every call names its tenant (the Slack team); no query, forget, import or update reaches another tenant's
memories. Retrieval is tiered: an exact key (``order:1003``) is looked up in SQL first; keyword search (BM25 from
an in-process index of the team's memories, FTS5's bm25() on SQLite or ``ts_rank_cd`` on PostgreSQL while it is
built) runs only when needed. Each retrieval's tier and latency is
logged and counted.
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import BindParameter, Select, bindparam, delete, func, text, update
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from storage.embedding import Embedder
from storage.memory.base import (
    SUMMARY_KIND,
    SUMMARY_MAX_USES,
    MemoryHit,
    MemoryStoreError,
    PreparedMemory,
    Retention,
    content_hash,
)
from storage.memory.entities import named_keys, namespace, normalised_key
from storage.memory.ranking import HYBRID_ALPHA, fuse, matches, recency_boosted
from storage.memory.snapshot import SnapshotError, exported, memory_row
from storage.records import Memory, UtcDateTime, utcnow
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

if TYPE_CHECKING:
    from storage.memory.keyword_index import TeamIndex, Tokenizer

log = structlog.get_logger(__name__)


VECTOR_CACHE_SECONDS = 30.0
# A team's keyword index takes in new memories at every search; it is built afresh this often, so that memories
# forgotten by other processes leave its statistics, and in batches of this many memories.
KEYWORD_INDEX_SECONDS = 600.0
KEYWORD_INDEX_BATCH = 5000
# Keyword indexes are kept for the teams that search: one unused this long is dropped, and past this many the
# least recently used, so that the memory they take does not grow with every team the bot ever served.
KEYWORD_INDEX_IDLE_SECONDS = 3600.0
KEYWORD_INDEXES_KEPT = 64
IMPORT_BATCH = 1000  # memories per INSERT when importing, and per call of the index hook
EMBED_BATCH = 256  # texts per call of the embedder when importing


def _newest_by_key() -> Select[int | None, str, str, str | None, datetime]:
    """The newest ``limit`` memories of the ``team`` under each of ``keys`` unexpired at ``now``, numbered within
    their key: one statement for every key (:meth:`EmbeddedMemoryStore.lookup`)."""
    newest = (
        sql_select(
            col(Memory.id),
            func.row_number()
            .over(partition_by=col(Memory.key), order_by=col(Memory.created_at).desc())
            .label("nth"),
        )
        .where(
            col(Memory.team_id) == bindparam("team"),
            col(Memory.key).in_(bindparam("keys", expanding=True)),
            col(Memory.expires_at).is_(None) | (col(Memory.expires_at) > bindparam("now")),
        )
        .subquery()
    )
    return (
        sql_select(
            col(Memory.id), col(Memory.text), col(Memory.kind), col(Memory.key), col(Memory.created_at)
        )
        .join(newest, col(Memory.id) == newest.c.id)
        .where(newest.c.nth <= bindparam("limit"))
        .order_by(col(Memory.created_at).desc())
    )


# Built once: a statement remembers its cache key, so each lookup skips building it and walking it for that key.
_NEWEST_BY_KEY = _newest_by_key()

_TOKEN = re.compile(r"[\w@.+-]+", re.UNICODE)
# What the memory table's columns take (PostgreSQL refuses a longer value): checked before a memory is written.
_MEMORY_LIMITS = {
    name: Memory.__table__.c[column].type.length  # type: ignore[attr-defined]
    for name, column in (("team", "team_id"), ("kind", "kind"), ("key", "key"))
}


class EmbeddedMemoryStore:
    """Memories in the bot's own SQL database: keywords only (no model needed), exact keys first."""

    def __init__(
        self,
        units: UnitOfWorkFactory,
        clock: Callable[[], datetime] = utcnow,
        retention: Retention | None = None,
        embedder: Embedder | None = None,
        alpha: float = HYBRID_ALPHA,
    ) -> None:
        self._units = units
        self._clock = clock
        self._retention = retention or Retention.none()
        self._embedder = embedder
        self._alpha = alpha
        self._vector_cache: dict[str, tuple[float, Any, Any]] = {}
        # least recently used first, with when each was last used (time.monotonic())
        self._keyword_indexes: OrderedDict[str, tuple[TeamIndex, float]] = OrderedDict()
        self._index_builds: dict[str, asyncio.Task[None]] = {}
        self._tokenizer: Tokenizer | None = None

    async def remember(
        self,
        team: str,
        text_: str,
        *,
        kind: str = "note",
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        ttl: timedelta | None = None,
    ) -> tuple[int, bool]:
        memory = await self._new_memory(team, text_, kind, key, meta, ttl)
        async with self._units() as uow:
            stored, created = await self._stored(uow.session, memory)
            await uow.commit()
        assert stored.id is not None
        return stored.id, created

    async def prepare(
        self,
        team: str,
        text_: str,
        *,
        kind: str = "note",
        key: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> PreparedMemory | None:
        return await self._new_memory(team, text_, kind, key, meta, None)

    async def remember_within(self, uow: UnitOfWork, memory: PreparedMemory) -> None:
        await self._stored(uow.session, memory)

    async def _new_memory(
        self,
        team: str,
        text_: str,
        kind: str,
        key: str | None,
        meta: dict[str, Any] | None,
        ttl: timedelta | None,
    ) -> PreparedMemory:
        """A new memory's row and its time to live (given, else its kind's), checked and given its vector before
        anything is written: whatever refuses it raises MemoryStoreError first."""
        if not team:
            raise MemoryStoreError("a memory needs a team (tenant)")
        if not text_.strip():
            raise MemoryStoreError("there is nothing to remember: the text is empty")
        for name, value in (("team", team), ("kind", kind), ("key", key)):
            if value is not None and len(value) > _MEMORY_LIMITS[name]:
                raise MemoryStoreError(f"a memory's {name} takes at most {_MEMORY_LIMITS[name]} characters")
        now = self._clock()
        ttl = ttl if ttl is not None else self._retention.ttl.get(kind)
        values: dict[str, Any] = {
            "team_id": team,
            "kind": kind,
            "key": key,
            "text": text_.strip(),
            "content_hash": content_hash(text_),
            "meta": meta or {},
            "created_at": now,
            "expires_at": now + ttl if ttl else None,
            "use_count": 0,
        }
        if self._embedder is not None:
            try:
                [vector] = await self._embedder.embed([values["text"]])
            except Exception as exc:
                raise MemoryStoreError(f"it could not be embedded ({type(exc).__name__}: {exc})") from exc
            values |= {"vector": _vector_bytes(vector), "vector_model": self._embedder.model}
        return PreparedMemory(values, ttl)

    async def _stored(self, session: Any, memory: PreparedMemory) -> tuple[Memory, bool]:
        """Write a new memory's row in this session's transaction: the memory, and whether it is new. A new one
        comes back from its INSERT … RETURNING; the same text said before is read instead, and kept at least as
        long as the new one would have been."""
        values, ttl = memory.values, memory.ttl
        bind = session.bind
        insert = pg_insert if bind is not None and bind.dialect.name == "postgresql" else sqlite_insert
        inserted = insert(Memory).values(**values).on_conflict_do_nothing().returning(Memory)
        new: Memory | None = (await session.exec(inserted)).scalars().first()
        if new is not None:
            self._vector_cache.pop(new.team_id, None)
            await self._indexed(session, [new])
            return new, True
        stored: Memory = (
            await session.exec(
                select(Memory).where(
                    Memory.team_id == values["team_id"], Memory.content_hash == values["content_hash"]
                )
            )
        ).one()
        if ttl and stored.expires_at is not None:
            stored.expires_at = max(stored.expires_at, values["created_at"] + ttl)  # said again: kept as long
            session.add(stored)
        return stored, False

    async def _embedded(self, memories: Sequence[Memory]) -> None:
        """Give new memories their vectors, when there is an embedder."""
        if self._embedder is None or not memories:
            return
        vectors = await self._embedder.embed([memory.text for memory in memories])
        for memory, vector in zip(memories, vectors, strict=True):
            memory.vector, memory.vector_model = _vector_bytes(vector), self._embedder.model
            self._vector_cache.pop(memory.team_id, None)

    async def lookup(self, team: str, *keys: str, limit: int = 5) -> list[MemoryHit]:
        started = time.perf_counter()
        parameters = {"team": team, "keys": keys, "now": self._clock(), "limit": limit}
        async with self._units.read() as uow:
            connection = await uow.session.connection()  # plain rows: hits need no loaded memories
            rows = (await connection.execute(_NEWEST_BY_KEY, parameters)).all()
        position = {key: number for number, key in enumerate(keys)}
        hits = [
            MemoryHit(row.id, row.text, row.kind, row.key, 1.0, row.created_at, "exact")
            for row in sorted(rows, key=lambda row: position[row.key or ""])
        ]
        await self._used(hits, "exact", started)
        return hits

    async def search(
        self,
        team: str,
        query: str,
        *,
        limit: int = 5,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[MemoryHit]:
        """Memories under the keys the query names first (newest first, tier ``exact``), then the backend's
        ranking, which leaves out memories kept under another entity of a namespace the query names: a search
        about order 1001 never returns what is remembered about order 1002 (unkeyed notes still come by words)."""
        if not _TOKEN.findall(query.lower()):
            return []
        started = time.perf_counter()
        named = named_keys(query)
        exact: list[MemoryHit] = []
        if named:
            keyed = select(Memory).where(Memory.team_id == team, col(Memory.key).in_(named), self._alive())
            if kinds is not None:
                keyed = keyed.where(col(Memory.kind).in_(kinds))
            if since is not None:
                keyed = keyed.where(col(Memory.created_at) >= since)
            async with self._units.read() as uow:
                found = await uow.session.exec(keyed.order_by(col(Memory.created_at).desc()).limit(limit))
                exact = [self._hit(row, 1.0, "exact") for row in found.all()]
        spaces = {namespace(key) for key in named}
        taken = {hit.id for hit in exact}
        candidates = limit * 4
        while True:
            ranked, tier = await self._ranked(team, query, candidates, kinds, since)
            rows = await self._alive_rows(team, list(ranked))
            hits = [
                self._hit(rows[i], ranked[i], tier)
                for i in ranked
                if i in rows
                and i not in taken
                and matches(rows[i], kinds, since)
                and not _about_another(rows[i].key, named, spaces)
            ]
            # Other entities' memories are left out after ranking: when they crowd the candidates (thirty
            # "refund sent for order N" above the one refund policy), rank more until enough remain or all are.
            if len(exact) + len(hits) >= limit or len(ranked) < candidates:
                break
            candidates *= 4
        hits = [*exact, *sorted(recency_boosted(hits, self._clock()), key=lambda h: h.score, reverse=True)]
        await self._used(hits[:limit], "exact" if exact else tier, started)
        return hits[:limit]

    async def _ranked(
        self, team: str, query: str, limit: int, kinds: Sequence[str] | None, since: datetime | None
    ) -> tuple[dict[int, float], str]:
        """Candidate memory ids with their relevance, and the tier that ranked them: what a backend supplies.
        Here: keywords in SQL, fused with vector similarity when there is an embedder."""
        if self._embedder is None:
            return await self._keyword_ranks(team, query, limit, kinds, since), "keyword"
        # The query's vector is made (in a thread) while the keywords are ranked.
        ranked, [vector] = await asyncio.gather(
            self._keyword_ranks(team, query, limit, kinds, since), self._embedder.embed([query])
        )
        # Each candidate of either list is scored by both, so that fusing these few ranks as fusing all would.
        similar = await self._similar(team, vector, limit, also=ranked)
        ranked |= await self._keyword_scores(team, query, [i for i in similar if i not in ranked])
        return fuse(ranked, similar, self._alpha), "hybrid"

    async def _keyword_ranks(
        self, team: str, query: str, limit: int, kinds: Sequence[str] | None, since: datetime | None
    ) -> dict[int, float]:
        """BM25 from the team's in-process index; the database's own ranking (FTS5's bm25(), PostgreSQL's
        ts_rank_cd) answers while the index is built."""
        terms = _TOKEN.findall(query.lower())
        async with self._units() as uow:
            session = uow.session
            index = await self._keyword_index(session, team)
            if index is not None:
                return index.ranked(self._words().terms(query), limit, kinds, since, self._clock())
            if not session.bind or session.bind.dialect.name == "sqlite":
                return await self._fts_ranks(session, team, terms, limit, kinds, since)
            return await self._postgres_ranks(session, team, terms, limit, kinds, since)

    async def _indexed(self, session: Any, memories: Sequence[Memory]) -> None:
        """Called inside the transaction that stores new memories (ids assigned): a backend with a separate
        index records them for it here, so that the record and the index cannot drift apart."""

    async def _unindexed(self, session: Any, removed: Sequence[tuple[str, int]]) -> None:
        """Called inside the transaction that deletes memories, with each one's (team, id)."""

    async def _similar(
        self, team: str, vector: Sequence[float], limit: int, also: Iterable[int] = ()
    ) -> dict[int, float]:
        """Cosine similarity of the query's vector to the team's stored vectors (unit length, so a dot product):
        the ``limit`` most similar, and those of ``also`` that have a vector."""
        import numpy as np  # installed with the embeddings extra, like the embedder itself

        ids, matrix = await self._team_vectors(team)
        if not len(ids):
            return {}
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        best = np.argpartition(-scores, min(limit, len(ids) - 1))[:limit]
        wanted = np.fromiter(also, dtype=np.int64)
        at = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)  # ids are in order
        return {int(ids[i]): float(scores[i]) for i in np.union1d(best, at[ids[at] == wanted])}

    async def _keyword_scores(self, team: str, query: str, ids: list[int]) -> dict[int, float]:
        """The keyword scores of these memories (those matching no word left out), by the same measure as the
        keyword ranking: the team's index, FTS5's bm25() while it is first built, PostgreSQL's ts_rank_cd."""
        if not ids:
            return {}
        async with self._units() as uow:
            session = uow.session
            terms = _TOKEN.findall(query.lower())
            index = await self._keyword_index(session, team)
            if index is not None:
                return index.scores_of(self._words().terms(query), ids)
            if not session.bind or session.bind.dialect.name == "sqlite":
                match = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
                sql = (
                    "SELECT rowid, -bm25(memory_fts) FROM memory_fts WHERE memory_fts MATCH :match "
                    "AND rowid IN :ids"
                )
            else:
                match = " | ".join(re.findall(r"\w+", " ".join(terms)))
                sql = (
                    "SELECT m.id, ts_rank_cd(m.text_search, q) FROM memory m, to_tsquery('english', :match) q "
                    "WHERE m.id IN :ids AND m.text_search @@ q"
                )
            if not match:
                return {}
            rows = await (await session.connection()).execute(
                text(sql).bindparams(bindparam("ids", ids, expanding=True)), {"match": match}
            )
            return {int(i): float(score) for i, score in rows.all()}

    @property
    def _vector_model(self) -> str | None:
        """The model this store's vectors are made with: only those are compared with a query's."""
        return self._embedder.model if self._embedder is not None else None

    async def _team_vectors(self, team: str) -> tuple[Any, Any]:
        """The team's vectors as one matrix, cached for a few seconds (writes here drop the cache; other
        replicas' new memories join within VECTOR_CACHE_SECONDS, and are found by keywords meanwhile). Rows
        forgotten or expired since are dropped later, when hits are mapped back to live SQL rows."""
        import numpy as np

        cached = self._vector_cache.get(team)
        if cached is not None and time.monotonic() - cached[0] < VECTOR_CACHE_SECONDS:
            return cached[1], cached[2]
        async with self._units() as uow:
            rows = (
                await uow.session.exec(
                    select(Memory.id, Memory.vector)
                    .where(
                        Memory.team_id == team,
                        col(Memory.vector).is_not(None),
                        Memory.vector_model == self._vector_model,
                        self._alive(),
                    )
                    .order_by(col(Memory.id))
                )
            ).all()
        ids = np.asarray([memory_id for memory_id, _ in rows], dtype=np.int64)
        matrix = (
            np.frombuffer(b"".join(v for _, v in rows if v), dtype=np.float32).reshape(len(rows), -1)
            if rows
            else np.zeros((0, 0), dtype=np.float32)
        )
        self._vector_cache[team] = (time.monotonic(), ids, matrix)
        return ids, matrix

    async def forget(self, team: str, memory_id: int) -> bool:
        async with self._units() as uow:
            removed = await self._deleted(
                uow.session, col(Memory.id) == memory_id, col(Memory.team_id) == team
            )
            await uow.commit()
        return bool(removed)

    async def export(self, team: str) -> list[dict[str, Any]]:
        async with self._units() as uow:
            rows = (
                await uow.session.exec(
                    select(Memory).where(Memory.team_id == team, self._alive()).order_by(col(Memory.id))
                )
            ).all()
        return [exported(row) for row in rows]

    async def import_records(self, team: str, records: Iterable[dict[str, Any]]) -> int:
        """Store exported memories in ``team`` as they were: timestamps, use count, lifetime, and vectors made by
        this store's model (other texts are embedded again, when there is an embedder). Every record is checked
        before anything is written, so a refused one (say, of another team) leaves the store as it was. Memories
        already expired are skipped; a text the team already holds stays as it is. Returns how many are new."""
        now = self._clock()
        checked: dict[str, tuple[int, dict[str, Any]]] = {}
        for number, record in enumerate(records, 1):
            row = memory_row(number, record, team, now)
            if row["expires_at"] is None or row["expires_at"] > now:
                checked.setdefault(row["content_hash"], (number, row))  # the same text twice: the first
        async with self._units() as uow:
            held = set(
                (await uow.session.exec(select(Memory.content_hash).where(Memory.team_id == team))).all()
            )
        new = [(number, row) for digest, (number, row) in checked.items() if digest not in held]
        await self._import_vectors(new)
        return await self._inserted(team, [row for _, row in new])

    async def _import_vectors(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        """Keep the imported vectors this store's model made (their length checked against the model's), and
        embed the other texts in batches. Without an embedder every vector is kept as given, with its model: a
        store that later embeds with that model searches by it, and one with another model ignores it."""
        embedder = self._embedder
        if embedder is None:
            return
        kept = [(number, row) for number, row in rows if row["vector_model"] == embedder.model]
        if kept:
            [probe] = await embedder.embed([kept[0][1]["text"]])
            for number, row in kept:
                if len(row["vector"]) != 4 * len(probe):
                    raise SnapshotError(
                        number,
                        f"its vector has {len(row['vector']) // 4} values, but {embedder.model} makes "
                        f"{len(probe)}; nothing was imported",
                    )
        missing = [row for _, row in rows if row["vector_model"] != embedder.model]
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            for row, vector in zip(batch, await embedder.embed([r["text"] for r in batch]), strict=True):
                row["vector"], row["vector_model"] = array("f", vector).tobytes(), embedder.model

    async def _inserted(self, team: str, rows: list[dict[str, Any]]) -> int:
        """Insert checked memories in batches, in one transaction (the keyword index's triggers fire as for any
        insert); a text the team has come to hold meanwhile is left out by ON CONFLICT DO NOTHING. Returns how
        many were inserted."""
        if not rows:
            return 0
        table = Memory.__table__  # type: ignore[attr-defined]
        inserted = 0
        async with self._units() as uow:
            session = uow.session
            connection = await session.connection()
            insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
            statement = insert(table).on_conflict_do_nothing().returning(table.c.id)
            for start in range(0, len(rows), IMPORT_BATCH):
                ids = (
                    (await connection.execute(statement, rows[start : start + IMPORT_BATCH])).scalars().all()
                )
                # Loaded rather than built from the values: a query loads rows faster than the model's constructor
                # builds them, and the row is then exactly what was stored.
                memories = (
                    await session.exec(select(Memory).where(col(Memory.id).in_(ids)).order_by(col(Memory.id)))
                ).all()
                await self._indexed(session, memories)
                inserted += len(memories)
            await uow.commit()
        self._vector_cache.pop(team, None)
        return inserted

    async def expire(self) -> int:
        async with self._units() as uow:
            removed = await self._deleted(uow.session, col(Memory.expires_at) <= self._clock())
            await uow.commit()
        return len(removed)

    async def _deleted(self, session: Any, *conditions: Any) -> list[tuple[str, int]]:
        """Delete the memories that meet ``conditions`` and tell the index which went, in the caller's
        transaction: DELETE … RETURNING names exactly the rows this statement deleted."""
        result = await session.exec(
            delete(Memory).where(*conditions).returning(col(Memory.team_id), col(Memory.id))
        )
        removed = [(str(team), int(memory_id)) for team, memory_id in result.all()]
        if removed:
            await self._unindexed(session, removed)
        return removed

    async def close(self) -> None:
        builds = list(self._index_builds.values())
        for build in builds:
            build.cancel()
        # awaited, so that none is still reading the database when the caller disposes of its engine
        await asyncio.gather(*builds, return_exceptions=True)

    async def maintain(self) -> dict[str, int]:
        counts = {"expired": await self.expire(), "summarised": 0, "over_cap": 0}
        if self._retention.summarise_after is not None:
            counts["summarised"] = await self._summarise(self._clock() - self._retention.summarise_after)
        for kind, cap in self._retention.cap.items():
            counts["over_cap"] += await self._hold_to_cap(kind, cap)
        if any(counts.values()):
            log.info("memory_maintained", **counts)
        return counts

    async def _summarise(self, older_than: datetime) -> int:
        """Fold old, little-used memories that share a key (say, one order) into one summary per key, which
        records the memories it replaced; the originals are then deleted. Returns how many were folded."""
        async with self._units() as uow:
            session = uow.session
            old = (
                await session.exec(
                    select(Memory)
                    .where(
                        col(Memory.created_at) < older_than,
                        col(Memory.use_count) <= SUMMARY_MAX_USES,
                        col(Memory.key).is_not(None),
                        col(Memory.kind) != SUMMARY_KIND,
                        self._alive(),
                    )
                    .order_by(col(Memory.id))
                )
            ).all()
            groups: dict[tuple[str, str, str], list[Memory]] = {}
            for memory in old:
                groups.setdefault((memory.team_id, memory.kind, memory.key or ""), []).append(memory)
            summaries: list[Memory] = []
            replaced: list[int] = []
            for (team, kind, key), members in groups.items():
                if len(members) < 2:
                    continue
                text_ = f"Summary of {len(members)} {kind} memories about {key}: " + " | ".join(
                    m.text for m in members
                )
                summaries.append(
                    Memory(
                        team_id=team,
                        kind=SUMMARY_KIND,
                        key=key,
                        text=text_,
                        content_hash=content_hash(text_),
                        meta={
                            "replaces": [m.id for m in members],
                            "kind": kind,
                            "from": min(m.created_at for m in members).isoformat(),
                            "to": max(m.created_at for m in members).isoformat(),
                        },
                        created_at=self._clock(),
                    )
                )
                replaced += [m.id for m in members if m.id is not None]
            await self._embedded(summaries)
            session.add_all(summaries)
            await session.flush()
            await self._indexed(session, summaries)
            removed = await self._deleted(session, col(Memory.id).in_(replaced)) if replaced else []
            await uow.commit()
        return len(removed)

    async def _hold_to_cap(self, kind: str, cap: int) -> int:
        """Delete, per team, the oldest and least used memories of ``kind`` beyond ``cap``."""
        deleted = 0
        async with self._units() as uow:
            session = uow.session
            teams = (await session.exec(select(Memory.team_id).where(Memory.kind == kind).distinct())).all()
            for team in teams:
                keep = (
                    select(Memory.id)
                    .where(Memory.team_id == team, Memory.kind == kind)
                    .order_by(col(Memory.use_count).desc(), col(Memory.created_at).desc())
                    .limit(cap)
                )
                deleted += len(
                    await self._deleted(
                        session,
                        col(Memory.team_id) == team,
                        col(Memory.kind) == kind,
                        col(Memory.id).not_in(keep),
                    )
                )
            await uow.commit()
        return deleted

    async def _alive_rows(self, team: str, ids: list[int]) -> dict[int, Memory]:
        """The rows of those memories still there and not expired; the keyword index is told of those gone."""
        if not ids:
            return {}
        async with self._units.read() as uow:
            rows = (
                await uow.session.exec(select(Memory).where(col(Memory.id).in_(ids), Memory.team_id == team))
            ).all()
        found = {row.id: row for row in rows if row.id is not None}
        held = self._keyword_indexes.get(team)
        if held is not None and len(found) < len(ids):
            held[0].forget([memory_id for memory_id in ids if memory_id not in found])
        now = self._clock()
        return {i: row for i, row in found.items() if row.expires_at is None or row.expires_at > now}

    def _alive(self) -> Any:
        return (col(Memory.expires_at).is_(None)) | (col(Memory.expires_at) > self._clock())

    @staticmethod
    async def _fts_ranks(
        session: Any,
        team: str,
        terms: list[str],
        limit: int,
        kinds: Sequence[str] | None,
        since: datetime | None,
    ) -> dict[int, float]:
        match = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        filters, values = _filters(kinds, since)
        rows = await (await session.connection()).execute(
            text(
                "SELECT m.id, bm25(memory_fts) AS rank FROM memory_fts JOIN memory m ON m.id = memory_fts.rowid "
                f"WHERE memory_fts MATCH :match AND m.team_id = :team{filters} ORDER BY rank, m.id DESC "
                "LIMIT :limit"
            ).bindparams(*values),
            {"match": match, "team": team, "limit": limit},
        )
        return {int(i): -float(rank) for i, rank in rows.all()}  # bm25(): lower is better

    def _words(self) -> Tokenizer:
        if self._tokenizer is None:
            from storage.memory.keyword_index import Tokenizer  # numpy: imported when first searched

            self._tokenizer = Tokenizer()
        return self._tokenizer

    async def _keyword_index(self, session: Any, team: str) -> TeamIndex | None:
        """The team's keyword index with the memories added since it was last asked (by any process: ids only
        grow; SQLite commits them in order, PostgreSQL may not, see _index_added); None while it is first built,
        in the background. An index past KEYWORD_INDEX_SECONDS keeps answering while its successor is built."""
        index = self._used_keyword_index(team)
        if index is not None and await self._index_added(session, team, index) is None:
            self._keyword_indexes.pop(team, None)  # a memory below those held came late: built again
            index = None
        if (index is None or time.monotonic() - index.built_at > KEYWORD_INDEX_SECONDS) and (
            team not in self._index_builds
        ):
            build = asyncio.create_task(self.warm(team))
            self._index_builds[team] = build
            build.add_done_callback(lambda _: self._index_builds.pop(team, None))
        return index

    async def warm(self, team: str) -> None:
        """Build the team's keyword index now (a search otherwise starts it, and is answered by the database's
        own ranking meanwhile)."""
        from storage.memory.keyword_index import TeamIndex

        index = TeamIndex(built_at=time.monotonic())
        while True:
            async with self._units() as uow:
                added = await self._index_added(uow.session, team, index)
            if added is None:
                index = TeamIndex(built_at=time.monotonic())
            elif added < KEYWORD_INDEX_BATCH:
                break
        self._keyword_indexes[team] = (index, time.monotonic())
        self._keyword_indexes.move_to_end(team)
        self._drop_unused_keyword_indexes()

    def _used_keyword_index(self, team: str) -> TeamIndex | None:
        held = self._keyword_indexes.get(team)
        if held is not None:
            self._keyword_indexes[team] = (held[0], time.monotonic())
            self._keyword_indexes.move_to_end(team)
        self._drop_unused_keyword_indexes()
        return held[0] if held is not None else None

    def _drop_unused_keyword_indexes(self) -> None:
        now = time.monotonic()
        while self._keyword_indexes:
            team, (_, used) = next(iter(self._keyword_indexes.items()))
            if (
                len(self._keyword_indexes) <= KEYWORD_INDEXES_KEPT
                and now - used <= KEYWORD_INDEX_IDLE_SECONDS
            ):
                return
            del self._keyword_indexes[team]

    async def _index_added(self, session: Any, team: str, index: TeamIndex) -> int | None:
        """Add to ``index`` the team's memories newer than it holds (a batch at most); returns how many, or None
        when a memory below the newest held has come since (the index must be built again).

        PostgreSQL commits ids out of order: a transaction can commit id 10 after another committed id 11, which
        an index taking ids above its newest would then never see. So ids are taken in for good only up to
        ``index.settled``: the newest id handed out at a moment when no other transaction held a write lock on
        the memory table (an INSERT holds it before it takes its id, until it ends), so that every id up to it
        was committed or abandoned by then. The ids held above it are checked against the table each time."""
        settling = session.bind is not None and session.bind.dialect.name == "postgresql"
        if settling:
            horizon, quiet = await _id_horizon(session)  # read before the rows, which are read after it
            settled, newest = index.settled, index.last_id
            if newest > settled:
                committed = (
                    await session.exec(
                        select(Memory.id).where(
                            Memory.team_id == team, col(Memory.id) > settled, col(Memory.id) <= newest
                        )
                    )
                ).all()
                if not index.holds(committed):
                    return None
        rows = (
            await session.exec(
                select(Memory.id, Memory.text, Memory.kind, Memory.created_at)
                .where(Memory.team_id == team, col(Memory.id) > index.last_id)
                .order_by(col(Memory.id))
                .limit(KEYWORD_INDEX_BATCH)
            )
        ).all()
        texts = [row[1] for row in rows]
        postings, lengths = (
            await asyncio.to_thread(self._words().postings, texts)
            if len(texts) > 100
            else self._words().postings(texts)
        )
        if rows and rows[0][0] > index.last_id:  # another search may have added them meanwhile
            index.add([(row[0], row[2], row[3]) for row in rows], postings, lengths)
        if settling and quiet:
            covered = rows[-1][0] if len(rows) == KEYWORD_INDEX_BATCH else horizon
            index.settled = max(index.settled, min(horizon, covered))
        return len(rows)

    @staticmethod
    async def _postgres_ranks(
        session: Any,
        team: str,
        terms: list[str],
        limit: int,
        kinds: Sequence[str] | None,
        since: datetime | None,
    ) -> dict[int, float]:
        """ts_rank_cd of the words in the english configuration (stemmed as the text is), any word matching, on
        the stored tsvector (text_search, a generated column) that ix_memory_text_search indexes."""
        words = re.findall(r"\w+", " ".join(terms))
        if not words:
            return {}
        filters, values = _filters(kinds, since)
        rows = await (await session.connection()).execute(
            text(
                "SELECT m.id, ts_rank_cd(m.text_search, q) AS rank FROM memory m, "
                "to_tsquery('english', :query) q WHERE m.team_id = :team AND m.text_search @@ q"
                f"{filters} ORDER BY rank DESC, m.id DESC LIMIT :limit"
            ).bindparams(*values),
            {"query": " | ".join(words), "team": team, "limit": limit},
        )
        return {int(i): float(rank) for i, rank in rows.all()}

    @staticmethod
    def _hit(row: Memory, score: float, tier: str) -> MemoryHit:
        assert row.id is not None
        return MemoryHit(row.id, row.text, row.kind, row.key, score, row.created_at, tier)

    async def _used(self, hits: list[MemoryHit], tier: str, started: float) -> None:
        log.info(
            "memory_retrieval",
            tier=tier,
            hits=len(hits),
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        if not hits:
            return
        async with self._units() as uow:
            await uow.session.exec(
                update(Memory)
                .where(col(Memory.id).in_([h.id for h in hits]))
                .values(last_used_at=self._clock(), use_count=Memory.use_count + 1)
            )
            await uow.commit()


async def _id_horizon(session: Any) -> tuple[int, bool]:
    """The newest memory id PostgreSQL has handed out, then whether no other transaction holds a write lock on
    the memory table in this database (pg_locks shows every database's); each a separate statement, so that the
    rows read next see whatever was committed by then."""
    connection = await session.connection()
    horizon = (
        await connection.execute(
            text("SELECT pg_sequence_last_value(pg_get_serial_sequence('memory', 'id'))")
        )
    ).scalar()
    quiet = (
        await connection.execute(
            text(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'memory'::regclass "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid())"
            )
        )
    ).scalar()
    return int(horizon or 0), bool(quiet)


def _about_another(key: str | None, named: Sequence[str], spaces: set[str | None]) -> bool:
    """Whether a memory's key names another entity of a kind the query names (order:1002 for "order 1001")."""
    if key is None:
        return False
    key = normalised_key(key) or key  # a key stored before keys were normalised: Order:#1002
    return key not in named and namespace(key) in spaces


def _filters(kinds: Sequence[str] | None, since: datetime | None) -> tuple[str, list[BindParameter[Any]]]:
    """The kind and time conditions of a keyword query on ``memory m``, as SQL and bound values."""
    sql, values = "", list[BindParameter[Any]]()
    if kinds is not None:
        sql += " AND m.kind IN :kinds"
        values.append(bindparam("kinds", list(kinds), expanding=True))
    if since is not None:
        sql += " AND m.created_at >= :since"
        values.append(bindparam("since", since, type_=UtcDateTime()))
    return sql, values


def _vector_bytes(vector: Sequence[float]) -> bytes:
    """A vector as the memory table stores it: float32, packed."""
    return array("f", vector).tobytes()
