"""Model-change impact: recorded runs planned again by another model, from what each run's agent was given
(the request, the thread history and the memories recorded with the run), the proposals judged under the
policy in force with the facts recorded then, and compared with what happened.

Nothing is executed and nothing is written: the agents get connectors that answer no lookups (see
:mod:`bot.replay_context`), and the replay's model calls are counted here, not in the team's ledger.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agents.base import PlanRequest, load_prompt
from agents.budgets import CHARS_PER_TOKEN, period_key
from agents.llm import (
    LLM,
    MAX_OUTPUT_TOKENS,
    CallContext,
    LLMError,
    LLMReply,
    LLMWrapper,
    Message,
    Role,
    ToolSpec,
    Usage,
)
from agents.pricing import PriceTable
from agents.tools import tool_spec
from bot.replay import Scope
from bot.replay_context import replay_agent
from bot.replay_records import Proposal, RecordedRun, Spend, load_runs
from connectors.actions import Action
from connectors.errors import InvalidActionError, UnknownActionError
from connectors.registry import ConnectorRegistry
from policies.engine import Policy, PolicyVerdict
from policies.replay import RecordedDecision, replay
from storage.ids import format_id
from storage.records import BudgetAccount, utcnow
from storage.unit_of_work import UnitOfWorkFactory

TEXT_SHOWN_MAX = 60
RUNS_SHOWN_MAX = 200
NOT_REPEATED = (
    "Live lookups were not repeated: no order, Stripe payment or WordPress post was looked up and the "
    "shop's checks before approval were skipped, so the model planned from the request, the recorded thread "
    "and the recorded memories only."
)


class Outcome(enum.StrEnum):
    SAME = "same"
    DIFFERENT_ACTION = "different action"
    DIFFERENT_PARAMETERS = "different parameters"
    NOTHING_PROPOSED = "nothing proposed"
    MODEL_ERROR = "model error"


MARK = {
    Outcome.SAME: "=",
    Outcome.DIFFERENT_ACTION: "≠",
    Outcome.DIFFERENT_PARAMETERS: "~",
    Outcome.NOTHING_PROPOSED: "∅",
    Outcome.MODEL_ERROR: "!",
}


@dataclass(frozen=True)
class Estimate:
    """What the replay is expected to cost, before any call, and whether the team's budgets leave room."""

    model: str
    runs: int
    input_tokens: int
    output_tokens: int
    cost: float
    from_records: int  # runs estimated from their recorded calls (the others: from the prompt's length)
    original: Spend
    over_budget: str | None = None  # the budget that has too little left, in words

    def lines(self) -> list[str]:
        counted = (
            f"{self.from_records} from their recorded model calls, {self.runs - self.from_records} from the "
            "length of their prompts"
        )
        return [
            f"{self.runs} runs to re-plan with {self.model}: about {self.input_tokens:,} input and "
            f"{self.output_tokens:,} output tokens, estimated ${self.cost:.4f} ({counted}).",
            f"Their original planning cost ${self.original.cost:.4f}"
            + (f" ({', '.join(self.original.models)})." if self.original.models else "."),
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "runs": self.runs,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost, 6),
            "runs_estimated_from_records": self.from_records,
        }


async def estimate(
    units: UnitOfWorkFactory,
    runs: Sequence[RecordedRun],
    model: str,
    prices: PriceTable,
    policy: Policy,
    tools_of: Callable[[str], Sequence[ToolSpec]],
    clock: Callable[[], datetime] = utcnow,
) -> Estimate:
    """Each run's tokens from its recorded planning calls, or from the length of its prompt (rounded up, with
    the longest answer allowed) when it has none (planned offline), priced for ``model``; then checked
    against what the policy's budgets have left today for the runs' agents, channels and team."""
    input_tokens = output_tokens = from_records = 0
    per_run: list[tuple[RecordedRun, float]] = []
    for run in runs:
        if run.planning.input_tokens:
            usage = Usage(input_tokens=run.planning.input_tokens, output_tokens=run.planning.output_tokens)
            from_records += 1
        else:
            usage = Usage(
                input_tokens=_prompt_tokens(run, tools_of(run.agent)), output_tokens=MAX_OUTPUT_TOKENS
            )
        input_tokens += usage.input_tokens
        output_tokens += usage.output_tokens
        per_run.append((run, prices.cost(model, usage)))
    original = sum((run.planning for run in runs), Spend())
    total = sum(cost for _, cost in per_run)
    over = await _over_budget(units, per_run, policy, clock())
    return Estimate(model, len(runs), input_tokens, output_tokens, total, from_records, original, over)


