"""Agents: each gathers context, asks the planner for tool calls, and turns them into validated actions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Protocol, runtime_checkable

from agents.llm import LLM, Message
from agents.tools import tool_name, tool_spec
from connectors.actions import Action
from connectors.errors import InvalidActionError
from connectors.registry import ConnectorRegistry
from connectors.sandbox_shop import OrderInfo


@runtime_checkable
class OrderLookup(Protocol):
    async def get_order(self, order_id: int) -> OrderInfo | None: ...


@dataclass(frozen=True)
class PlanRequest:
    text: str
    requester: str
    history: Sequence[Message] = ()


@dataclass(frozen=True)
class AgentPlan:
    rationale: str
    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_prompt(name: str) -> str:
    return files("agents").joinpath("prompts", f"{name}.md").read_text(encoding="utf-8")


class Agent:
    """Plans with the LLM interface over the tools built from its actions; executes nothing."""

    name: str
    action_names: tuple[str, ...]

    def __init__(self, llm: LLM, registry: ConnectorRegistry) -> None:
        self._llm = llm
        self._registry = registry
        self._prompt = load_prompt(self.name)

    async def context(self, request: PlanRequest) -> str:
        """Facts the planner needs, appended to the system prompt."""
        return ""

    async def plan(self, request: PlanRequest) -> AgentPlan:
        models = [self._registry.model_for(name) for name in self.action_names]
        by_tool = {tool_name(model.name): model.name for model in models}
        context = await self.context(request)
        system = self._prompt + (f"\n\nContext:\n{context}" if context else "")
        reply = await self._llm.complete(
            system=system,
            messages=[*request.history, Message("user", request.text)],
            tools=[tool_spec(model) for model in models],
        )
        actions: list[Action] = []
        problems: list[str] = []
        for call in reply.tool_calls:
            action_name = by_tool.get(call.name)
            if action_name is None:
                problems.append(f"the planner asked for a tool this agent does not have: {call.name}")
                continue
            try:
                actions.append(self._registry.validate(action_name, call.input))
            except InvalidActionError as exc:
                problems.append(str(exc))
        return AgentPlan(rationale=reply.text, actions=actions, problems=problems)


class ReturnsAgent(Agent):
    name = "returns"
    action_names = ("shop.refund", "email.send")

    def __init__(self, llm: LLM, registry: ConnectorRegistry, orders: OrderLookup) -> None:
        super().__init__(llm, registry)
        self._orders = orders

    async def context(self, request: PlanRequest) -> str:
        texts = [request.text, *(m.content for m in request.history)]
        order_ids = sorted({int(n) for t in texts for n in re.findall(r"\b(\d{3,7})\b", t)})
        lines = []
        for order_id in order_ids:
            order = await self._orders.get_order(order_id)
            if order is not None:
                lines.append(
                    f"order {order.id}: total ${order.total:.2f}, refundable ${order.refundable:.2f}, "
                    f"customer {order.customer_name.split()[0]} <{order.customer_email}>, item {order.item}"
                )
        return "\n".join(lines)


class ContentAgent(Agent):
    name = "content"
    action_names = ("cms.create_draft", "cms.publish")


_ROUTES = (
    ("returns", re.compile(r"\b(refund|return|broken|damaged|cracked|replace(?:ment)?)\b", re.IGNORECASE)),
    ("content", re.compile(r"\b(draft|publish|schedule|post|article|blog)\b", re.IGNORECASE)),
)


class Dispatcher:
    """Picks the agent for an intent: an exact grammar first; None when nothing matches."""

    def __init__(self, agents: Sequence[Agent]) -> None:
        self.agents = {agent.name: agent for agent in agents}

    def route(self, text: str) -> Agent | None:
        for name, pattern in _ROUTES:
            if name in self.agents and pattern.search(text):
                return self.agents[name]
        return None
