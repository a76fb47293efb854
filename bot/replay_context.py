"""What an agent is given when a recorded run is planned again: the recorded memories instead of the memory
store, and connectors that offer the same actions but answer nothing. A replay must not reach a shop, a
payment system or a CMS (it would cost their quota, and tell the model what is true now, not then), nor
touch the store (a search marks memories used)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, ClassVar

from agents.base import Agent, Context
from agents.content import ContentAgent
from agents.llm import LLM
from agents.returns import ReturnsAgent
from agents.tools_agent import ToolsAgent
from connectors.actions import Action
from connectors.errors import PermanentConnectorError
from connectors.registry import ENTRY_POINT_GROUP, ConnectorRegistry
from connectors.sandbox_shop import OrderInfo
from storage.memory import MemoryHit, MemoryStoreError, PreparedMemory
from storage.unit_of_work import UnitOfWork


class _OffersOnly:
    """Stands in for every connector: offers their actions, and has no lookups, no prechecks, no execution."""

    actions: ClassVar[tuple[type[Action], ...]] = ()

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        raise PermanentConnectorError("a replay executes nothing")

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return None


def offered_actions(connector_settings: Mapping[str, str]) -> list[type[Action]]:
    """The actions the installed connectors offer with these settings, without building any connector: a real
    connector's when one of its settings is set, a local one's always (a real one of its kind offers the same
    names). An MCP server's tools are known only once connected, so they are not offered."""
    models: dict[str, type[Action]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        factory = entry_point.load()
        needs: Sequence[str] = getattr(factory, "settings_names", ())
        if needs and not any(connector_settings.get(name) for name in needs):
            continue
        for model in factory.actions:
            models.setdefault(model.name, model)
    return list(models.values())


def replay_registry(models: Iterable[type[Action]]) -> ConnectorRegistry:
    offers = type("ReplayConnector", (_OffersOnly,), {"actions": tuple(models)})
    return ConnectorRegistry([offers()])


class NoOrders:
    """The shop is not asked in a replay: no order is found."""

    async def get_order(self, order_id: int) -> OrderInfo | None:
        return None


class _ReturnsAgentUnchecked(ReturnsAgent):
    """The returns agent, planning as it does, minus its checks against the shop before approval (which would
    refuse every refund, since no order is found)."""

    async def refusal(
        self, action: Action, planned: Sequence[Action] = (), context: Context | None = None
    ) -> str | None:
        return None


class RecordedMemories:
    """The memories a run was given, answered to whatever the agent looks up or searches (a kind filter
    still applies), so the agent is given the same memories as then and nothing is marked used."""

    def __init__(self, hits: Sequence[MemoryHit]) -> None:
        self._hits = list(hits)

    async def lookup(self, team: str, *keys: str, limit: int = 5) -> list[MemoryHit]:
        return list(self._hits)

    async def search(
        self,
        team: str,
        query: str,
        *,
        limit: int = 5,
        kinds: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[MemoryHit]:
        return [hit for hit in self._hits if kinds is None or hit.kind in kinds]

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
        raise MemoryStoreError("a replay writes nothing")

    async def prepare(
        self,
        team: str,
        text: str,
        *,
        kind: str = "note",
        key: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> PreparedMemory | None:
        raise MemoryStoreError("a replay writes nothing")

    async def remember_within(self, uow: UnitOfWork, memory: PreparedMemory) -> None:
        raise MemoryStoreError("a replay writes nothing")

    async def forget(self, team: str, memory_id: int) -> bool:
        raise MemoryStoreError("a replay writes nothing")

    async def export(self, team: str) -> list[dict[str, Any]]:
        return []

    async def import_records(self, team: str, records: Iterable[dict[str, Any]]) -> int:
        raise MemoryStoreError("a replay writes nothing")

    async def expire(self) -> int:
        return 0

    async def maintain(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        return None


AGENTS = ("returns", "content", "tools")


def replay_agent(name: str, llm: LLM, registry: ConnectorRegistry, memories: Sequence[MemoryHit]) -> Agent:
    """The agent ``name`` as the bot builds it, on the replay's model, connectors and recorded memories."""
    memory = RecordedMemories(memories)
    if name == "returns":
        return _ReturnsAgentUnchecked(llm, registry, memory, NoOrders())
    if name == "content":
        return ContentAgent(llm, registry, memory)
    if name == "tools":
        return ToolsAgent(llm, registry, memory)
    raise ValueError(f"no agent named {name!r}; agents: {', '.join(AGENTS)}")
