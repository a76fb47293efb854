"""The sandbox connectors' whole state, for `aios sandbox show --json`."""

from __future__ import annotations

from typing import Any

from sqlmodel import SQLModel, col, select

from storage.records import SandboxEmail, SandboxOrder, SandboxPost, SandboxRefund, SandboxSocialPost
from storage.unit_of_work import UnitOfWorkFactory


async def sandbox_state(units: UnitOfWorkFactory) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, type[SQLModel]] = {
        "orders": SandboxOrder,
        "refunds": SandboxRefund,
        "posts": SandboxPost,
        "emails": SandboxEmail,
        "social": SandboxSocialPost,
    }
    state: dict[str, list[dict[str, Any]]] = {}
    async with units() as uow:
        for key, model in tables.items():
            rows = (await uow.session.exec(select(model).order_by(col(model.id)))).all()  # type: ignore[attr-defined]
            state[key] = [row.model_dump(mode="json") for row in rows]
    return state
