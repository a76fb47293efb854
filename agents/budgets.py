"""Budgets that hold: before each model call its worst-case cost is reserved against every budget it counts
against; afterwards the reservation is replaced by the real cost. A call that would pass a hard limit does
not happen."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from agents.llm import MAX_OUTPUT_TOKENS, CallContext, LLMError, Message, ToolSpec, Usage
from agents.pricing import PriceTable
from policies.engine import Policy
from policies.model import Budget
from storage.records import BudgetAccount
from storage.unit_of_work import UnitOfWorkFactory

CHARS_PER_TOKEN = 3  # errs high: an estimate that is too large only makes the limit a little stricter
RESERVATION_WAIT_SECONDS = 30.0
RESERVATION_POLL_SECONDS = 0.05


class BudgetExceededError(LLMError):
    """The call would pass a hard budget limit, so it was not made."""

    def __init__(self, budget: Budget, account: BudgetAccount, estimate: float) -> None:
        super().__init__(
            "budget",
            f"budget {budget.id} ({budget.scope} {account.scope_value}, ${budget.limit_usd:.2f} a {budget.period}) "
            f"has ${max(account.available_usd, 0):.4f} left and this call may cost up to ${estimate:.4f}",
        )
        self.budget = budget
        self.account = account


@dataclass(frozen=True)
class Reservation:
    keys: tuple[str, ...]
    estimate: float


def period_key(budget: Budget, now: datetime) -> str:
    return now.strftime("%Y-%m-%d" if budget.period == "day" else "%Y-%m")


def estimate_cost(
    prices: PriceTable, model: str, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
) -> float:
    """The most a call can cost: its prompt (roughly counted, rounded up) and the longest answer allowed."""
    prompt = (
        len(system)
        + len(json.dumps([m.text for m in messages]))
        + len(json.dumps([t.input_schema for t in tools]) + "".join(t.description for t in tools))
    )
    usage = Usage(input_tokens=prompt // CHARS_PER_TOKEN + 1, output_tokens=MAX_OUTPUT_TOKENS)
    return prices.cost(model, usage)


class BudgetGuard:
    def __init__(self, units: UnitOfWorkFactory, policy: Policy, clock: Callable[[], datetime]) -> None:
        self._units = units
        self._policy = policy
        self._clock = clock

    def _accounts(self, call: CallContext) -> list[tuple[Budget, BudgetAccount]]:
        now = self._clock()
        scope = {"agent": call.agent, "channel": call.channel, "team": call.team_id}
        accounts = []
        for budget in self._policy.budgets_for(agent=call.agent, channel=call.channel, team=call.team_id):
            period = period_key(budget, now)
            accounts.append(
                (
                    budget,
                    BudgetAccount(
                        key=f"{budget.id}:{scope[budget.scope]}:{period}",
                        budget_id=budget.id,
                        scope_value=scope[budget.scope],
                        period=period,
                        limit_usd=budget.limit_usd,
                    ),
                )
            )
        return accounts

    async def reserve(self, call: CallContext, estimate: float) -> Reservation:
        """Reserve ``estimate`` on every budget the call counts against, or raise :class:`BudgetExceededError`.

        When only other calls' reservations stand in the way (what is really spent leaves room), wait for
        them to settle instead of refusing: they usually cost far less than reserved.
        """
        accounts = self._accounts(call)
        if not accounts:
            return Reservation((), 0.0)
        deadline = time.monotonic() + RESERVATION_WAIT_SECONDS
        while True:
            async with self._units() as uow:
                over = await uow.budgets.reserve_budget([account for _, account in accounts], estimate)
                await uow.commit()  # when over, this keeps only the accounts, which a grant will need
            if over is None:
                return Reservation(tuple(account.key for _, account in accounts), estimate)
            unspent = over.limit_usd + over.granted_usd - over.spent_usd
            if estimate > unspent or time.monotonic() > deadline:
                budget = next(b for b, a in accounts if a.key == over.key)
                raise BudgetExceededError(budget, over, estimate)
            await asyncio.sleep(RESERVATION_POLL_SECONDS)

    async def settle(self, reservation: Reservation, actual: float) -> list[str]:
        """Book the real cost; returns a warning for each budget that has just passed its soft limit."""
        if not reservation.keys:
            return []
        warnings = []
        async with self._units() as uow:
            for account in await uow.budgets.settle_budget(reservation.keys, reservation.estimate, actual):
                budget = self._policy.budget(account.budget_id)
                ceiling = account.limit_usd + account.granted_usd
                if budget is None or account.spent_usd < budget.warn_at * ceiling:
                    continue
                if await uow.budgets.mark_budget_warned(account.key):
                    warnings.append(
                        f"Budget `{budget.id}` ({budget.scope} {account.scope_value}) has used "
                        f"${account.spent_usd:.4f} of ${ceiling:.2f} this {budget.period} "
                        f"({account.spent_usd / ceiling:.0%})."
                    )
            await uow.commit()
        return warnings
