"""Reads behind `/aios why` beyond the records' own rows: what a run's model calls cost, and what a refused
click asked for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func
from sqlalchemy import select as sql_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import Click, LlmCall


@dataclass(frozen=True)
class ModelUse:
    """The model calls of one run for one role (dispatch, agent) and model, summed."""

    role: str
    model: str
    calls: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float


class WhyQueries:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def model_use(self, run_id: int) -> list[ModelUse]:
        """The run's model calls by role and model: routing its intent and planning it, failed calls too
        (a failed call may still have been billed for its input)."""
        query = (
            sql_select(  # more columns than sqlmodel's typed select() takes
                col(LlmCall.role),
                col(LlmCall.model),
                func.count(),
                func.sum(case((col(LlmCall.outcome) != "ok", 1), else_=0)),
                func.sum(LlmCall.input_tokens),
                func.sum(LlmCall.output_tokens),
                func.sum(LlmCall.cache_creation_tokens),
                func.sum(LlmCall.cache_read_tokens),
                func.sum(LlmCall.cost_usd),
            )
            .where(col(LlmCall.run_id) == run_id)
            .group_by(col(LlmCall.role), col(LlmCall.model))
            .order_by(col(LlmCall.role), col(LlmCall.model))
        )
        rows = (await (await self.session.connection()).execute(query)).all()
        return [
            ModelUse(
                str(role),
                str(model),
                int(n),
                int(f or 0),
                int(i or 0),
                int(o or 0),
                int(w or 0),
                int(r or 0),
                float(c or 0.0),
            )
            for role, model, n, f, i, o, w, r, c in rows
        ]

    async def click_approved(self, approval_id: int, user: str, until: datetime) -> bool | None:
        """Whether ``user``'s last stored click on the approval up to ``until`` was Approve (False: Reject);
        None when no click is stored (the console decides without one)."""
        query = (
            select(Click.approve)
            .where(
                col(Click.approval_id) == approval_id,
                col(Click.user) == user,
                col(Click.received_at) <= until,
            )
            .order_by(col(Click.received_at).desc(), col(Click.id).desc())
            .limit(1)
        )
        return (await self.session.exec(query)).first()
