"""What every repository shares: the unit of work's session and the generic writes on any record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Insert, Table, update
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import ActionEdit, Click, Execution, Intent, Once, Run, utcnow

Record = TypeVar("Record", bound=SQLModel)
Owned = TypeVar(
    "Owned", Intent, Run, Execution, Click, ActionEdit
)  # work that records the lease of the process doing it


class SessionRepository:
    """Queries over one unit of work's session; each aggregate's repository adds its own."""

    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, record: Record) -> Record:
        self.session.add(record)
        await self.session.flush()
        return record

    async def get(self, model: type[Record], key: Any) -> Record | None:
        return await self.session.get(model, key)

    async def insert_if_absent(self, model: type[SQLModel], values: dict[str, Any]) -> bool:
        """INSERT … ON CONFLICT DO NOTHING; True when this call inserted the row."""
        table: Table = model.__table__  # type: ignore[attr-defined]
        dialect = self.session.bind.dialect.name if self.session.bind else "sqlite"
        # Imported here: the PostgreSQL dialect is slow to import, and a store on SQLite never needs it.
        statement: Insert
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement = pg_insert(table).values(**values).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(table).values(**values).on_conflict_do_nothing()
        result = await self.session.exec(statement)
        return bool(result.rowcount)

    async def first_time(self, key: str) -> bool:
        """True for the one caller that claims ``key`` first; False for every later or concurrent one."""
        return await self.insert_if_absent(Once, {"key": key, "created_at": utcnow()})

    async def forget_once(self, key: str) -> None:
        """Release a claimed key whose work could not be done, so a later attempt may claim it."""
        once = await self.get(Once, key)
        if once is not None:
            await self.session.delete(once)

    async def take_over(self, rows: Sequence[Owned], owner: int) -> set[int]:
        """Make ``owner`` the owner of each row still owned by whoever owned it when it was read; returns the
        ids taken. A compare-and-set: of processes taking over the same work, one does."""
        taken: set[int] = set()
        for row in {row.id: row for row in rows}.values():
            assert row.id is not None
            model = type(row)
            previous = col(model.owner).is_(None) if row.owner is None else col(model.owner) == row.owner
            statement = update(model).where(col(model.id) == row.id, previous).values(owner=owner)
            if (await self.session.exec(statement)).rowcount:
                taken.add(row.id)
        return taken
