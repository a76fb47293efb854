"""Which long-term memory store the settings ask for: the embedded one in the SQL database, with Weaviate as
its similarity tier when configured. Shared by the bot's start and the CLI's memory commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from bot.settings import MissingSettingError, Settings
from storage.embedding import Embedder, load_embedder
from storage.memory import EmbeddedMemoryStore, MemoryStore, Retention, record_incident
from storage.records import utcnow
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)


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
    """Weaviate answers similarity searches when configured and reachable; the SQL store is always the record,
    so when Weaviate is down the bot keeps serving with keyword search and says so in the log."""
    if not settings.weaviate_url:
        return EmbeddedMemoryStore(units, clock, retention, embedder=embedder_for(settings))
    # Imported here: the Weaviate client is slow to import and most installations do not use it.
    from storage.memory.weaviate import IndexedMemoryStore, MemoryIndexUnavailableError, WeaviateIndex

    embedder = embedder_for(settings)
    try:
        index = await WeaviateIndex.connect(settings.weaviate_url, settings.weaviate_api_key)
    except MemoryIndexUnavailableError as exc:
        log.error("memory_degraded", reason=str(exc), serving="sql search")
        await record_incident(units, "memory", f"started without Weaviate: {exc}")
        return EmbeddedMemoryStore(units, clock, retention, embedder)
    return IndexedMemoryStore(units, index, clock, retention, embedder)
