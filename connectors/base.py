"""What a connector is, and what it is given when it is built."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from connectors.actions import Action
from storage.records import utcnow
from storage.unit_of_work import UnitOfWorkFactory


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector may need from the process; the composition root fills it in."""

    units_of_work: UnitOfWorkFactory
    shop_api_url: str | None = None  # a real shop's refunds API; unset → the sandbox shop
    shop_api_key: str | None = None
    http_timeout_seconds: float = 10.0
    # The real connectors' settings that are set, by environment name (STRIPE_API_KEY, AIOS_SMTP_URL, …).
    settings: Mapping[str, str] = field(default_factory=dict)
    # The bot's clock: a local connector that decides by the time (is a publish due?) reads this one.
    clock: Callable[[], datetime] = utcnow


class Connector(Protocol):
    actions: ClassVar[tuple[type[Action], ...]]

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        """Carry out ``action`` once per ``idempotency_key``: a repeat returns the first result."""
        ...

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        """The result of an earlier ``execute`` with this key, or None if the system never carried it out.

        Used after a crash to learn whether an execution in flight landed, instead of blindly repeating it."""
        ...


class ConnectorFactory(Protocol):
    actions: ClassVar[tuple[type[Action], ...]]

    @classmethod
    def configured(cls, context: ConnectorContext) -> Connector | None:
        """The connector, or None when the settings select another one for its actions."""
        ...


@runtime_checkable
class Prechecked(Protocol):
    async def refusal(self, action: Action) -> str | None:
        """Why the remote system is certain to refuse this valid action (no such post, more than is left to
        refund), asked before anyone is asked to approve it; None when it may run. Raises ConnectorError when
        the system cannot be asked just now."""
        ...


@runtime_checkable
class Seedable(Protocol):
    async def seed(self) -> None:
        """Create the connector's starting data if it is not there yet; safe to call at every start."""
        ...


@runtime_checkable
class HealthCheckable(Protocol):
    async def health(self) -> str:
        """Reach the real system with the configured credentials; one line saying what works (e.g. "authenticated
        as shop@example.com"). Raises ConnectorError saying what is wrong and which setting to fix."""
        ...


@runtime_checkable
class Closeable(Protocol):
    async def close(self) -> None:
        """Release connections at shutdown."""
        ...
