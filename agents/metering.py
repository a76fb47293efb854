"""Every model call budgeted and recorded: reserved against its budgets before, booked in the ledger after
(model, tokens, cost, latency, outcome, and whom it was for)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agents.budgets import BudgetGuard, estimate_cost
from agents.llm import LLM, CallContext, LLMError, LLMReply, LLMWrapper, Message, Role, ToolSpec, Usage
from agents.pricing import PriceTable
from storage.records import LlmCall
from storage.unit_of_work import UnitOfWorkFactory

BudgetWarning = Callable[[CallContext, str], Awaitable[None]]
# Told of every call, for metrics: (agent, model, tokens by kind, cost in USD).
ModelCallMetrics = Callable[[str, str, dict[str, int], float], None]

_tracer = trace.get_tracer("aios.agents")


class MeteredLLM(LLMWrapper):
    """Wraps any :class:`LLM`; the wrapped one never learns about money."""

    def __init__(
        self,
        inner: LLM,
        units: UnitOfWorkFactory,
        prices: PriceTable,
        budgets: BudgetGuard,
        on_budget_warning: BudgetWarning | None = None,
        on_model_call: ModelCallMetrics | None = None,
    ) -> None:
        super().__init__(inner)
        self._units = units
        self._prices = prices
        self._budgets = budgets
        self._on_budget_warning = on_budget_warning
        self._on_model_call = on_model_call
        for role in ("dispatch", "agent"):
            prices.price(
                inner.model_for(role)
            )  # fail at start, not at the first call, on a model with no price

    async def complete(
        self,
        *,
        role: Role,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        call: CallContext,
    ) -> LLMReply:
        model = self._inner.model_for(role)
        reservation = await self._budgets.reserve(
            call, estimate_cost(self._prices, model, system, messages, tools)
        )
        started = time.perf_counter()
        usage, outcome, error = Usage(), "ok", None
        # OpenTelemetry's GenAI conventions: "{operation} {model}", gen_ai.* attributes.
        with _tracer.start_as_current_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes=_request_attributes(self._inner.name, model, role, call),
        ) as span:
            try:
                reply = await self._inner.complete(
                    role=role, system=system, messages=messages, tools=tools, call=call
                )
                usage = reply.usage
                span.set_attribute("gen_ai.response.model", reply.model or model)
                span.set_attribute("gen_ai.response.finish_reasons", [reply.stop_reason])
                return reply
            except LLMError as exc:
                outcome, error = exc.kind, str(exc)
                span.set_attribute("error.type", exc.kind)
                raise
            finally:
                cost = self._prices.cost(model, usage)
                tokens = _tokens(usage)
                span.set_attributes(_usage_attributes(tokens, cost))
                if self._on_model_call is not None:
                    self._on_model_call(call.agent, model, tokens, cost)
                await self._record(call, role, model, usage, cost, started, outcome, error)
                for warning in await self._budgets.settle(reservation, cost):
                    if self._on_budget_warning is not None:
                        await self._on_budget_warning(call, warning)

    async def _record(
        self,
        call: CallContext,
        role: Role,
        model: str,
        usage: Usage,
        cost: float,
        started: float,
        outcome: str,
        error: str | None,
    ) -> None:
        async with self._units() as uow:
            await uow.add(
                LlmCall(
                    intent_id=call.intent_id,
                    run_id=call.run_id,
                    agent=call.agent,
                    requester=call.requester,
                    channel=call.channel,
                    team_id=call.team_id,
                    model=model,
                    role=role,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_creation_tokens=usage.cache_creation_input_tokens,
                    cache_read_tokens=usage.cache_read_input_tokens,
                    cost_usd=cost,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    outcome=outcome,
                    error=error,
                )
            )
            await uow.commit()


_PROVIDERS = {"claude": "anthropic"}  # our planner's name → the conventions' provider name


def _request_attributes(provider: str, model: str, role: Role, call: CallContext) -> dict[str, str]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": _PROVIDERS.get(provider, provider),
        "gen_ai.request.model": model,
        "aios.agent": call.agent,
        "aios.llm.role": role,  # dispatch: routing the intent to an agent; agent: planning its actions
    }


def _tokens(usage: Usage) -> dict[str, int]:
    return {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cache_creation": usage.cache_creation_input_tokens,
        "cache_read": usage.cache_read_input_tokens,
    }


# Our kinds of tokens → OpenTelemetry's GenAI attribute for each.
_TOKEN_ATTRIBUTES = {
    "input": "gen_ai.usage.input_tokens",
    "output": "gen_ai.usage.output_tokens",
    "cache_creation": "gen_ai.usage.cache_creation.input_tokens",
    "cache_read": "gen_ai.usage.cache_read.input_tokens",
}


def _usage_attributes(tokens: dict[str, int], cost: float) -> dict[str, int | float]:
    return {
        **{_TOKEN_ATTRIBUTES[kind]: count for kind, count in tokens.items()},
        "aios.llm.cost_usd": cost,
    }
