"""Long-term memory, scoped to a Slack team: the interface, the embedded store in the SQL database, and
Weaviate as an optional similarity tier (`storage.memory.weaviate`, imported only when configured)."""

from storage.memory.base import (
    EXPORT_FIELDS,
    MemoryHit,
    MemoryStore,
    MemoryStoreError,
    PreparedMemory,
    Retention,
    content_hash,
    record_incident,
)
from storage.memory.embedded import EmbeddedMemoryStore

__all__ = [
    "EXPORT_FIELDS",
    "EmbeddedMemoryStore",
    "MemoryHit",
    "MemoryStore",
    "MemoryStoreError",
    "PreparedMemory",
    "Retention",
    "content_hash",
    "record_incident",
]
