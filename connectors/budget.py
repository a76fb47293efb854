"""More budget for model calls, granted by an approver: an action like any other, so it is gated, recorded,
explained by `/aios why`, and applied exactly once."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from connectors.actions import Action
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from storage.records import BudgetAccount, Once


class BudgetGrant(Action):
    name: ClassVar[str] = "budget.grant"
    description: ClassVar[str] = "Add money to a budget for model calls, for the rest of its period."
    # The policy judges the grant by its budget, and the account is what gets the money: neither may change.
    targets: ClassVar[frozenset[str]] = frozenset({"budget_id", "account"})

    budget_id: str = Field(min_length=1, max_length=120)
    account: str = Field(min_length=1, max_length=200, description="budget id : scope value : period")
    amount_usd: float = Field(gt=0, le=10_000)

    @model_validator(mode="after")
    def _account_of_the_budget(self) -> BudgetGrant:
        # The policy judges budget_id; the money goes to the account, so it must be one of that budget's.
        if not self.account.startswith(self.budget_id + ":"):
            raise ValueError(f"account {self.account} is not one of budget {self.budget_id}'s accounts")
        return self

    def summary(self) -> str:
        return (
            f"Grant ${self.amount_usd:,.2f} more to budget {self.budget_id} ({self.account.split(':', 1)[1]})"
        )


class BudgetLedger:
    actions: ClassVar[tuple[type[Action], ...]] = (BudgetGrant,)

    @classmethod
    def configured(cls, context: ConnectorContext) -> BudgetLedger | None:
        return cls(context)

    def __init__(self, context: ConnectorContext) -> None:
        self._units = context.units_of_work

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        assert isinstance(action, BudgetGrant)
        async with self._units() as uow:
            granted = await uow.get(Once, f"budget-grant:{idempotency_key}") is not None
            account = await uow.budgets.budget_account(action.account)
        if not granted or account is None:
            return None
        return _grant_result(account, replayed=True)

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, BudgetGrant)
        async with self._units() as uow:
            first = await uow.first_time(f"budget-grant:{idempotency_key}")
            account = (
                await uow.budgets.grant_budget(action.account, action.amount_usd)
                if first
                else await uow.budgets.budget_account(action.account)
            )
            if account is None:
                raise PermanentConnectorError(f"there is no budget account {action.account}")
            await uow.commit()
        return _grant_result(account, replayed=not first)


def _grant_result(account: BudgetAccount, *, replayed: bool) -> dict[str, Any]:
    return {
        "account": account.key,
        "granted_usd": round(account.granted_usd, 4),
        "available_usd": round(account.available_usd, 4),
        "replayed": replayed,
    }
