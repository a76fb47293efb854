"""The dispatcher: which agent an intent goes to, or that a person should take it (no agent fits a task)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from opentelemetry import trace

from agents.base import ESCALATE_SPEC, ESCALATE_TOOL, Agent, Escalation, load_prompt, read_escalation
from agents.llm import LLM, CallContext, Message, ToolSpec
from agents.patterns import POLITE
from agents.tools_agent import ToolsAgent

_tracer = trace.get_tracer("aios.agents")
# "plan" alone is any plan (a refund, a trip): the calendar is asked for with a month, posts or articles, a weekly
# rhythm or the word calendar.
_CALENDAR_CUE = (
    r"(?=.*\b(?:calendar|posts?|articles?|weekly|(?:this|next)\s+month|\d{4}-\d{1,2}|\d{1,2}/\d{4}"
    r"|(?:jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)[a-z]*|may\s*(?::|\d{4})))"
)
_ROUTES = (
    (
        "scheduling",
        re.compile(
            rf"^\W*(?:please\s+)?plan\b{_CALENDAR_CUE}|\bcontent\s+calendar\b", re.IGNORECASE | re.DOTALL
        ),
    ),
    ("returns", re.compile(r"\b(refund|return|broken|damaged|cracked|replace(?:ment)?)\b", re.IGNORECASE)),
    ("content", re.compile(r"\b(draft|publish|schedule|post|article|blog)\b", re.IGNORECASE)),
)
ROUTE_TOOL = "route_to_agent"
DISPATCHER = "dispatcher"  # the agent name a run has until the dispatcher picks one


class Dispatcher:
    """Picks the agent for an intent: the exact grammar first, then the cheap model. The model may instead
    hand the request to a person (an :class:`Escalation`); None when nothing fits and nobody needs asking."""

    def __init__(self, agents: Sequence[Agent], llm: LLM) -> None:
        self.agents = {agent.name: agent for agent in agents}
        self._llm = llm
        self._prompt = load_prompt("dispatcher")
        self._webhooks = _webhook_route(agents)
        if self._webhooks is not None:
            names = ", ".join(self._webhooks[0].webhook_names)
            self._prompt += f"\nThe tools agent also posts JSON to the team's configured webhooks: {names}.\n"

    @_tracer.start_as_current_span("route")
    async def route_or_escalate(
        self, text: str, call: CallContext, history: Sequence[Message] = ()
    ) -> Agent | Escalation | None:
        if self._webhooks is not None and self._webhooks[1].search(text):
            return self._webhooks[0]
        if (name := route_name(text, self.agents)) is not None:
            return self.agents[name]
        reply = await self._llm.complete(
            role="dispatch",
            system=self._prompt,
            messages=[*history, Message("user", text)],
            tools=[self._route_tool(), ESCALATE_SPEC],
            call=call,
        )
        for tool_call in reply.tool_calls:
            chosen = tool_call.input.get("agent") if tool_call.name == ROUTE_TOOL else None
            if isinstance(chosen, str) and chosen in self.agents:
                return self.agents[chosen]
        escalate = next((c for c in reply.tool_calls if c.name == ESCALATE_TOOL), None)
        return read_escalation(escalate, reply.text.strip()) if escalate else None

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


def route_name(text: str, agents: Collection[str]) -> str | None:
    """The agent among ``agents`` whose words ``text`` uses, by the exact grammar; None: ask the model."""
    return next((name for name, pattern in _ROUTES if name in agents and pattern.search(text)), None)


def _webhook_route(agents: Sequence[Agent]) -> tuple[ToolsAgent, re.Pattern[str]] | None:
    """The agent that posts to webhooks, and the requests that name one: the word webhook, or ``notify
    <name>`` / ``send (or post) … to <name>`` with a configured name. They are tried before the other routes:
    a body often carries their words ({"event": "refund"}), and "post" is one of them."""
    agent = next((a for a in agents if isinstance(a, ToolsAgent) and a.webhook_names), None)
    if agent is None:
        return None
    names = "|".join(re.escape(n) for n in sorted(agent.webhook_names, key=len, reverse=True))
    name = rf"(?:the\s+)?(?:webhook\s+)?(?:{names})(?![\w-]|\.\w)"
    pattern = rf"\bwebhooks?\b|{POLITE}(?:notify\s+{name}|(?:send|post)\b.*?\bto\s+{name})"
    return agent, re.compile(pattern, re.IGNORECASE | re.DOTALL)
