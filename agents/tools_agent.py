"""The tools agent: calls of the connected MCP servers' tools and posts to the configured webhooks, for
requests no other agent fits."""

from __future__ import annotations

from agents.base import Agent, Context, PlanRequest
from agents.llm import LLM
from connectors.actions import WebhookPost
from connectors.mcp_tools import MCP_PREFIX
from connectors.registry import ConnectorRegistry
from connectors.webhooks import Webhooks
from storage.memory import MemoryStore

# The context line the webhooks' names are given on; the offline planner reads them from it.
WEBHOOKS_LINE = "configured webhooks (webhook_post's webhook): "


class ToolsAgent(Agent):
    """Proposes calls of the connected MCP servers' tools and signed posts to the configured webhooks."""

    name = "tools"

    def __init__(self, llm: LLM, registry: ConnectorRegistry, memory: MemoryStore) -> None:
        super().__init__(llm, registry, memory)
        self.action_names = tuple(
            n for n in registry.action_names if n.startswith(MCP_PREFIX) or n == WebhookPost.name
        )
        webhooks = registry.connector_for(WebhookPost.name) if WebhookPost.name in self.action_names else None
        # Names only: a webhook's url may hold a token, and neither it nor the secret is the model's business.
        self.webhook_names = webhooks.names if isinstance(webhooks, Webhooks) else ()

    async def context(self, request: PlanRequest) -> Context:
        """Which webhooks exist, by name."""
        if not self.webhook_names:
            return Context()
        return Context(lines=[WEBHOOKS_LINE + ", ".join(self.webhook_names)])
