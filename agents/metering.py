"""Every model call recorded in the ledger: model, tokens, cost, latency, outcome, and whom it was for."""

from __future__ import annotations

import time
from collections.abc import Sequence

from agents.llm import LLM, CallContext, LLMError, LLMReply, Message, Role, ToolSpec, Usage
from agents.pricing import PriceTable
from storage.records import LlmCall
from storage.unit_of_work import UnitOfWorkFactory


class MeteredLLM:
    """Wraps any :class:`LLM`; the wrapped one never learns about money."""

    def __init__(self, inner: LLM, units: UnitOfWorkFactory, prices: PriceTable) -> None:
        self._inner = inner
        self._units = units
        self._prices = prices
        for role in ("dispatch", "agent"):
            prices.price(
                inner.model_for(role)
            )  # fail at start, not at the first call, on a model with no price

    @property
    def name(self) -> str:
        return self._inner.name

    def model_for(self, role: Role) -> str:
        return self._inner.model_for(role)

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
        started = time.perf_counter()
        try:
            reply = await self._inner.complete(
                role=role, system=system, messages=messages, tools=tools, call=call
            )
        except LLMError as exc:
            await self._record(call, role, model, Usage(), started, outcome=exc.kind, error=str(exc))
            raise
        await self._record(call, role, model, reply.usage, started, outcome="ok", error=None)
        return reply

    async def _record(
        self,
        call: CallContext,
        role: Role,
        model: str,
        usage: Usage,
        started: float,
        *,
        outcome: str,
        error: str | None,
    ) -> None:
        async with self._units() as uow:
            await uow.repo.add(
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
                    cost_usd=self._prices.cost(model, usage),
                    latency_ms=(time.perf_counter() - started) * 1000,
                    outcome=outcome,
                    error=error,
                )
            )
            await uow.commit()
