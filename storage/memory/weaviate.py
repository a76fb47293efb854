"""Weaviate as the search index of long-term memory (weaviate-client v4, async).

The SQL store stays the record (ids, keys, lifetimes, retention, exact lookups); every memory is also an object
in Weaviate, in its team's tenant (native multi-tenancy, one tenant per Slack team, created by the bot the first
time it needs it), which ranks searches: hybrid (BM25 + vectors, `alpha` weighting them) when there are vectors
(the bot's own, or the server's vectoriser), BM25 otherwise. Results are mapped back to SQL rows.

Record and index are kept in step by an outbox: the transaction that stores or deletes memories also writes a
``memory_index_queue`` row for each, and after the commit the queue is pushed to Weaviate and its rows deleted
once Weaviate has them. A push gives the index what the record holds at that moment (a memory still stored is
written, one gone is deleted), so pushing twice, late, or after a crash between the commit and the push ends the
same. When Weaviate cannot be reached, searches are served from SQL keywords, one incident is noted per outage,
and the store reconnects with backoff; the queue waits, and is drained as soon as Weaviate is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import stamina
import structlog
from sqlalchemy import delete, insert, literal, text, update
from sqlalchemy import select as select_columns
from sqlmodel import col, select

from storage.embedding import Embedder
from storage.memory.base import PreparedMemory, Retention, record_incident
from storage.memory.embedded import EmbeddedMemoryStore
from storage.memory.ranking import HYBRID_ALPHA
from storage.records import Memory, MemoryIndexQueue, UtcDateTime, utcnow
from storage.unit_of_work import UnitOfWorkFactory, awaiting_remote

if TYPE_CHECKING:
    from storage.memory.keyword_index import Tokenizer

T = TypeVar("T")
log = structlog.get_logger(__name__)

COLLECTION = "AiosMemory"
GRPC_PORT = 50051
PUSH_BATCH = 200  # queue rows pushed per round trip
PUSH_LOCK = 0x41494F534D49  # "AIOSMI": the advisory lock that makes replicas' pushes take turns (PostgreSQL)
# The client retries an unreachable gRPC server for about a minute before it gives up: too long to keep a person
# or a write waiting, so each call to Weaviate has a deadline of its own.
SEARCH_DEADLINE = 3.0  # seconds; past it, the search is answered from SQL
WRITE_DEADLINE = 20.0
RECONNECT_WAIT = (0.5, 30.0)  # seconds: the first wait before trying Weaviate again, and the longest
# A memory Weaviate refused is tried again this much later (a refusal seldom goes away by itself, but a fixed
# server or schema may take it), its queue row parked meanwhile so that the rest of the queue moves on.
REFUSED_RETRY = timedelta(days=1)
STEMMED = "stemmed"  # the property BM25 ranks: the text's terms as the SQL keyword search makes them
_TENANT_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")  # Weaviate also allows "-", kept for the digests below


class MemoryIndexUnavailableError(Exception):
    """Weaviate could not be reached, or failed the request as a whole."""


class MemoryIndexRefusedError(Exception):
    """Weaviate answered and refused these memories (``refused``: memory id → its reason); writing them again as
    they are will not help, while the rest of a batch was written."""

    def __init__(self, refused: dict[int, str]) -> None:
        super().__init__(f"Weaviate refused {len(refused)} memories: {next(iter(refused.values()))}")
        self.refused = refused


def tenant_name(team: str) -> str:
    """A team's tenant: its id when Weaviate takes it as a name (Slack's T… ids), else ``t-`` and a digest of it
    (any --team the CLI is given). An id kept as it is holds no hyphen, so the two kinds never meet."""
    if _TENANT_NAME.fullmatch(team):
        return team
    return "t-" + hashlib.sha256(team.encode()).hexdigest()[:40]


class WeaviateIndex:
    """One Weaviate collection with a tenant per team. ``open`` connects, and connects again after an outage."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        grpc_port: int = GRPC_PORT,
        alpha: float = HYBRID_ALPHA,
        vectoriser: str | None = None,
        collection: str = COLLECTION,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._grpc_port = grpc_port
        self._alpha = alpha
        self._vectoriser = vectoriser
        self.collection = collection
        self._client: Any = None
        self._tenants: set[str] = set()
        self._words: Tokenizer | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def open(self) -> bool:
        """Connect with a fresh client (an old one's gRPC channel may still be backing off from an outage) and
        create the collection when it is missing. True when it was: a new or emptied Weaviate, which then holds
        none of the memories the record holds."""
        import weaviate
        from weaviate.classes.init import AdditionalConfig, Auth, Timeout

        await self.close()
        parsed = urlparse(self._url)
        secure = parsed.scheme == "https"
        host = parsed.hostname or "localhost"
        client = weaviate.use_async_with_custom(
            http_host=host,
            http_port=parsed.port or (443 if secure else 8080),
            http_secure=secure,
            grpc_host=host,
            grpc_port=self._grpc_port,
            grpc_secure=secure,
            auth_credentials=Auth.api_key(self._api_key) if self._api_key else None,
            additional_config=AdditionalConfig(
                timeout=Timeout(init=5, query=SEARCH_DEADLINE, insert=WRITE_DEADLINE)
            ),
        )
        try:
            async with asyncio.timeout(WRITE_DEADLINE), awaiting_remote():
                created = await self._prepare(client)
        except Exception as exc:
            await client.close()
            raise MemoryIndexUnavailableError(
                f"Weaviate at {self._url} is not usable ({type(exc).__name__}: {exc}); check WEAVIATE_URL and "
                f"WEAVIATE_API_KEY, and that REST and gRPC (port {self._grpc_port}) are reachable"
            ) from exc
        self._client = client
        self._tenants = set()
        return created

    async def _prepare(self, client: Any) -> bool:
        from weaviate.classes.config import Configure, DataType, Property, Tokenization

        await client.connect()
        # Stemmed like memory_fts (Weaviate's BM25 has no stemmer); not vectorised: the vectoriser reads the text.
        stemmed = Property(name=STEMMED, data_type=DataType.TEXT, skip_vectorization=True)
        if await client.collections.exists(self.collection):
            collection = client.collections.use(self.collection)
            config = await collection.config.get()
            if any(prop.name == STEMMED for prop in config.properties):
                return False
            # A collection made before the stemmed property: its objects are written again to gain it.
            await collection.config.add_property(stemmed)
            return True
        vectors = (
            Configure.Vectors.text2vec_transformers()
            if self._vectoriser == "text2vec-transformers"
            else Configure.Vectors.self_provided()
        )
        await client.collections.create(
            self.collection,
            multi_tenancy_config=Configure.multi_tenancy(enabled=True, auto_tenant_creation=False),
            vector_config=vectors,
            properties=[
                Property(name="memory_id", data_type=DataType.INT, skip_vectorization=True),
                Property(name="text", data_type=DataType.TEXT),
                # Whole-value tokens, so a kind filter matches "brand_voice" and not "voice_note".
                Property(
                    name="kind",
                    data_type=DataType.TEXT,
                    skip_vectorization=True,
                    tokenization=Tokenization.FIELD,
                ),
                Property(
                    name="key",
                    data_type=DataType.TEXT,
                    skip_vectorization=True,
                    tokenization=Tokenization.FIELD,
                ),
                Property(name="created_at", data_type=DataType.DATE, skip_vectorization=True),
                stemmed,
            ],
        )
        return True

    async def _tenant(self, team: str) -> Any:
        """The team's tenant, created the first time this process needs it (another process may have created it
        first: that is fine). Raises UnexpectedStatusCodeError when Weaviate refuses it."""
        from weaviate.classes.tenants import Tenant
        from weaviate.exceptions import UnexpectedStatusCodeError

        if self._client is None:
            raise MemoryIndexUnavailableError("Weaviate is not connected")
        collection = self._client.collections.use(self.collection)
        name = tenant_name(team)
        if name not in self._tenants:
            try:
                await collection.tenants.create(Tenant(name=name))
            except UnexpectedStatusCodeError as exc:
                if "already exists" not in str(exc):
                    raise
            self._tenants.add(name)
        return collection.with_tenant(name)

    async def _writable(self, team: str, memory_ids: Sequence[int]) -> Any:
        """The team's tenant for a write; a tenant Weaviate refuses refuses every memory of the write."""
        from weaviate.exceptions import UnexpectedStatusCodeError

        try:
            return await self._tenant(team)
        except UnexpectedStatusCodeError as exc:
            if exc.status_code in (400, 422):
                raise MemoryIndexRefusedError(dict.fromkeys(memory_ids, exc.message)) from exc
            raise

    def _stemmed(self, text_: str) -> str:
        from storage.memory.keyword_index import Tokenizer

        if self._words is None:
            self._words = Tokenizer()
        return self._words.stemmed(text_)

    @staticmethod
    def uuid(team: str, memory_id: int) -> str:
        from weaviate.util import generate_uuid5

        return str(generate_uuid5(f"{team}:{memory_id}"))

    async def put(self, team: str, memories: Sequence[Memory], vector_model: str | None = None) -> None:
        """Write memories (replacing any with the same id), with their vectors when ``vector_model`` made them.
        Raises MemoryIndexRefusedError naming those Weaviate refused, once the others are written."""
        from weaviate.classes.data import DataObject

        objects = []
        ids = []
        for memory in memories:
            assert memory.id is not None
            ids.append(memory.id)
            ours = memory.vector and vector_model is not None and memory.vector_model == vector_model
            objects.append(
                DataObject(
                    properties={
                        "memory_id": memory.id,
                        "text": memory.text,
                        STEMMED: self._stemmed(memory.text),
                        "kind": memory.kind,
                        "key": memory.key or "",
                        "created_at": memory.created_at,
                    },
                    uuid=self.uuid(team, memory.id),
                    vector=list(array("f", memory.vector)) if ours and memory.vector else None,
                )
            )
        from weaviate.exceptions import WeaviateInsertManyAllFailedError

        try:
            async with _within(WRITE_DEADLINE, "a write"):
                result = await (await self._writable(team, ids)).data.insert_many(objects)
        except WeaviateInsertManyAllFailedError as exc:
            if "not found" in str(exc):  # the collection or the tenant is gone: opening again makes them
                raise MemoryIndexUnavailableError(str(exc)) from exc
            raise MemoryIndexRefusedError(dict.fromkeys(ids, str(exc))) from exc
        if result.has_errors:
            raise MemoryIndexRefusedError({ids[i]: error.message for i, error in result.errors.items()})

    async def remove(self, team: str, memory_ids: Sequence[int]) -> None:
        from weaviate.classes.query import Filter

        uuids = [self.uuid(team, memory_id) for memory_id in memory_ids]
        async with _within(WRITE_DEADLINE, "a delete"):
            result = await (await self._writable(team, memory_ids)).data.delete_many(
                where=Filter.by_id().contains_any(uuids)
            )
        if result.failed:
            raise MemoryIndexUnavailableError(
                f"Weaviate failed to delete {result.failed} of {len(uuids)} memories"
            )

    async def search(
        self,
        team: str,
        query: str,
        limit: int,
        kinds: Sequence[str] | None,
        vector: list[float] | None = None,
        since: datetime | None = None,
    ) -> tuple[dict[int, float], str]:
        """Memory ids with their scores, and the tier that ranked them: hybrid (BM25 + vectors, weighted by
        alpha) when there are vectors, the bot's for the query or the server's vectoriser; keyword (BM25)
        otherwise."""
        from weaviate.classes.query import Filter, HybridVector, MetadataQuery

        conditions = []
        if kinds:
            conditions.append(Filter.by_property("kind").contains_any(list(kinds)))
        if since is not None:
            conditions.append(Filter.by_property("created_at").greater_or_equal(since))
        filters = Filter.all_of(conditions) if conditions else None
        hybrid = vector is not None or bool(self._vectoriser)
        stemmed = self._stemmed(query)
        async with _within(SEARCH_DEADLINE, "a search"):
            query_api = (await self._tenant(team)).query
            if hybrid:
                result = await query_api.hybrid(
                    stemmed,
                    query_properties=[STEMMED],
                    # the server's vectoriser is given the words as written, not their stems
                    vector=vector if vector is not None else HybridVector.near_text(query),
                    alpha=self._alpha,
                    limit=limit,
                    filters=filters,
                    return_metadata=MetadataQuery(score=True),
                )
            else:
                result = await query_api.bm25(
                    stemmed,
                    query_properties=[STEMMED],
                    limit=limit,
                    filters=filters,
                    return_metadata=MetadataQuery(score=True),
                )
        tier = "hybrid" if hybrid else "keyword"
        ranks = {int(obj.properties["memory_id"]): float(obj.metadata.score or 0.0) for obj in result.objects}
        return ranks, tier

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


