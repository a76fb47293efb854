"""Prometheus metrics, served at `GET /metrics`: what a team asks about its automations (intents accepted, what
ran and how it ended, money moved, approvals waiting, model spend, compensations, escalations). The Slack front
door's own are in ``bot.slack_metrics``."""

from __future__ import annotations

from datetime import datetime

import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlmodel import col, func, select

from storage.records import Approval, ApprovalStatus
from storage.unit_of_work import UnitOfWorkFactory

INTENTS = Counter("aios_intents_total", "Intents accepted", ["source"])
DECISIONS = Counter("aios_decisions_total", "Decisions recorded", ["verdict"])
EXECUTIONS = Counter("aios_executions_total", "Connector executions", ["outcome"])
BACKGROUND_FAILURES = Counter("aios_background_failures_total", "Background work that raised")
BACKGROUND_WAITING = Gauge("aios_background_waiting", "Background work handed over and waiting its turn")
BACKGROUND_REFUSED = Counter(
    "aios_background_refused_total", "Background work handed over once the shutdown had begun, refused"
)

ACTIONS_EXECUTED = Counter(
    "aios_actions_executed_total",
    "Actions run through a connector, by how they ended",
    ["connector", "action", "outcome"],
)
MONEY_MOVED = Counter(
    "aios_money_moved_usd_total", "Refunded amounts (USD) of refunds that succeeded", ["action"]
)
APPROVALS_WAITING = Gauge("aios_approvals_waiting", "Approvals waiting for a decision (read at scrape time)")
APPROVAL_OLDEST_WAIT = Gauge(
    "aios_approval_oldest_wait_seconds",
    "How long the oldest waiting approval has waited (read at scrape time)",
)
TIME_TO_APPROVAL = Histogram(
    "aios_time_to_approval_seconds",
    "From an approval's request to its decision",
    ["outcome"],
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400),
)
MODEL_TOKENS = Counter(
    "aios_model_tokens_total", "Model tokens, by agent, model and kind", ["agent", "model", "kind"]
)
MODEL_COST = Counter("aios_model_cost_usd_total", "Model spend (USD), by agent and model", ["agent", "model"])
AUTOMATION_COST = Histogram(
    "aios_automation_cost_usd",
    "Model spend (USD) of each run that completed",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
COMPENSATIONS = Counter(
    "aios_compensations_total", "Steps undone after a later step failed, by how it went", ["outcome"]
)
log = structlog.get_logger(__name__)

ESCALATIONS = Counter("aios_escalations_total", "Escalations to people, by why", ["reason"])


def action_executed(connector: str, action: str, outcome: str, amount: float | None = None) -> None:
    ACTIONS_EXECUTED.labels(connector=connector, action=action, outcome=outcome).inc()
    if outcome == "succeeded" and amount is not None and action.endswith(".refund"):
        MONEY_MOVED.labels(action=action).inc(amount)


def model_call(agent: str, model: str, tokens: dict[str, int], cost: float) -> None:
    for kind, count in tokens.items():
        if count:
            MODEL_TOKENS.labels(agent=agent, model=model, kind=kind).inc(count)
    MODEL_COST.labels(agent=agent, model=model).inc(cost)


def approval_decided(outcome: str, requested_at: datetime, decided_at: datetime) -> None:
    TIME_TO_APPROVAL.labels(outcome=outcome).observe(max(0.0, (decided_at - requested_at).total_seconds()))


def completed_run_spend(spent_usd: float) -> None:
    """A run completed: its model spend (read as its last action was booked) into the cost per automation."""
    AUTOMATION_COST.observe(spent_usd)


async def refresh_waiting_approvals(units: UnitOfWorkFactory, now: datetime) -> None:
    """One query at scrape time: how many approvals wait, and since when the oldest."""
    async with units() as uow:
        count, oldest = (
            await uow.session.exec(
                select(func.count(), func.min(Approval.created_at)).where(
                    col(Approval.status) == ApprovalStatus.PENDING
                )
            )
        ).one()
    APPROVALS_WAITING.set(count)
    APPROVAL_OLDEST_WAIT.set(max(0.0, (now - _aware(oldest, now)).total_seconds()) if oldest else 0.0)


def _aware(moment: datetime, like: datetime) -> datetime:
    """SQLite gives the minimum back without its zone; the store keeps UTC."""
    return moment.replace(tzinfo=like.tzinfo) if moment.tzinfo is None else moment
