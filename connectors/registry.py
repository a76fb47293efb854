"""Finds connectors through the ``aios.connectors`` entry points and routes each action to its connector."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from connectors.actions import Action
from connectors.base import Closeable, Connector, ConnectorContext, ConnectorFactory, Prechecked, Seedable
from connectors.errors import ConnectorError, InvalidActionError, UnknownActionError
from connectors.redaction import Redactor, scrubbing

ENTRY_POINT_GROUP = "aios.connectors"

_tracer = trace.get_tracer("aios.connectors")
log = structlog.get_logger(__name__)


@runtime_checkable
class ConnectsAtStart(Protocol):
    async def connect(self) -> tuple[type[Action], ...]:
        """Reach the remote system and return the actions it offers, known only then (an MCP server's
        tools); what cannot be reached is left out, not raised."""
        ...


class ConnectorRegistry:
    """Every result, refusal and error of a connector passes through here, and leaves with the configured
    secrets (``redactor``) taken out: whatever a connector or its library lets slip stops at this seam."""

    def __init__(self, connectors: Iterable[Connector], redactor: Redactor | None = None) -> None:
        self._by_action: dict[str, tuple[type[Action], Connector]] = {}
        self._connectors = list(connectors)
        self.redactor = redactor if redactor is not None else Redactor()
        for connector in self._connectors:
            self._add(connector, connector.actions)

    def _add(self, connector: Connector, models: Iterable[type[Action]]) -> None:
        for model in models:
            if model.name in self._by_action:
                raise ValueError(f"two connectors offer the action {model.name!r}")
            self._by_action[model.name] = (model, connector)

    async def connect(self) -> None:
        """Let connectors whose actions are known only once connected reach their systems, and add them."""
        for connector in self._connectors:
            if isinstance(connector, ConnectsAtStart):
                self._add(connector, await connector.connect())

    @classmethod
    def discover(cls, context: ConnectorContext, redactor: Redactor | None = None) -> ConnectorRegistry:
        """The installed connectors their settings switch on; a malformed setting raises its connector's
        ConnectorSettingError."""
        redactor = redactor if redactor is not None else Redactor()
        factories: list[ConnectorFactory] = [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]
        with scrubbing(redactor):
            connectors = [factory.configured(context) for factory in factories]
        return cls((connector for connector in connectors if connector is not None), redactor)

    @property
    def action_names(self) -> list[str]:
        return sorted(self._by_action)

    def model_for(self, name: str) -> type[Action]:
        try:
            return self._by_action[name][0]
        except KeyError:
            raise UnknownActionError(
                f"no connector offers {name!r}; known actions: {', '.join(self.action_names)}"
            ) from None

    def validate(self, name: str, params: Mapping[str, Any]) -> Action:
        model = self.model_for(name)
        try:
            return model.model_validate(dict(params))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or name}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidActionError(f"{name}: {problems}") from exc

    def connector_for(self, action_name: str) -> Connector:
        self.model_for(action_name)
        return self._by_action[action_name][1]

    @contextmanager
    def _span(self, call: str, action: Action) -> Iterator[None]:
        """A span per connector call; what it records of a failure is what leaves here, secrets taken out."""
        attributes = {"aios.action": action.name, "aios.connector": self.connector_label(action.name)}
        with _tracer.start_as_current_span(
            f"{call} {action.name}", kind=SpanKind.CLIENT, attributes=attributes
        ):
            yield

    def connector_label(self, action_name: str) -> str:
        """The name metrics and traces give the connector of an action (its class: SandboxShop, StripeRefunds)."""
        return type(self._by_action[action_name][1]).__name__

    async def refusal(self, action: Action) -> str | None:
        """Why the action's connector is certain to refuse it, asked before approval; None when it may run
        (or its connector cannot tell). A system that cannot be asked just now refuses too: nobody should
        approve what cannot be checked."""
        _, connector = self._by_action[action.name]
        if not isinstance(connector, Prechecked):
            return None
        try:
            with self._span("refusal", action), scrubbing(self.redactor):
                refusal = await connector.refusal(action)
        except ConnectorError as exc:
            return f"{action.name} could not be checked just now ({exc}); try again shortly"
        except Exception:
            # A bug or an answer the connector did not expect: this one action cannot be checked, and the rest
            # of the plan still can. The exception was scrubbed on its way out, so its logged text holds no secret.
            log.exception("refusal_check_failed", action=action.name)
            return f"{action.name} could not be checked just now; try again shortly"
        return self.redactor.text(refusal) if refusal is not None else None

    async def seed(self) -> None:
        """Let connectors that keep local state (the sandboxes) create their starting data."""
        seen: set[int] = set()
        for _, connector in self._by_action.values():
            if id(connector) not in seen and isinstance(connector, Seedable):
                await connector.seed()
            seen.add(id(connector))

    async def close(self) -> None:
        for connector in self._connectors:
            if isinstance(connector, Closeable):
                await connector.close()

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        _, connector = self._by_action[action.name]
        with self._span("execute", action), scrubbing(self.redactor):
            result = await connector.execute(action, idempotency_key)
        redacted: dict[str, Any] = self.redactor.data(result)
        return redacted

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        _, connector = self._by_action[action.name]
        with self._span("lookup", action), scrubbing(self.redactor):
            found = await connector.lookup(action, idempotency_key)
        redacted: dict[str, Any] | None = self.redactor.data(found)
        return redacted


def installed_action_params() -> dict[str, list[str]]:
    """Each action the installed connectors offer → its parameter names, without building a connector: what
    a policy's conditions are checked against when it loads."""
    return {
        model.name: sorted(model.model_fields)
        for entry_point in entry_points(group=ENTRY_POINT_GROUP)
        for model in entry_point.load().actions
    }


def params_hash(action: Action) -> str:
    """A hash of the action's name and exact parameters: what an approval is bound to."""
    canonical = json.dumps(
        {"name": action.name, "params": action.model_dump(mode="json")}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key(action_id: int, action: Action) -> str:
    """The same approved action always yields the same key, so no retry or second click can repeat it."""
    canonical = json.dumps(
        {"action_id": action_id, "name": action.name, "params": action.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