@contextlib.asynccontextmanager
async def _within(seconds: float, what: str) -> AsyncIterator[None]:
    """Around each call to Weaviate: a deadline, and no read transaction of ours waiting on it."""
    try:
        async with asyncio.timeout(seconds), awaiting_remote():
            yield
    except TimeoutError:
        raise MemoryIndexUnavailableError(f"Weaviate did not answer {what} within {seconds:g} s") from None


class IndexedMemoryStore(EmbeddedMemoryStore):
    """The embedded store as the record, with Weaviate ranking searches; the two kept in step by an outbox."""

    def __init__(
        self,
        units: UnitOfWorkFactory,
        index: WeaviateIndex,
        clock: Callable[[], datetime] = utcnow,
        retention: Retention | None = None,
        embedder: Embedder | None = None,
        *,
        reconnect_wait: tuple[float, float] = RECONNECT_WAIT,
    ) -> None:
        super().__init__(units, clock, retention, embedder)
        self._index = index
        self._up = index.connected
        self._reconnect_wait = reconnect_wait
        self._reconnecting: asyncio.Task[None] | None = None
        self._pushing = asyncio.Lock()
        self._postgres: bool | None = None

    @property
    def index_up(self) -> bool:
        """Whether Weaviate answers searches now (False: SQL does, while the store reconnects)."""
        return self._up

    async def start(self) -> None:
        """Connect unless connected, and push what a stopped process left in the queue. When Weaviate cannot be
        reached the store serves from SQL and keeps trying in the background. A collection just made (or given
        a new property) is filled from the whole record in the background too, as after an outage, and so is a
        queue longer than one push (a fill a stopped process left unfinished): starting, and the command that
        started the store, do not wait for it, and SQL answers searches meanwhile."""
        if not self._index.connected:
            try:
                created = await self._index.open()
            except MemoryIndexUnavailableError as exc:
                await self._went_down(f"started without Weaviate: {exc}")
                return
            if created:
                await self._queue_everything()
            if created or await self._due() > PUSH_BATCH:
                log.info("memory_index_filling")
                self._reconnecting = asyncio.create_task(self._catch_up(reopen=False))
                return
            self._up = True
        await self._push()

    async def _due(self) -> int:
        """Queue rows due now, counted up to one more than a push takes."""
        async with self._units() as uow:
            due = (
                select(MemoryIndexQueue.id)
                .where(col(MemoryIndexQueue.due_at) <= self._clock())
                .limit(PUSH_BATCH + 1)
            )
            return len((await uow.session.exec(due)).all())

    async def _queue_everything(self) -> None:
        """Queue every memory of the record for a Weaviate that has none: one just set up for a bot that already
        remembers things, or one that came back empty."""
        async with self._units() as uow:
            now = literal(self._clock(), UtcDateTime())
            memories = select_columns(col(Memory.team_id), col(Memory.id), literal("add"), now, now)
            await uow.session.exec(
                insert(MemoryIndexQueue).from_select(
                    ["team_id", "memory_id", "op", "created_at", "due_at"], memories
                )
            )
            await uow.commit()

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
        stored = await super().remember(team, text_, kind=kind, key=key, meta=meta, ttl=ttl)
        await self._push()
        return stored

    async def prepare(
        self,
        team: str,
        text_: str,
        *,
        kind: str = "note",
        key: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> PreparedMemory | None:
        """Not within another transaction: the memory is pushed to Weaviate after its own commit (a memory
        committed with the caller's work would wait in the queue until some later write pushed it)."""
        return None

    async def forget(self, team: str, memory_id: int) -> bool:
        forgotten = await super().forget(team, memory_id)
        await self._push()
        return forgotten

    async def import_records(self, team: str, records: Iterable[dict[str, Any]]) -> int:
        imported = await super().import_records(team, records)
        await self._push()
        return imported

    async def expire(self) -> int:
        expired = await super().expire()
        await self._push()
        return expired

    async def maintain(self) -> dict[str, int]:
        counts = await super().maintain()
        await self._push()
        return counts

    async def _indexed(self, session: Any, memories: Sequence[Memory]) -> None:
        session.add_all(self._queued(((m.team_id, m.id) for m in memories if m.id is not None), "add"))

    async def _unindexed(self, session: Any, removed: Sequence[tuple[str, int]]) -> None:
        session.add_all(self._queued(removed, "remove"))

    def _queued(self, memories: Iterable[tuple[str, int]], op: str) -> list[MemoryIndexQueue]:
        now = self._clock()
        return [
            MemoryIndexQueue(team_id=team, memory_id=memory_id, op=op, created_at=now, due_at=now)
            for team, memory_id in memories
        ]

    async def _ranked(
        self, team: str, query: str, limit: int, kinds: Sequence[str] | None, since: datetime | None
    ) -> tuple[dict[int, float], str]:
        if self._up:
            try:
                vector = (await self._embedder.embed([query]))[0] if self._embedder is not None else None
                return await self._index.search(team, query, limit, kinds, vector, since)
            except Exception as exc:
                await self._went_down(f"search fell back to SQL: {exc!r}")
        return await super()._ranked(team, query, limit, kinds, since)

    async def _push(self) -> None:
        """Bring the index up to date with the queue, unless Weaviate is down (reconnecting drains it then)."""
        if not self._up:
            return
        try:
            await self._drain()
        except Exception as exc:
            await self._went_down(f"the index could not be updated: {exc!r}")

    async def _drain(self) -> None:
        """Give Weaviate what the record holds for each queued memory, then delete those queue rows; a memory
        Weaviate refuses has its row parked for REFUSED_RETRY and is noted as an incident, so that one bad
        memory does not hold up the queue of every team.

        A memory's text never changes and a deleted one never comes back, so the one stale write there can be is
        a memory written to the index after a concurrent forget's push removed it. Pushes take turns (in this
        process; across replicas on PostgreSQL, by an advisory lock), and each push also reads the record again
        once its writes have landed and removes what went meanwhile, which covers two processes on one SQLite
        file."""
        async with self._one_push_at_a_time():
            while True:
                now = self._clock()
                async with self._units() as uow:
                    queued = (
                        await uow.session.exec(
                            select(MemoryIndexQueue)
                            .where(col(MemoryIndexQueue.due_at) <= now)  # refused rows wait their turn
                            .order_by(col(MemoryIndexQueue.id))
                            .limit(PUSH_BATCH)
                        )
                    ).all()
                if not queued:
                    return
                refused: dict[tuple[str, int], str] = {}
                present = await self._held({(q.team_id, q.memory_id) for q in queued})
                for team, memories in _by_team((m.team_id, m) for m in present.values()).items():
                    await self._refusing(refused, team, self._index.put(team, memories, self._vector_model))
                gone = {(q.team_id, q.memory_id) for q in queued} - set(present)
                went = set(present) - set(await self._held(set(present)))
                for team, memory_ids in _by_team(sorted(gone | went)).items():
                    await self._refusing(refused, team, self._index.remove(team, memory_ids))
                async with self._units() as uow:
                    session = uow.session
                    await session.exec(
                        delete(MemoryIndexQueue).where(
                            col(MemoryIndexQueue.id).in_(
                                [q.id for q in queued if (q.team_id, q.memory_id) not in refused]
                            )
                        )
                    )
                    for q in queued:
                        reason = refused.get((q.team_id, q.memory_id))
                        if reason is not None:
                            await session.exec(
                                update(MemoryIndexQueue)
                                .where(col(MemoryIndexQueue.id) == q.id)
                                .values(due_at=now + REFUSED_RETRY, refusal=reason[:2000])
                            )
                    await uow.commit()
                if refused:
                    await self._refused(refused)
                if len(queued) < PUSH_BATCH:
                    return

    @staticmethod
    async def _refusing(refused: dict[tuple[str, int], str], team: str, write: Awaitable[None]) -> None:
        """Run a write, adding what Weaviate refused of it to ``refused``; unreachability still raises."""
        try:
            await write
        except MemoryIndexRefusedError as exc:
            refused.update({(team, memory_id): reason for memory_id, reason in exc.refused.items()})

    async def _refused(self, refused: dict[tuple[str, int], str]) -> None:
        (team, memory_id), reason = next(iter(refused.items()))
        detail = (
            f"Weaviate refused {len(refused)} memories (first: M-{memory_id} of team {team}: {reason}); "
            f"searches may miss them until it takes them, tried again in {REFUSED_RETRY}"
        )
        log.error("memory_index_refused", memories=len(refused), detail=detail)
        await record_incident(self._units, "memory", detail)

    @contextlib.asynccontextmanager
    async def _one_push_at_a_time(self) -> AsyncIterator[None]:
        # The advisory lock is held by a transaction of its own while the push works in short ones; SQLite's
        # units of work cannot nest, and its writers are serialised anyway.
        async with self._pushing:
            if self._postgres is None:
                async with self._units() as uow:
                    bind = uow.session.bind
                    self._postgres = bind is not None and bind.dialect.name == "postgresql"
            if not self._postgres:
                yield
                return
            async with self._units() as lock:
                connection = await lock.session.connection()
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUSH_LOCK})
                yield

    async def _held(self, memories: set[tuple[str, int]]) -> dict[tuple[str, int], Memory]:
        """Those of these (team, id) memories that the record holds now."""
        if not memories:
            return {}
        async with self._units() as uow:
            rows = (
                await uow.session.exec(select(Memory).where(col(Memory.id).in_([i for _, i in memories])))
            ).all()
        return {(m.team_id, m.id): m for m in rows if m.id is not None and (m.team_id, m.id) in memories}

    async def _went_down(self, detail: str) -> None:
        """Serve from SQL and reconnect in the background; the incident is noted once per outage."""
        self._up = False
        if self._reconnecting is not None:
            return
        self._reconnecting = asyncio.create_task(self._catch_up())
        log.error("memory_index_unavailable", detail=detail, serving="sql search")
        await record_incident(self._units, "memory", detail)

    async def _catch_up(self, *, reopen: bool = True) -> None:
        """Push the queue until it is drained, connecting again first after an outage; then serve from Weaviate."""
        initial, longest = self._reconnect_wait
        try:
            # Whatever failed (Weaviate, or the database the queue is in), trying again later is all there is
            # to do.
            async for attempt in stamina.retry_context(
                on=Exception, attempts=None, timeout=None, wait_initial=initial, wait_max=longest
            ):
                with attempt:
                    if (reopen or attempt.num > 1) and await self._index.open():
                        await self._queue_everything()
                    await self._drain()
            self._up = True
            log.info("memory_index_restored")
        finally:
            self._reconnecting = None
        await self._push()  # what was written between the drain and now

    async def close(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        await self._index.close()
        await super().close()


def _by_team(items: Iterable[tuple[str, T]]) -> dict[str, list[T]]:
    teams: dict[str, list[T]] = {}
    for team, item in items:
        teams.setdefault(team, []).append(item)
    return teams
