"""Weaviate as the similarity tier of long-term memory (weaviate-client v4, async).

The SQL store stays the record (ids, keys, lifetimes, retention, exact lookups); every memory is also an object
in Weaviate, in its team's tenant (native multi-tenancy, one tenant per Slack team), found by hybrid search
(BM25 + vectors, `alpha` weighting them) when the server has a vectoriser module, by BM25 otherwise. Results
are mapped back to SQL rows, so anything forgotten or expired there never comes back from the index. When
Weaviate cannot be reached the store keeps serving from SQL keywords, and says so in the log.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import structlog

from storage.embedding import Embedder
from storage.memory.base import Retention, record_incident
from storage.memory.embedded import EmbeddedMemoryStore
from storage.records import Memory, utcnow
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

COLLECTION = "AiosMemory"
GRPC_PORT = 50051


class MemoryIndexUnavailableError(Exception):
    """Weaviate could not be reached or refused the request."""


class WeaviateIndex:
    def __init__(
        self, client: Any, *, alpha: float, vectoriser: str | None, collection: str = COLLECTION
    ) -> None:
        self._client = client
        self._alpha = alpha
        self._vectoriser = vectoriser
        self.collection = collection

    @classmethod
    async def connect(
        cls,
        url: str,
        api_key: str | None,
        *,
        alpha: float = 0.5,
        vectoriser: str | None = None,
        collection: str = COLLECTION,
    ) -> WeaviateIndex:
        import weaviate
        from weaviate.classes.config import Configure, DataType, Property
        from weaviate.classes.init import Auth

        parsed = urlparse(url)
        secure = parsed.scheme == "https"
        host = parsed.hostname or "localhost"
        client = weaviate.use_async_with_custom(
            http_host=host,
            http_port=parsed.port or (443 if secure else 8080),
            http_secure=secure,
            grpc_host=host,
            grpc_port=GRPC_PORT,
            grpc_secure=secure,
            auth_credentials=Auth.api_key(api_key) if api_key else None,
        )
        try:
            await client.connect()
            if not await client.collections.exists(collection):
                vectors = (
                    Configure.Vectors.text2vec_transformers()
                    if vectoriser == "text2vec-transformers"
                    else Configure.Vectors.self_provided()
                )
                await client.collections.create(
                    collection,
                    multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=True),
                    vector_config=vectors,
                    properties=[
                        Property(name="memory_id", data_type=DataType.INT, skip_vectorization=True),
                        Property(name="text", data_type=DataType.TEXT),
                        Property(name="kind", data_type=DataType.TEXT, skip_vectorization=True),
                        Property(name="key", data_type=DataType.TEXT, skip_vectorization=True),
                        Property(name="created_at", data_type=DataType.DATE, skip_vectorization=True),
                    ],
                )
        except Exception as exc:
            await client.close()
            raise MemoryIndexUnavailableError(
                f"Weaviate at {url} is not usable ({type(exc).__name__}: {exc}); check WEAVIATE_URL and "
                f"WEAVIATE_API_KEY, and that REST and gRPC ({GRPC_PORT}) are reachable"
            ) from exc
        return cls(client, alpha=alpha, vectoriser=vectoriser, collection=collection)

    def _tenant(self, team: str) -> Any:
        return self._client.collections.use(self.collection).with_tenant(team)

    @staticmethod
    def _uuid(team: str, memory_id: int) -> str:
        from weaviate.util import generate_uuid5

        return str(generate_uuid5(f"{team}:{memory_id}"))

    async def add(self, team: str, memory: Memory) -> None:
        """Index a memory, with the bot's own vector when it has one (else the server's vectoriser, if any)."""
        assert memory.id is not None
        await self._tenant(team).data.insert(
            properties={
                "memory_id": memory.id,
                "text": memory.text,
                "kind": memory.kind,
                "key": memory.key or "",
                "created_at": memory.created_at,
            },
            uuid=self._uuid(team, memory.id),
            vector=list(array("f", memory.vector)) if memory.vector else None,
        )

    async def remove(self, team: str, memory_id: int) -> None:
        await self._tenant(team).data.delete_by_id(self._uuid(team, memory_id))

    async def search(
        self,
        team: str,
        query: str,
        limit: int,
        kinds: Sequence[str] | None,
        vector: list[float] | None = None,
        since: datetime | None = None,
    ) -> dict[int, float]:
        """Hybrid search (BM25 + vectors, weighted by alpha) when there are vectors: the bot's for the query, or
        the server's vectoriser; BM25 alone otherwise."""
        from weaviate.classes.query import Filter, MetadataQuery

        conditions = []
        if kinds:
            conditions.append(Filter.by_property("kind").contains_any(list(kinds)))
        if since is not None:
            conditions.append(Filter.by_property("created_at").greater_or_equal(since))
        filters = Filter.all_of(conditions) if conditions else None
        query_api = self._tenant(team).query
        if vector is not None or self._vectoriser:
            result = await query_api.hybrid(
                query,
                vector=vector,
                alpha=self._alpha,
                limit=limit,
                filters=filters,
                return_metadata=MetadataQuery(score=True),
            )
        else:
            result = await query_api.bm25(
                query, limit=limit, filters=filters, return_metadata=MetadataQuery(score=True)
            )
        return {int(obj.properties["memory_id"]): float(obj.metadata.score or 0.0) for obj in result.objects}

    async def drop(self) -> None:
        """Delete the whole collection (tests)."""
        await self._client.collections.delete(self.collection)

    async def close(self) -> None:
        await self._client.close()


class IndexedMemoryStore(EmbeddedMemoryStore):
    """The embedded store as the record, with Weaviate answering similarity searches."""

    def __init__(
        self,
        units: UnitOfWorkFactory,
        index: WeaviateIndex,
        clock: Callable[[], datetime] = utcnow,
        retention: Retention | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(units, clock, retention, embedder)
        self._index = index

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
        memory_id, created = await super().remember(team, text_, kind=kind, key=key, meta=meta, ttl=ttl)
        if created:
            async with self._units() as uow:
                memory = await uow.repo.get(Memory, memory_id)
            try:
                assert memory is not None
                await self._index.add(team, memory)
            except Exception as exc:  # the record is safe in SQL; the index catches up when re-imported
                await self._incident(f"indexing M-{memory_id} failed: {exc!r}")
        return memory_id, created

    async def _ranked(
        self, team: str, query: str, limit: int, kinds: Sequence[str] | None, since: datetime | None
    ) -> tuple[dict[int, float], str]:
        try:
            vector = (await self._embedder.embed([query]))[0] if self._embedder is not None else None
            return await self._index.search(team, query, limit, kinds, vector, since), "similarity"
        except Exception as exc:
            await self._incident(f"search fell back to SQL keywords: {exc!r}")
            return await super()._ranked(team, query, limit, kinds, since)

    async def close(self) -> None:
        await self._index.close()

    async def forget(self, team: str, memory_id: int) -> bool:
        forgotten = await super().forget(team, memory_id)
        if forgotten:
            try:
                await self._index.remove(team, memory_id)
            except Exception as exc:  # searches map back to SQL rows, so a stale object is never returned
                await self._incident(f"removing M-{memory_id} from the index failed: {exc!r}")
        return forgotten

    async def _incident(self, detail: str) -> None:
        log.error("memory_index_unavailable", detail=detail)
        await record_incident(self._units, "memory", detail)
