"""A sandbox outbox on the SQL store: emails are recorded, not sent."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlmodel import col, select

from connectors.actions import Action, EmailSend
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from storage.records import SandboxEmail, utcnow
from storage.unit_of_work import UnitOfWork


class SandboxOutbox:
    actions: ClassVar[tuple[type[Action], ...]] = (EmailSend,)

    @classmethod
    def configured(cls, context: ConnectorContext) -> SandboxOutbox | None:
        """Used unless a real SMTP server is configured."""
        return None if context.settings.get("AIOS_SMTP_URL") else cls(context)

    def __init__(self, context: ConnectorContext) -> None:
        self._units = context.units_of_work

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        async with self._units() as uow:
            email = await _email_by_key(uow, idempotency_key)
        return _email_result(email, replayed=True) if email is not None else None

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, EmailSend)
        domain = action.to.rpartition("@")[2].lower()
        if domain == "invalid" or domain.endswith(".invalid"):
            # Like a real mail server's 550 for a domain that cannot exist (RFC 2606 reserves .invalid).
            raise PermanentConnectorError(f"550 no such mailbox: {domain} receives no mail")
        # A core INSERT skips the model's Python-side defaults, so every NOT NULL column is given here.
        values = {
            "to": action.to,
            "subject": action.subject,
            "body": action.body,
            "idempotency_key": idempotency_key,
            "created_at": utcnow(),
        }
        async with self._units() as uow:
            # ON CONFLICT DO NOTHING: a repeat with the same key (even a concurrent one) inserts nothing and
            # answers with the email the first call recorded.
            inserted = await uow.insert_if_absent(SandboxEmail, values)
            email = await _email_by_key(uow, idempotency_key)
            await uow.commit()
        assert email is not None
        return _email_result(email, replayed=not inserted)


async def _email_by_key(uow: UnitOfWork, key: str) -> SandboxEmail | None:
    query = select(SandboxEmail).where(col(SandboxEmail.idempotency_key) == key)
    return (await uow.session.exec(query)).first()


def _email_result(email: SandboxEmail, *, replayed: bool) -> dict[str, Any]:
    return {"email_id": email.id, "to": email.to, "replayed": replayed}
