"""Agents: each gathers context, asks the planner for tool calls, and turns them into validated actions.

An invalid tool call goes back to the model as an error ``tool_result`` (it may fix it); it never reaches a
connector. A valid one becomes a proposed action; nothing here executes anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Protocol, runtime_checkable

from agents.amounts import SHOP_CURRENCY
from agents.context import memory_section
from agents.llm import LLM, CallContext, Message, ToolCall, ToolResult, ToolSpec
from agents.tools import tool_name, tool_spec
from connectors.actions import Action, ShopRefund
from connectors.errors import ConnectorError, InvalidActionError
from connectors.mcp_tools import MCP_PREFIX
from connectors.registry import ConnectorRegistry
from connectors.sandbox_shop import OrderInfo
from storage.memory import MemoryHit, MemoryStore

MAX_TURNS = 4
PROPOSED = (
    "Proposed. The team's policy will judge it; it has not run, and you cannot run or approve it yourself."
)
NOTHING_PROPOSED = "I didn't propose anything:"


@runtime_checkable
class OrderLookup(Protocol):
    async def get_order(self, order_id: int) -> OrderInfo | None: ...


@dataclass(frozen=True)
class PlanRequest:
    text: str
    requester: str
    call: CallContext
    history: Sequence[Message] = ()


@dataclass(frozen=True)
class Context:
    """What an agent knows before planning: facts for the prompt and the memories they came from."""

    lines: list[str] = field(default_factory=list)
    memory_ids: list[int] = field(default_factory=list)
    memories: list[MemoryHit] = field(default_factory=list)

    def add_memories(self, hits: Sequence[MemoryHit]) -> None:
        for hit in hits:
            if hit.id not in self.memory_ids:
                self.memory_ids.append(hit.id)
                self.memories.append(hit)

    def prompt(self) -> str:
        """The facts, then the memories in their own delimited data section."""
        facts = "Context:\n" + "\n".join(self.lines) if self.lines else ""
        return "\n\n".join(part for part in (facts, memory_section(self.memories)) if part)


@dataclass(frozen=True)
class AgentPlan:
    rationale: str
    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    memory_ids: list[int] = field(default_factory=list)


def load_prompt(name: str) -> str:
    return files("agents").joinpath("prompts", f"{name}.md").read_text(encoding="utf-8")


class Agent:
    """Plans with the LLM interface over the tools built from its actions; executes nothing."""

    name: str
    action_names: tuple[str, ...]
    # Actions of the agent's kind that only some connectors offer (Shopify's, say): the agent's tools include
    # those the configured connectors do, after its own.
    optional_action_names: tuple[str, ...] = ()

    def __init__(self, llm: LLM, registry: ConnectorRegistry, memory: MemoryStore) -> None:
        self._llm = llm
        self._registry = registry
        self._memory = memory
        self._prompt = load_prompt(self.name)
        if self.optional_action_names:
            offered = set(registry.action_names)
            self.action_names = (
                *self.action_names,
                *(n for n in self.optional_action_names if n in offered),
            )

    async def context(self, request: PlanRequest) -> Context:
        """Facts the planner needs, appended to the system prompt."""
        return Context()

    async def plan(self, request: PlanRequest) -> AgentPlan:
        models = [self._registry.model_for(name) for name in self.action_names]
        by_tool = {tool_name(model.name): model.name for model in models}
        tools = [tool_spec(model) for model in models]
        context = await self.context(request)
        system = "\n\n".join(part for part in (self._prompt, context.prompt()) if part)
        messages: list[Message] = [*request.history, Message("user", request.text)]
        actions: list[Action] = []
        texts: list[str] = []
        problems: list[str] = []
        for _ in range(MAX_TURNS):
            reply = await self._llm.complete(
                role="agent", system=system, messages=messages, tools=tools, call=request.call
            )
            if reply.text:
                texts.append(reply.text)
            if not reply.tool_calls:
                break
            results, problems = await self._judge_calls(reply.tool_calls, by_tool, actions)
            if not problems:
                break  # every call is proposed; another turn would only cost money
            messages += [
                Message("assistant", (reply.text, *reply.tool_calls)),
                Message("user", tuple(results)),
            ]
        if problems:
            # The plan is not what was asked (an email announcing a refund that cannot run, say): propose
            # none of it, and say why.
            return AgentPlan(rationale=NOTHING_PROPOSED, problems=problems, memory_ids=context.memory_ids)
        return AgentPlan(
            rationale="\n".join(texts).strip(),
            actions=actions,
            memory_ids=context.memory_ids,
        )

    async def refusal(self, action: Action) -> str | None:
        """Why the connector is certain to refuse this valid action, found before anyone is asked to approve
        it; None when it may run."""
        return None

    async def _judge_calls(
        self, calls: Sequence[ToolCall], by_tool: dict[str, str], actions: list[Action]
    ) -> tuple[list[ToolResult], list[str]]:
        results: list[ToolResult] = []
        problems: list[str] = []
        for call in calls:
            action_name = by_tool.get(call.name)
            try:
                if action_name is None:
                    raise InvalidActionError(
                        f"there is no tool {call.name!r}; use one of {', '.join(by_tool)}"
                    )
                action = self._registry.validate(action_name, call.input)
                if refused := await self.refusal(action):
                    raise InvalidActionError(refused)
                actions.append(action)
                results.append(ToolResult(call.id, PROPOSED))
            except InvalidActionError as exc:
                problems.append(str(exc))
                results.append(
                    ToolResult(call.id, f"Invalid input, nothing was proposed: {exc}", is_error=True)
                )
        return results, problems


class ReturnsAgent(Agent):
    name = "returns"
    action_names = ("shop.refund", "email.send")
    optional_action_names = (
        "shopify.refund",
        "shopify.tag_order",
        "shopify.note",
        "shopify.adjust_inventory",
    )

    def __init__(
        self, llm: LLM, registry: ConnectorRegistry, memory: MemoryStore, orders: OrderLookup
    ) -> None:
        super().__init__(llm, registry, memory)
        self._orders = orders

    async def context(self, request: PlanRequest) -> Context:
        """The orders mentioned, and what is remembered about each order and its customer (exact keys)."""
        texts = [request.text, *(m.text for m in request.history)]
        order_ids = sorted({int(n) for t in texts for n in re.findall(r"\b(\d{3,7})\b", t)})
        context = Context()
        lines = context.lines
        for order_id in order_ids:
            try:
                order = await self._orders.get_order(order_id)
            except ConnectorError as exc:
                lines.append(f"order {order_id}: could not be looked up just now ({exc})")
                continue
            if order is not None:
                lines.append(
                    f"order {order.id}: total ${order.total:.2f}, refundable ${order.refundable:.2f}, "
                    f"customer {order.customer_name.split()[0]} <{order.customer_email}>, item {order.item}"
                )
            team = request.call.team_id
            context.add_memories(await self._memory.lookup(team, f"order:{order_id}"))
            if order is not None:
                context.add_memories(await self._memory.lookup(team, f"customer:{order.customer_email}"))
        return context

    async def refusal(self, action: Action) -> str | None:
        """A refund the shop is certain to refuse (no such order, another currency, more than is left)."""
        if not isinstance(action, ShopRefund):
            return None
        try:
            order = await self._orders.get_order(action.order_id)
        except ConnectorError as exc:
            return f"order {action.order_id} could not be looked up just now ({exc}); try again shortly"
        if order is None:
            return f"there is no order {action.order_id} in the shop"
        if order.currency != SHOP_CURRENCY:
            return (
                f"order {order.id} was paid in {order.currency}, and refunds are made in {SHOP_CURRENCY} only"
            )
        if order.refundable <= 0:
            return f"order {order.id} has nothing left to refund"
        if action.amount > order.refundable + 1e-9:
            return (
                f"order {order.id} has ${order.refundable:,.2f} left to refund, so ${action.amount:,.2f} is "
                "more than can be refunded"
            )
        return None


class ContentAgent(Agent):
    name = "content"
    action_names = ("cms.create_draft", "cms.publish")

    async def context(self, request: PlanRequest) -> Context:
        """The team's brand-voice notes, and remembered posts that match the request."""
        context = Context()
        team = request.call.team_id
        context.add_memories(await self._memory.search(team, "brand voice style tone", kinds=["brand_voice"]))
        context.add_memories(await self._memory.search(team, request.text, limit=3, kinds=["post"]))
        return context


