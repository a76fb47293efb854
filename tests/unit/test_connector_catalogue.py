"""What `aios connectors` says about each connector: in use or not, what to set, and its health check."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from connectors.actions import Action, EmailSend
from connectors.base import ConnectorContext
from connectors.catalogue import connector_statuses
from connectors.errors import PermanentConnectorError
from storage.engine import create_engine
from storage.unit_of_work import UnitOfWorkFactory


class _Mailer:
    actions: ClassVar[tuple[type[Action], ...]] = (EmailSend,)
    settings_names: ClassVar[tuple[str, ...]] = ("AIOS_SMTP_URL",)
    answer: ClassVar[str | Exception] = "logged in as bot@example.com"
    delay: ClassVar[float] = 0.0
    closed: ClassVar[list[str]] = []

    @classmethod
    def configured(cls, context: ConnectorContext) -> Any:
        url = context.settings.get("AIOS_SMTP_URL")
        if url == "nonsense":
            raise ValueError("AIOS_SMTP_URL 'nonsense' is not smtp://user:password@host:port")
        return cls() if url else None

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        raise NotImplementedError

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    async def health(self) -> str:
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def close(self) -> None:
        self.closed.append(type(self).__name__)


class _Refusing(_Mailer):
    answer = PermanentConnectorError("the server refused the login; check AIOS_SMTP_URL's user and password")


class _Silent(_Mailer):
    delay = 5.0


class _Outbox:
    """A sandbox: no settings, no health check, steps aside for the real one."""

    actions: ClassVar[tuple[type[Action], ...]] = (EmailSend,)

    @classmethod
    def configured(cls, context: ConnectorContext) -> Any:
        return None if context.settings.get("AIOS_SMTP_URL") else cls()

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        raise NotImplementedError

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        raise NotImplementedError


def _context(**settings: str) -> ConnectorContext:
    # The connectors here never touch the store; the context only has to be a real one.
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    return ConnectorContext(units_of_work=UnitOfWorkFactory.for_engine(engine), settings=settings)


async def _statuses(factory: type[_Mailer], **settings: str) -> list[tuple[str, bool, str, bool | None]]:
    found = await connector_statuses(
        _context(**settings), wait_seconds=0.2, factories=[("outbox", _Outbox), ("smtp", factory)]
    )
    return [(s.name, s.in_use, s.state, s.healthy) for s in found]


async def test_without_settings_the_sandbox_serves_and_the_real_one_says_what_to_set() -> None:
    assert await _statuses(_Mailer) == [
        ("outbox", True, "in use (local, in the SQL store)", None),
        ("smtp", False, "not configured (set AIOS_SMTP_URL)", None),
    ]


async def test_a_configured_connector_is_health_checked_and_closed() -> None:
    _Mailer.closed.clear()
    assert await _statuses(_Mailer, AIOS_SMTP_URL="smtp://bot:pw@mail:587") == [
        ("outbox", False, "replaced by a real connector", None),
        ("smtp", True, "logged in as bot@example.com", True),
    ]
    assert _Mailer.closed == ["_Mailer"]


async def test_a_refused_login_a_silent_server_and_a_bad_setting_are_unhealthy_with_the_reason() -> None:
    [_, refused] = await _statuses(_Refusing, AIOS_SMTP_URL="smtp://bot:pw@mail:587")
    assert refused[1:] == (
        True,
        "the server refused the login; check AIOS_SMTP_URL's user and password",
        False,
    )
    [_, silent] = await _statuses(_Silent, AIOS_SMTP_URL="smtp://bot:pw@mail:587")
    assert silent[1:] == (True, "no answer within 0 s", False)
    [_, bad] = await _statuses(_Mailer, AIOS_SMTP_URL="nonsense")
    assert bad[1:] == (
        False,
        "cannot start: AIOS_SMTP_URL 'nonsense' is not smtp://user:password@host:port",
        False,
    )
