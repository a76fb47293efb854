"""The team's brand-voice notes: every memory of kind ``brand_voice``, read from the SQL record.

A search ranks memories by the words they share with a query, and a note such as "Plain, warm, specific; no
hype" shares none with any query about voice: the content agent and `/aios voice` need every note, newest
first, so they read them by kind instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import col, select

from storage.memory.base import MemoryHit
from storage.records import Memory
from storage.unit_of_work import UnitOfWorkFactory

BRAND_VOICE = "brand_voice"
MAX_NOTES = 20  # more than a prompt should carry; `/aios voice` says when there are more


class BrandVoice:
    def __init__(self, units: UnitOfWorkFactory, clock: Callable[[], datetime]) -> None:
        self._units = units
        self._clock = clock

    async def notes(self, team: str, *, limit: int = MAX_NOTES) -> list[MemoryHit]:
        """The team's live brand-voice notes, newest first, at most ``limit``."""
        alive = col(Memory.expires_at).is_(None) | (col(Memory.expires_at) > self._clock())
        query = (
            select(Memory)
            .where(Memory.team_id == team, Memory.kind == BRAND_VOICE, alive)
            .order_by(col(Memory.created_at).desc(), col(Memory.id).desc())
            .limit(limit)
        )
        async with self._units() as uow:
            rows = (await uow.session.exec(query)).all()
        return [
            MemoryHit(row.id or 0, row.text, row.kind, row.key, 1.0, row.created_at, "exact") for row in rows
        ]