class ToolsAgent(Agent):
    """Proposes calls of the connected MCP servers' tools, for requests no other agent fits."""

    name = "tools"

    def __init__(self, llm: LLM, registry: ConnectorRegistry, memory: MemoryStore) -> None:
        super().__init__(llm, registry, memory)
        self.action_names = tuple(n for n in registry.action_names if n.startswith(MCP_PREFIX))


_ROUTES = (
    ("returns", re.compile(r"\b(refund|return|broken|damaged|cracked|replace(?:ment)?)\b", re.IGNORECASE)),
    ("content", re.compile(r"\b(draft|publish|schedule|post|article|blog)\b", re.IGNORECASE)),
)
ROUTE_TOOL = "route_to_agent"
DISPATCHER = "dispatcher"  # the agent name a run has until the dispatcher picks one


class Dispatcher:
    """Picks the agent for an intent: the exact grammar first, then the cheap model; None when neither can."""

    def __init__(self, agents: Sequence[Agent], llm: LLM) -> None:
        self.agents = {agent.name: agent for agent in agents}
        self._llm = llm
        self._prompt = load_prompt("dispatcher")

    async def route(self, text: str, call: CallContext, history: Sequence[Message] = ()) -> Agent | None:
        for name, pattern in _ROUTES:
            if name in self.agents and pattern.search(text):
                return self.agents[name]
        reply = await self._llm.complete(
            role="dispatch",
            system=self._prompt,
            messages=[*history, Message("user", text)],
            tools=[self._route_tool()],
            call=call,
        )
        for tool_call in reply.tool_calls:
            chosen = tool_call.input.get("agent") if tool_call.name == ROUTE_TOOL else None
            if isinstance(chosen, str) and chosen in self.agents:
                return self.agents[chosen]
        return None

    def _route_tool(self) -> ToolSpec:
        return ToolSpec(
            name=ROUTE_TOOL,
            description="Hand the request to the agent that can act on it. Omit the call if none fits.",
            input_schema={
                "type": "object",
                "properties": {
                    "agent": {"type": "string", "enum": sorted(self.agents)},
                    "reason": {"type": "string", "description": "One sentence: why this agent."},
                },
                "required": ["agent"],
            },
        )