def _prompt_tokens(run: RecordedRun, tools: Sequence[ToolSpec]) -> int:
    chars = (
        len(load_prompt(run.agent))
        + len(json.dumps([t.input_schema for t in tools]))
        + sum(len(t.description) for t in tools)
        + sum(len(m.text) for m in run.history or ())
        + sum(len(hit.text) + 60 for hit in run.memories)  # each memory's JSON line around its text
        + len(run.text)
    )
    return chars // CHARS_PER_TOKEN + 1


async def _over_budget(
    units: UnitOfWorkFactory, per_run: Sequence[tuple[RecordedRun, float]], policy: Policy, now: datetime
) -> str | None:
    """The first budget the replay's estimate would pass, counted as the runs' own calls would be (by agent,
    channel, team, this period); None when every budget has room. Reads the accounts, reserves nothing."""
    needed: dict[str, float] = {}
    budgets = {}
    for run, cost in per_run:
        scope = {"agent": run.agent, "channel": run.channel, "team": run.team_id}
        for budget in policy.budgets_for(agent=run.agent, channel=run.channel, team=run.team_id):
            key = f"{budget.id}:{scope[budget.scope]}:{period_key(budget, now)}"
            needed[key] = needed.get(key, 0.0) + cost
            budgets[key] = (budget, scope[budget.scope])
    if not needed:
        return None
    async with units() as uow:
        for key, cost in needed.items():
            budget, scope_value = budgets[key]
            account = await uow.get(BudgetAccount, key)
            left = account.available_usd if account is not None else budget.limit_usd
            if cost > left:
                return (
                    f"the replay may cost ${cost:.4f} against budget {budget.id} ({budget.scope} {scope_value}), "
                    f"which has ${max(left, 0.0):.4f} left this {budget.period}; replay fewer runs (--agent, a "
                    "shorter --since) or use a cheaper model"
                )
    return None


class CountedLLM(LLMWrapper):
    """The replay's model. Its calls are counted here and nowhere else: they are not the team's runs, so they
    are kept out of the ledger, the budgets and the metrics."""

    def __init__(self, inner: LLM, prices: PriceTable) -> None:
        super().__init__(inner)
        self._prices = prices
        self.spend = Spend()

    async def complete(
        self,
        *,
        role: Role,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        call: CallContext,
    ) -> LLMReply:
        reply = await self._inner.complete(
            role=role, system=system, messages=messages, tools=tools, call=call
        )
        usage = reply.usage
        model = self._inner.model_for(role)
        self.spend += Spend(
            calls=1,
            input_tokens=usage.input_tokens
            + usage.cache_creation_input_tokens
            + usage.cache_read_input_tokens,
            output_tokens=usage.output_tokens,
            cost=self._prices.cost(model, usage),
            models=(model,),
        )
        return reply


@dataclass(frozen=True)
class RunReplay:
    run: RecordedRun
    outcome: Outcome
    proposals: tuple[Proposal, ...] = ()
    rationale: str = ""
    spend: Spend = field(default_factory=Spend)
    facts_partly_reconstructed: bool = False
    error: str | None = None

    @property
    def verdicts_changed(self) -> bool:
        if self.outcome is Outcome.MODEL_ERROR:
            return False
        return [p.verdict for p in self.run.proposals] != [p.verdict for p in self.proposals]

    def line(self) -> str:
        run = self.run
        text = run.text if len(run.text) <= TEXT_SHOWN_MAX else run.text[: TEXT_SHOWN_MAX - 1] + "…"
        then = "; ".join(p.describe() for p in run.proposals) or "nothing"
        head = f"{MARK[self.outcome]} {format_id('R', run.run_id)} {run.agent} {json.dumps(text)}"
        if self.outcome is Outcome.MODEL_ERROR:
            return f"{head}: the model did not answer ({self.error})"
        if self.outcome is Outcome.SAME:
            line = f"{head}: {then} — same"
        else:
            now = "; ".join(p.describe() for p in self.proposals) or "nothing"
            line = f"{head}: then {then} → now {now} — {self.outcome}"
        if self.verdicts_changed:
            line += ", verdict changed"
        if self.facts_partly_reconstructed:
            line += " [facts partly reconstructed]"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "run": format_id("R", self.run.run_id),
            "agent": self.run.agent,
            "text": self.run.text,
            "outcome": str(self.outcome),
            "then": [p.as_json() for p in self.run.proposals],
            "now": [p.as_json() for p in self.proposals],
            "verdict_changed": self.verdicts_changed,
            "rationale": self.rationale,
            "original_planning": self.run.planning.as_json(),
            "replay": self.spend.as_json(),
            "facts_partly_reconstructed": self.facts_partly_reconstructed,
            "error": self.error,
            "notes": self.run.notes(),
        }


