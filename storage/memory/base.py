"""The memory interface: what every backend offers, what a hit is, and the helpers they share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from storage.records import Incident
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


# What a snapshot keeps of each memory besides its team (`storage.memory.snapshot`; the README describes them).
EXPORT_FIELDS = (
    "text",
    "kind",
    "key",
    "meta",
    "created_at",
    "last_used_at",
    "use_count",
    "expires_at",
    "vector",
    "vector_model",
)


class MemoryStoreError(Exception):
    """The memory store cannot do what was asked; the message says why."""


@dataclass(frozen=True)
class PreparedMemory:
    """A new memory's row (vector included) and its time to live, as :meth:`MemoryStore.prepare` made it."""

    values: dict[str, Any]
    ttl: timedelta | None


@dataclass(frozen=True)
class MemoryHit:
    id: int
    text: str
    kind: str
    key: str | None
    score: float
    created_at: datetime
    tier: str  # exact, keyword

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "kind": self.kind,
            "key": self.key,
            "score": round(self.score, 4),
            "created_at": self.created_at.isoformat(),
            "tier": self.tier,
        }


class MemoryStore(Protocol):
    async def remember(
        self,
        team: str,
        text: str,
        *,
        kind: str = "note",
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        ttl: timedelta | None = None,
    ) -> tuple[int, bool]:
        """Store a memory; returns its id and whether it is new (the same text twice is stored once)."""
        ...

    async def prepare(
        self,
        team: str,
        text: str,
        *,
        kind: str = "note",
        key: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> PreparedMemory | None:
        """A memory checked and given its vector (which may take seconds) with no transaction open, for
        :meth:`remember_within` to write in the caller's unit of work when this store keeps its memories in that
        database. None when it cannot (a remote index is written after the commit): the caller remembers it with
        :meth:`remember` after committing. A memory refused raises MemoryStoreError."""
        ...

    async def remember_within(self, uow: UnitOfWork, memory: PreparedMemory) -> None:
        """Write a prepared memory in the caller's open unit of work, to be committed (or not) with the rest of
        it."""
        ...

    async def lookup(self, team: str, *keys: str, limit: int = 5) -> list[MemoryHit]:
        """The newest ``limit`` live memories under each of ``keys`` (exact keys, as stored: ``order:1003``),
        key after key in the order given, newest first under each."""
        ...

    async def search(
        self,
        team: str,
        query: str,
        *,
        limit: int = 5,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[MemoryHit]: ...

    async def forget(self, team: str, memory_id: int) -> bool: ...

    async def export(self, team: str) -> list[dict[str, Any]]:
        """The team's live memories, oldest first, each as a snapshot line holds it (its team, EXPORT_FIELDS)."""
        ...

    async def import_records(self, team: str, records: Iterable[dict[str, Any]]) -> int:
        """Store exported memories in ``team`` as they were (timestamps, use count, lifetime, vector); returns how
        many are new. Every record is checked first: one refused (say, of another team) and nothing is written."""
        ...

    async def expire(self) -> int:
        """Delete memories past their time to live; returns how many."""
        ...

    async def maintain(self) -> dict[str, int]:
        """Retention: expire, fold old little-used memories into summaries, hold each kind to its cap."""
        ...

    async def close(self) -> None: ...


async def record_incident(units: UnitOfWorkFactory, kind: str, detail: str) -> None:
    """Note, for the digest, that something degraded (best effort: it must not fail what it reports on)."""
    try:
        async with units() as uow:
            await uow.add(Incident(kind=kind, detail=detail[:2000]))
            await uow.commit()
    except Exception as exc:
        log.error("incident_not_recorded", kind=kind, error=repr(exc))


def content_hash(text_: str) -> str:
    return hashlib.sha256(" ".join(text_.split()).lower().encode()).hexdigest()


@dataclass(frozen=True)
class Retention:
    """Per kind: a default time to live and a cap per team; and after how long memories are summarised."""

    ttl: dict[str, timedelta]
    cap: dict[str, int]
    summarise_after: timedelta | None = None

    @classmethod
    def none(cls) -> Retention:
        return cls({}, {}, None)


SUMMARY_KIND = "summary"
SUMMARY_MAX_USES = 1  # memories used more often than this are kept as they are
