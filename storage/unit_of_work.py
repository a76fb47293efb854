"""A unit of work: one transaction, committed explicitly, rolled back on any error or early exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.repository import Repository


class UnitOfWork:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None

    @property
    def repo(self) -> Repository:
        if self._session is None:
            raise RuntimeError("use the unit of work inside `async with`")
        return Repository(self._session)

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._session is not None
        # close() rolls back whatever was not committed and detaches the records without expiring
        # them, so what was read stays readable after the unit of work ends.
        await self._session.close()
        self._session = None

    async def commit(self) -> None:
        assert self._session is not None
        await self._session.commit()


class UnitOfWorkFactory:
    """Hands out fresh units of work; the one object the service layer needs to reach storage."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self._sessions)