async def replay_run(
    run: RecordedRun, llm: CountedLLM, registry: ConnectorRegistry, policy: Policy
) -> RunReplay:
    """Plan the run's request again with the agent's own ``plan()`` on the replay's model, and judge what it
    proposes. A model that does not answer (after its retries) is this run's outcome, not the replay's end,
    unless the request itself is refused (a key or a model name): then every run would fail, so it raises."""
    agent = replay_agent(run.agent, llm, registry, run.memories)
    call = CallContext(
        intent_id=run.intent_id,
        agent=run.agent,
        requester=run.requester,
        channel=run.channel,
        team_id=run.team_id,
        run_id=run.run_id,
    )
    before = llm.spend
    try:
        plan = await agent.plan(PlanRequest(run.text, run.requester, call, run.history or ()))
    except LLMError as exc:
        if not exc.transient:
            raise
        return RunReplay(
            run, Outcome.MODEL_ERROR, spend=_less(llm.spend, before), error=exc.kind.replace("_", " ")
        )
    judged, partial = judge(policy, run, plan.actions)
    rationale = "\n".join([plan.rationale, *plan.problems]).strip()
    return RunReplay(
        run,
        compare(run.proposals, judged, registry),
        tuple(judged),
        rationale,
        _less(llm.spend, before),
        partial,
    )


def _less(after: Spend, before: Spend) -> Spend:
    return Spend(
        calls=after.calls - before.calls,
        input_tokens=after.input_tokens - before.input_tokens,
        output_tokens=after.output_tokens - before.output_tokens,
        cost=after.cost - before.cost,
        models=after.models,
    )


def judge(policy: Policy, run: RecordedRun, actions: Sequence[Action]) -> tuple[list[Proposal], bool]:
    """The policy's verdict on each proposed action, with the facts recorded then: the run's totals are this
    plan's own; an order's earlier refunds are the recorded ones when the recorded proposal at the same place
    was for the same order (otherwise unknown, taken as none, and the result is marked partly reconstructed)."""
    fallback = next((p.facts for p in run.proposals if p.facts is not None), None)
    totals: dict[str, float] = {}
    judged: list[Proposal] = []
    partial = False
    for index, action in enumerate(actions):
        params = action.model_dump(mode="json")
        amount = params.get("amount")
        totals[action.name] = totals.get(action.name, 0.0) + (
            float(amount) if isinstance(amount, int | float) else 0.0
        )
        then = run.proposals[index] if index < len(run.proposals) else None
        same_kind = then is not None and then.name == action.name
        base = then.facts if then is not None and same_kind and then.facts is not None else fallback
        facts: dict[str, Any] | None = None
        if base is not None:
            facts = {**base, "run_totals": dict(totals)}
            if not (same_kind and then is not None and then.params.get("order_id") == params.get("order_id")):
                facts["order_refunded"] = 0.0
                partial = partial or "order_id" in params
        else:
            partial = True
        verdict: PolicyVerdict = replay(
            policy,
            RecordedDecision(
                decision_id=0,
                action_id=0,
                run_id=run.run_id,
                name=action.name,
                params=params,
                verdict="allow",
                rule_id=None,
                policy_hash=None,
                approvers=(),
                facts=facts,
                requester=run.requester,
                run_totals=dict(totals),
            ),
        ).new
        judged.append(Proposal(action.name, params, verdict.verdict, verdict.rule_id))
    return judged, partial


def compare(then: Sequence[Proposal], now: Sequence[Proposal], registry: ConnectorRegistry) -> Outcome:
    """Same actions with the same parameters (in any order), the same actions otherwise, other actions, or
    nothing where something was proposed."""
    before = sorted(_canonical(p, registry) for p in then)
    after = sorted(_canonical(p, registry) for p in now)
    if before == after:
        return Outcome.SAME
    if not now:
        return Outcome.NOTHING_PROPOSED
    if sorted(p.name for p in then) == sorted(p.name for p in now):
        return Outcome.DIFFERENT_PARAMETERS
    return Outcome.DIFFERENT_ACTION


def _canonical(proposal: Proposal, registry: ConnectorRegistry) -> str:
    """The action as its model writes it (50 and 50.0 are one amount); as recorded when no longer offered."""
    params: Mapping[str, Any] = proposal.params
    with contextlib.suppress(UnknownActionError, InvalidActionError):
        params = registry.validate(proposal.name, params).model_dump(mode="json")
    return json.dumps([proposal.name, params], sort_keys=True)


