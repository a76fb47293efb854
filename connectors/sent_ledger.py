"""What was sent to systems that cannot be asked afterwards (SMTP servers, webhook receivers), by idempotency key.

An SMTP server or a webhook receiver has no "did you get key K?" call, so the connector keeps its own record:
``lookup`` after a crash, and ``execute`` before sending again, read it here.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from storage.records import SentMessage, utcnow
from storage.unit_of_work import UnitOfWorkFactory


class SentLedger:
    def __init__(self, units: UnitOfWorkFactory, channel: str) -> None:
        self._units = units
        self._channel = channel  # smtp, webhook

    async def find(self, idempotency_key: str) -> dict[str, Any] | None:
        """The result recorded when this key was sent, marked as a replay; None if it never was."""
        async with self._units() as uow:
            query = select(SentMessage).where(col(SentMessage.idempotency_key) == idempotency_key)
            sent = (await uow.repo.session.exec(query)).first()
        return {**sent.result, "replayed": True} if sent is not None else None

    async def record(self, idempotency_key: str, target: str, result: dict[str, Any]) -> None:
        """Note that the key was sent. A second record of the same key keeps the first (ON CONFLICT DO NOTHING)."""
        # A core INSERT skips the model's Python-side defaults, so every NOT NULL column is given here.
        values = {
            "idempotency_key": idempotency_key,
            "channel": self._channel,
            "target": target[:320],
            "result": result,
            "sent_at": utcnow(),
        }
        async with self._units() as uow:
            await uow.repo.insert_if_absent(SentMessage, values)
            await uow.commit()
