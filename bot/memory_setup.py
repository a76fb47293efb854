"""Which long-term memory store the settings ask for: the embedded one in the SQL database, with Weaviate as
its search index when configured. Shared by the bot's start and the CLI's memory commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.settings import MissingSettingError, Settings
from storage.embedding import Embedder, load_embedder
from storage.memory import EmbeddedMemoryStore, MemoryStore, Retention
from storage.records import utcnow
from storage.unit_of_work import UnitOfWorkFactory


def embedder_for(settings: Settings) -> Embedder | None:
    if settings.memory_embeddings == "off":
        return None
    embedder = load_embedder()
    if embedder is None and settings.memory_embeddings == "on":
        raise MissingSettingError(
            "AIOS_MEMORY_EMBEDDINGS=on but the embeddings extra is not installed: pip install '.[embeddings]'"
        )
    return embedder


async def open_memory_store(
    settings: Settings,
    units: UnitOfWorkFactory,
    clock: Callable[[], datetime] = utcnow,
    retention: Retention | None = None,
) -> MemoryStore:
    """Weaviate ranks searches when configured; the SQL store is always the record. A Weaviate that cannot be
    reached at start (or later) leaves the bot serving from SQL while the store reconnects in the background."""
    embedder = embedder_for(settings)
    if not settings.weaviate_url:
        return EmbeddedMemoryStore(units, clock, retention, embedder=embedder)
    # Imported here: the Weaviate client is slow to import and most installations do not use it.
    from storage.memory.weaviate import IndexedMemoryStore, WeaviateIndex

    index = WeaviateIndex(
        settings.weaviate_url, settings.weaviate_api_key, grpc_port=settings.weaviate_grpc_port
    )
    store = IndexedMemoryStore(units, index, clock, retention, embedder)
    await store.start()
    return store