@dataclass
class ModelReplayReport:
    model: str
    scope: Scope
    agent: str | None
    policy: Policy
    estimate: Estimate
    runs: list[RunReplay] = field(default_factory=list)

    @property
    def spend(self) -> Spend:
        # Named by the model replayed with, even when no run got as far as a call.
        return replace(sum((r.spend for r in self.runs), Spend()), models=(self.model,))

    def by_outcome(self) -> dict[Outcome, int]:
        counts = dict.fromkeys(Outcome, 0)
        for run in self.runs:
            counts[run.outcome] += 1
        return counts

    def heading(self) -> str:
        if self.scope.run_id is not None:
            return f"Model replay of {self.scope.describe()} with {self.model}"
        of_agent = f" of the {self.agent} agent" if self.agent else ""
        return f"Model replay of the runs{of_agent} {self.scope.describe()} with {self.model}"

    def summary_lines(self) -> list[str]:
        counts = self.by_outcome()
        errors = f", {counts[Outcome.MODEL_ERROR]} model errors" if counts[Outcome.MODEL_ERROR] else ""
        changed = sum(run.verdicts_changed for run in self.runs)
        spend, original = self.spend, self.estimate.original
        lines = [
            f"{len(self.runs)} runs re-planned: {counts[Outcome.SAME]} same, "
            f"{counts[Outcome.DIFFERENT_ACTION]} different action, {counts[Outcome.DIFFERENT_PARAMETERS]} "
            f"different parameters, {counts[Outcome.NOTHING_PROPOSED]} nothing proposed{errors}.",
            f"Verdicts under {self.policy.source} (policy {self.policy.hash[:12]}): {changed} runs would be "
            "judged otherwise than they were.",
            f"Cost: this replay ${spend.cost:.4f} ({spend.calls} calls, {spend.input_tokens:,} input and "
            f"{spend.output_tokens:,} output tokens); the original planning ${original.cost:.4f} "
            f"({original.calls} calls"
            + (f", {', '.join(original.models)}" if original.models else "")
            + ").",
            NOT_REPEATED,
        ]
        partial = sum(run.facts_partly_reconstructed for run in self.runs)
        if partial:
            lines.append(f"{partial} runs were judged with facts partly reconstructed.")
        return lines + [note for run in self.runs for note in run.run.notes()]

    def shown(self) -> list[RunReplay]:
        """The runs that differ (all of them for one run), the first RUNS_SHOWN_MAX."""
        single = self.scope.run_id is not None
        return [
            run for run in self.runs if single or run.outcome is not Outcome.SAME or run.verdicts_changed
        ][:RUNS_SHOWN_MAX]

    def text_lines(self) -> list[str]:
        lines = [self.heading(), *self.summary_lines()]
        shown = self.shown()
        if shown:
            lines += ["", *(run.line() for run in shown)]
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scope": {
                "run": format_id("R", self.scope.run_id) if self.scope.run_id is not None else None,
                "since": self.scope.since.isoformat() if self.scope.since else None,
                "agent": self.agent,
            },
            "policy": {"source": self.policy.source, "hash": self.policy.hash},
            "summary": {
                "runs": len(self.runs),
                "by_outcome": {str(outcome): count for outcome, count in self.by_outcome().items()},
                "verdicts_changed": sum(run.verdicts_changed for run in self.runs),
                "live_lookups_repeated": False,
            },
            "estimate": self.estimate.as_json(),
            "cost": {"replay": self.spend.as_json(), "original_planning": self.estimate.original.as_json()},
            "runs": [run.as_json() for run in self.runs],
        }


async def model_replay(
    units: UnitOfWorkFactory,
    *,
    scope: Scope,
    agent: str | None,
    llm: LLM,
    prices: PriceTable,
    policy: Policy,
    registry: ConnectorRegistry,
    confirm: Callable[[Estimate], bool],
    progress: Callable[[int], None] | None = None,
) -> ModelReplayReport | None:
    """Select the runs, estimate the cost, ask ``confirm`` (which sees the estimate, and whether a budget
    stands in the way), then re-plan each run in turn; None when not confirmed (no model was called)."""
    runs = await load_runs(units, scope, agent)
    counted = CountedLLM(llm, prices)
    model = llm.model_for("agent")

    def tools_of(name: str) -> list[ToolSpec]:
        offered = replay_agent(name, counted, registry, ()).action_names
        return [tool_spec(registry.model_for(action_name)) for action_name in offered]

    expected = await estimate(units, runs, model, prices, policy, tools_of)
    if not confirm(expected):
        return None
    report = ModelReplayReport(model, scope, agent, policy, expected)
    for run in runs:
        report.runs.append(await replay_run(run, counted, registry, policy))
        if progress is not None:
            progress(1)
    return report
