"""What every agent is: it gathers context, asks the planner for tool calls, and turns them into validated actions.

An invalid tool call goes back to the model as an error ``tool_result`` (it may fix it); it never reaches a
connector. A valid one becomes a proposed action; nothing here executes anything. Besides its action tools every
agent is offered ``escalate_to_human``: a call of it ends the plan as an escalation to a person, with nothing
proposed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files

from opentelemetry import trace

from agents.context import memory_section
from agents.llm import LLM, CallContext, Message, ToolCall, ToolResult, ToolSpec
from agents.tools import tool_name, tool_spec
from connectors.actions import Action
from connectors.errors import InvalidActionError
from connectors.registry import ConnectorRegistry
from storage.memory import MemoryHit, MemoryStore

_tracer = trace.get_tracer("aios.agents")
MAX_TURNS = 4
PROPOSED = (
    "Proposed. The team's policy will judge it; it has not run, and you cannot run or approve it yourself."
)
NOTHING_PROPOSED = "I didn't propose anything:"
ESCALATE_TOOL = "escalate_to_human"
ESCALATE_SPEC = ToolSpec(
    name=ESCALATE_TOOL,
    description=(
        "Hand the request to a person instead of guessing: when it is outside what your tools are for, "
        "ambiguous about money (which amount, which order or payment), or contradicts what the context or "
        "memory says. Nothing is proposed; the team's approvers are asked in the thread, and the run waits "
        "for their answer."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "reason": {"type": "string", "description": "One sentence: why you cannot decide this yourself."},
            "question": {
                "type": "string",
                "description": "What the person should answer so the work can go on.",
            },
        },
        "required": ["reason", "question"],
        "additionalProperties": False,
    },
)
DEFAULT_QUESTION = "How should I go on with this request?"


FEEDBACK_ASK = (
    "Propose only a replacement for the rejected action, following the reviewer, or answer without a tool if it "
    "cannot be done. Do not propose the plan's other actions again: they stand as they are."
)


@dataclass(frozen=True)
class Feedback:
    """A reviewer rejected a proposed action and said why: the plan is made again to follow them."""

    action: str  # the rejected action's name (shop.refund)
    summary: str  # as people were shown it
    params: Mapping[str, object]
    rejected_by: str
    reason: str
    # The same plan's other actions, each with its status: (name, params, status). One already executed is
    # never proposed again by the revision.
    others: tuple[tuple[str, Mapping[str, object], str], ...] = ()

    @property
    def tool(self) -> str:
        return tool_name(self.action)

    def turn(self) -> str:
        """The final user turn of the conversation the planner is given."""
        others = "".join(
            f"\n- {tool_name(name)} {_json(params)}: {status}" for name, params, status in self.others
        )
        also = f" The same plan's other actions, which stand as they are:{others}\n" if others else " "
        return (
            f"Your proposed action {self.tool} {_json(self.params)} ({self.summary}) was rejected by a "
            f"reviewer, <@{self.rejected_by}>, who said: “{self.reason}”.{also}{FEEDBACK_ASK}"
        )

    def executed(self, action: Action) -> bool:
        """The action is one of the plan's others that already ran: proposing it again would do it twice."""
        params = action.model_dump(mode="json")
        return any(
            name == action.name and dict(done) == params and status == "executed"
            for name, done, status in self.others
        )


@dataclass(frozen=True)
class FeedbackTurn(Message):
    """The feedback turn as the agent puts it in the conversation: its text for a model, and the feedback
    itself for a planner without one. Only the agent makes one, from :attr:`PlanRequest.feedback`; words a
    person typed are a plain :class:`~agents.llm.Message`, whatever they say."""

    feedback: Feedback | None = None


def _json(params: Mapping[str, object]) -> str:
    return json.dumps(params, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class PlanRequest:
    text: str
    requester: str
    call: CallContext
    history: Sequence[Message] = ()
    feedback: Feedback | None = None  # planning again after a reviewer rejected the first plan's action
    context: Context | None = None  # what the agent's own context() found, when read already


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
class Escalation:
    """A planner's request for a person: why it will not decide, and what it needs answered."""

    reason: str
    question: str


def read_escalation(call: ToolCall, said: str) -> Escalation:
    """The escalation an ``escalate_to_human`` call asks for. A call that leaves a field out still escalates
    (asking a person is the safe way out): the reply's text stands in for a missing reason."""
    reason, question = call.input.get("reason"), call.input.get("question")
    return Escalation(
        reason=reason.strip() if isinstance(reason, str) and reason.strip() else said or "no reason given",
        question=question.strip() if isinstance(question, str) and question.strip() else DEFAULT_QUESTION,
    )


@dataclass(frozen=True)
class AgentPlan:
    rationale: str
    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    memory_ids: list[int] = field(default_factory=list)
    escalation: Escalation | None = None  # set: nothing is proposed, a person is asked


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

    @_tracer.start_as_current_span("plan")
    async def plan(self, request: PlanRequest) -> AgentPlan:
        models = [self._registry.model_for(name) for name in self.action_names]
        by_tool = {tool_name(model.name): model.name for model in models}
        tools = [*(tool_spec(model) for model in models), ESCALATE_SPEC]
        context = request.context if request.context is not None else await self.context(request)
        system = "\n\n".join(part for part in (self._prompt, context.prompt()) if part)
        messages: list[Message] = [*request.history, Message("user", request.text)]
        if request.feedback is not None:
            messages.append(FeedbackTurn("user", request.feedback.turn(), request.feedback))
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
            escalate = next((c for c in reply.tool_calls if c.name == ESCALATE_TOOL), None)
            if escalate is not None:
                # Whatever else the model called in the same turn is dropped: it asked for a person.
                return AgentPlan(
                    rationale="\n".join(texts).strip(),
                    memory_ids=context.memory_ids,
                    escalation=read_escalation(escalate, reply.text.strip()),
                )
            results, problems = await self._judge_calls(reply.tool_calls, by_tool, actions, context)
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
        if request.feedback is not None:
            # A revision replaces the rejected action; one of the plan's actions that already ran is not redone.
            repeated = [a for a in actions if request.feedback.executed(a)]
            actions = [a for a in actions if a not in repeated]
            texts += [
                f"({a.name} already ran in the first plan, so it is not proposed again.)" for a in repeated
            ]
        return AgentPlan(
            rationale="\n".join(texts).strip(),
            actions=actions,
            memory_ids=context.memory_ids,
        )

    async def refusal(
        self, action: Action, planned: Sequence[Action] = (), context: Context | None = None
    ) -> str | None:
        """Why the connector is certain to refuse this valid action, found before anyone is asked to approve
        it; None when it may run. ``planned``: the actions proposed before it in the same plan; ``context``: what
        :meth:`context` read for the same plan, when there is one."""
        return await self._registry.refusal(action)

    async def _judge_calls(
        self, calls: Sequence[ToolCall], by_tool: dict[str, str], actions: list[Action], context: Context
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
                if refused := await self.refusal(action, actions, context):
                    raise InvalidActionError(refused)
                actions.append(action)
                results.append(ToolResult(call.id, PROPOSED))
            except InvalidActionError as exc:
                problems.append(str(exc))
                results.append(
                    ToolResult(call.id, f"Invalid input, nothing was proposed: {exc}", is_error=True)
                )
        return results, problems
