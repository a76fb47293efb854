"""Every installed connector, whether it is in use, and whether the real system behind it answers.

What `aios connectors` prints. A real connector declares the settings that switch it on (``settings_names``);
one without any is local (a sandbox, or the budget ledger), and steps aside when a real one of its kind is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from connectors.actions import Action
from connectors.base import Closeable, ConnectorContext, ConnectorFactory, HealthCheckable
from connectors.registry import ENTRY_POINT_GROUP, ConnectsAtStart

HEALTH_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ConnectorStatus:
    name: str  # the entry point's name
    actions: tuple[str, ...]
    real: bool  # talks to a system outside the bot (False: a sandbox or ledger in the SQL store)
    in_use: bool
    state: str  # one line: in use, not configured (and what to set), replaced, or why it cannot start
    healthy: bool | None = None  # None: nothing to check (not in use, or local)


async def connector_statuses(
    context: ConnectorContext,
    *,
    wait_seconds: float = HEALTH_TIMEOUT_SECONDS,
    # Named connector classes (ConnectorFactory; typed Any because mypy cannot match a class object to a
    # protocol with class variables).
    factories: Sequence[tuple[str, Any]] | None = None,
) -> list[ConnectorStatus]:
    """Each connector (the installed ones unless ``factories`` names others), in order; those in use are
    health-checked concurrently."""
    if factories is None:
        factories = [(entry.name, entry.load()) for entry in entry_points(group=ENTRY_POINT_GROUP)]
    return list(await asyncio.gather(*(_status(name, f, context, wait_seconds) for name, f in factories)))


async def _status(
    name: str, factory: ConnectorFactory, context: ConnectorContext, wait_seconds: float
) -> ConnectorStatus:
    actions = tuple(_label(model) for model in factory.actions)
    needs: Sequence[str] = getattr(factory, "settings_names", ())
    real = bool(needs)
    try:
        connector = factory.configured(context)
    except Exception as exc:  # a malformed setting: the connector says which and how to fix it
        return ConnectorStatus(name, actions, real, False, f"cannot start: {exc}", healthy=False)
    if connector is None:
        state = f"not configured (set {', '.join(needs)})" if real else "replaced by a real connector"
        return ConnectorStatus(name, actions, real, False, state)
    try:
        try:
            async with asyncio.timeout(wait_seconds):
                # Actions known only once connected (an MCP server's tools) are listed as the bot would
                # offer them; a part that cannot be reached is named by the health check below.
                if isinstance(connector, ConnectsAtStart):
                    actions += tuple(_label(model) for model in await connector.connect())
                if not isinstance(connector, HealthCheckable):
                    state = "in use (it has no health check)" if real else "in use (local, in the SQL store)"
                    return ConnectorStatus(name, actions, real, True, state)
                return ConnectorStatus(name, actions, real, True, await connector.health(), healthy=True)
        except TimeoutError:
            state = f"no answer within {wait_seconds:.0f} s"
        except Exception as exc:
            state = str(exc) or type(exc).__name__
        return ConnectorStatus(name, actions, real, True, state, healthy=False)
    finally:
        if isinstance(connector, Closeable):
            await connector.close()


def _label(model: type[Action]) -> str:
    """The action's name, marked when it says it only reads or may destroy (an MCP tool's annotations)."""
    facts = getattr(model, "facts", None)
    marks = facts() if callable(facts) else {}
    if marks.get("read_only"):
        return f"{model.name} (read-only)"
    if marks.get("destructive"):
        return f"{model.name} (destructive)"
    return model.name
