"""The repositories, one per aggregate, each reached as an attribute of the unit of work (`uow.runs`, …)."""

from storage.repositories.approvals import ApprovalRepository
from storage.repositories.base import SessionRepository
from storage.repositories.budgets import BudgetRepository, CostRow
from storage.repositories.executions import ExecutionRepository
from storage.repositories.replay import DecisionRow, ReplayQueries
from storage.repositories.runs import RunRepository
from storage.repositories.undo import UndoQueries

__all__ = [
    "ApprovalRepository",
    "BudgetRepository",
    "CostRow",
    "DecisionRow",
    "ExecutionRepository",
    "ReplayQueries",
    "RunRepository",
    "SessionRepository",
    "UndoQueries",
]
