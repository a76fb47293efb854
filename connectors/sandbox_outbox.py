"""A sandbox outbox on the SQL store: emails are recorded, not sent."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from connectors.actions import Action, EmailSend
from connectors.base import ConnectorContext
from storage.records import SandboxEmail


class SandboxOutbox:
    actions: ClassVar[tuple[type[Action], ...]] = (EmailSend,)

    @classmethod
    def configured(cls, context: ConnectorContext) -> SandboxOutbox | None:
        return cls(context)

    def __init__(self, context: ConnectorContext) -> None:
        self._units = context.units_of_work

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        async with self._units() as uow:
            query = select(SandboxEmail).where(SandboxEmail.idempotency_key == idempotency_key)
            email = (await uow.repo.session.exec(query)).first()
        return {"email_id": email.id, "to": email.to, "replayed": True} if email is not None else None

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, EmailSend)
        values = {
            "to": action.to,
            "subject": action.subject,
            "body": action.body,
            "idempotency_key": idempotency_key,
        }
        try:
            async with self._units() as uow:
                inserted = await uow.repo.insert_if_absent(SandboxEmail, values)
                await uow.commit()
        except IntegrityError:
            inserted = False
        async with self._units() as uow:
            query = select(SandboxEmail).where(SandboxEmail.idempotency_key == idempotency_key)
            email = (await uow.repo.session.exec(query)).one()
        return {"email_id": email.id, "to": email.to, "replayed": not inserted}
