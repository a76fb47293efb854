"""The records a model replay starts from: each run whose agent planned, with what its agent was given (the
request, the thread history, the memories, read by id) and what it proposed and spent. Reads only."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from agents.llm import Message
from bot.replay import Scope
from bot.replay_context import AGENTS
from storage.ids import format_id
from storage.memory import MemoryHit
from storage.records import Decision, Intent, LlmCall, Memory, ProposedAction, Run, RunStatus
from storage.unit_of_work import UnitOfWorkFactory

# Runs whose planning has not ended (or was stopped before the model was asked): nothing to compare with.
NOT_PLANNED = (RunStatus.PLANNING, RunStatus.PAUSED, RunStatus.OVER_BUDGET)
NOT_PLANNED_ACTIONS = ("budget.grant",)  # proposed by a person's button, not by the agent
PROPOSED_BY_CLIENT = "mcp"  # an MCP client's proposal: nothing was planned
PARAMS_SHOWN_MAX = 160


@dataclass(frozen=True)
class Proposal:
    """An action as proposed, and the policy's verdict on it."""

    name: str
    params: Mapping[str, Any]
    verdict: str
    rule_id: str | None
    facts: Mapping[str, Any] | None = None  # what the policy saw then (recorded proposals only)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "verdict": self.verdict, "rule": self.rule_id}

    def describe(self) -> str:
        params = json.dumps(dict(self.params), sort_keys=True)
        if len(params) > PARAMS_SHOWN_MAX:
            params = params[: PARAMS_SHOWN_MAX - 1] + "…"
        return f"{self.name} {params} ({self.verdict})"


@dataclass(frozen=True)
class Spend:
    calls: int = 0
    input_tokens: int = 0  # cache writes and reads included: what the model read
    output_tokens: int = 0
    cost: float = 0.0
    models: tuple[str, ...] = ()

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost=self.cost + other.cost,
            models=tuple(sorted({*self.models, *other.models})),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost, 6),
            "models": list(self.models),
        }


@dataclass(frozen=True)
class RecordedRun:
    run_id: int
    agent: str
    text: str
    requester: str
    channel: str
    team_id: str
    intent_id: int
    history: tuple[Message, ...] | None  # None: planned before the history was kept
    memories: tuple[MemoryHit, ...]
    memories_forgotten: tuple[int, ...]  # given then, deleted since
    proposals: tuple[Proposal, ...]
    planning: Spend  # the original's planning calls (role agent): what the replay stands against
    routing_cost: float  # the original's routing calls, which the replay does not repeat

    def notes(self) -> list[str]:
        run = format_id("R", self.run_id)
        notes = []
        if self.history is None:
            notes.append(f"{run}: its thread history was not recorded (planned before it was kept)")
        if self.memories_forgotten:
            forgotten = ", ".join(format_id("M", memory_id) for memory_id in self.memories_forgotten)
            notes.append(f"{run}: memory {forgotten} was forgotten since; replayed without it")
        return notes


async def load_runs(units: UnitOfWorkFactory, scope: Scope, agent: str | None) -> list[RecordedRun]:
    """The runs in scope whose agent planned (of ``agent`` only, when given), oldest first, with what their
    agent was given and what they proposed. Reads only."""
    query = (
        select(Run, Intent)
        .join(Intent, col(Intent.id) == col(Run.intent_id))
        .where(
            col(Run.agent).in_(AGENTS),
            col(Intent.source) != PROPOSED_BY_CLIENT,
            col(Run.status).not_in(list(NOT_PLANNED)),
        )
        .order_by(col(Run.id))
    )
    if scope.run_id is not None:
        query = query.where(col(Run.id) == scope.run_id)
    else:
        query = query.where(col(Run.created_at) >= scope.since)
    if agent is not None:
        query = query.where(col(Run.agent) == agent)
    async with units() as uow:
        session = uow.session
        rows = (await session.exec(query)).all()
        run_ids = [run.id for run, _ in rows]
        proposed = (
            await session.exec(
                select(ProposedAction, Decision)
                .join(Decision, col(Decision.action_id) == col(ProposedAction.id))
                .where(
                    col(ProposedAction.run_id).in_(run_ids),
                    col(ProposedAction.compensates).is_(None),
                    col(ProposedAction.name).not_in(NOT_PLANNED_ACTIONS),
                    col(Decision.kind) == "policy",
                )
                .order_by(col(ProposedAction.id))
            )
        ).all()
        calls = (await session.exec(select(LlmCall).where(col(LlmCall.run_id).in_(run_ids)))).all()
        memory_ids = sorted({memory_id for run, _ in rows for memory_id in run.memories_used})
        memories = {
            memory.id: memory
            for memory in (await session.exec(select(Memory).where(col(Memory.id).in_(memory_ids)))).all()
        }
    proposals: dict[int, list[Proposal]] = {}
    for action, decision in proposed:
        proposals.setdefault(action.run_id, []).append(
            Proposal(action.name, action.params, decision.verdict, decision.rule_id, decision.facts)
        )
    calls_by_run: dict[int, list[LlmCall]] = {}
    for call in calls:
        if call.run_id is not None:
            calls_by_run.setdefault(call.run_id, []).append(call)
    recorded = []
    for run, intent in rows:
        assert run.id is not None and intent.id is not None
        run_calls = calls_by_run.get(run.id, [])
        recorded.append(
            RecordedRun(
                run_id=run.id,
                agent=run.agent,
                text=intent.text,
                requester=intent.user,
                channel=intent.channel,
                team_id=intent.team_id,
                intent_id=intent.id,
                history=_history(run.history),
                memories=tuple(_hit(memories[m]) for m in run.memories_used if m in memories),
                memories_forgotten=tuple(m for m in run.memories_used if m not in memories),
                proposals=tuple(proposals.get(run.id, ())),
                planning=_spend([c for c in run_calls if c.role == "agent"]),
                routing_cost=sum(c.cost_usd for c in run_calls if c.role != "agent"),
            )
        )
    return recorded


def _history(recorded: list[dict[str, str]] | None) -> tuple[Message, ...] | None:
    if recorded is None:
        return None
    return tuple(
        Message("assistant" if entry.get("role") == "assistant" else "user", str(entry.get("text", "")))
        for entry in recorded
    )


def _hit(memory: Memory) -> MemoryHit:
    assert memory.id is not None
    return MemoryHit(memory.id, memory.text, memory.kind, memory.key, 1.0, memory.created_at, "exact")


def _spend(calls: Sequence[LlmCall]) -> Spend:
    return Spend(
        calls=len(calls),
        input_tokens=sum(c.input_tokens + c.cache_creation_tokens + c.cache_read_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        cost=sum(c.cost_usd for c in calls),
        models=tuple(sorted({c.model for c in calls})),
    )
