"""What was sent to systems that cannot be asked afterwards (SMTP servers, webhook receivers), by idempotency key.

An SMTP server or a webhook receiver has no "did you get key K?" call, so the connector keeps its own record:
``lookup`` after a crash, and ``execute`` before sending again, read it here. A connector whose answer a crash
could lose notes a key as in flight (``begin``) before sending it: a key in flight and never recorded is one
that may or may not have been sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, select

from storage.records import SentMessage, utcnow
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory


class SentLedger:
    def __init__(self, units: UnitOfWorkFactory, channel: str) -> None:
        self._units = units
        self._channel = channel  # smtp, webhook

    async def find(self, idempotency_key: str) -> dict[str, Any] | None:
        """The result recorded when this key was sent, marked as a replay; None if it never was."""
        async with self._units() as uow:
            query = select(SentMessage).where(col(SentMessage.idempotency_key) == idempotency_key)
            sent = (await uow.session.exec(query)).first()
        if sent is None or sent.result.get(_IN_FLIGHT):
            return None
        return {**sent.result, "replayed": True}

    async def in_flight_since(self, idempotency_key: str) -> datetime | None:
        """When the key was noted as about to be sent, if it was and no answer was ever recorded."""
        async with self._units() as uow:
            sent = await self._row(uow, idempotency_key)
        return sent.sent_at if sent is not None and sent.result.get(_IN_FLIGHT) else None

    async def begin(self, idempotency_key: str, target: str) -> None:
        """Note that the key is about to be sent (kept as it is when it already was)."""
        await self._insert(idempotency_key, target, {_IN_FLIGHT: True})

    async def record(self, idempotency_key: str, target: str, result: dict[str, Any]) -> None:
        """Note that the key was sent, in place of its in-flight note. A second record of the same key keeps the
        first (ON CONFLICT DO NOTHING)."""
        if await self._insert(idempotency_key, target, result):
            return
        async with self._units() as uow:
            sent = await self._row(uow, idempotency_key)
            if sent is not None and sent.result.get(_IN_FLIGHT):
                sent.result, sent.sent_at = result, utcnow()
                uow.session.add(sent)
                await uow.commit()

    async def _insert(self, idempotency_key: str, target: str, result: dict[str, Any]) -> bool:
        # A core INSERT skips the model's Python-side defaults, so every NOT NULL column is given here.
        values = {
            "idempotency_key": idempotency_key,
            "channel": self._channel,
            "target": target[:320],
            "result": result,
            "sent_at": utcnow(),
        }
        async with self._units() as uow:
            inserted = await uow.insert_if_absent(SentMessage, values)
            await uow.commit()
        return inserted

    @staticmethod
    async def _row(uow: UnitOfWork, idempotency_key: str) -> SentMessage | None:
        query = select(SentMessage).where(col(SentMessage.idempotency_key) == idempotency_key)
        return (await uow.session.exec(query)).first()


_IN_FLIGHT = "in_flight"  # the result of a key noted before sending, until the answer replaces it
