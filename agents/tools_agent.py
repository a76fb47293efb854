"""The tools agent: calls of the connected MCP servers' tools, for requests no other agent fits."""

from __future__ import annotations

from agents.base import Agent
from agents.llm import LLM
from connectors.mcp_tools import MCP_PREFIX
from connectors.registry import ConnectorRegistry
from storage.memory import MemoryStore


class ToolsAgent(Agent):
    """Proposes calls of the connected MCP servers' tools, for requests no other agent fits."""

    name = "tools"

    def __init__(self, llm: LLM, registry: ConnectorRegistry, memory: MemoryStore) -> None:
        super().__init__(llm, registry, memory)
        self.action_names = tuple(n for n in registry.action_names if n.startswith(MCP_PREFIX))
