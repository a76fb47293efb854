"""A unit of work: one transaction, committed explicitly, rolled back on any error or early exit."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.engine import session_factory
from storage.repository import Repository


class UnitOfWork:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], writer_lock: asyncio.Lock | None) -> None:
        self._sessions = sessions
        self._writer_lock = writer_lock
        self._session: AsyncSession | None = None
        self._stack = AsyncExitStack()

    @property
    def repo(self) -> Repository:
        if self._session is None:
            raise RuntimeError("use the unit of work inside `async with`")
        return Repository(self._session)

    async def __aenter__(self) -> Self:
        if self._writer_lock is not None:
            await self._stack.enter_async_context(self._writer_lock)
        self._session = self._sessions()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._session is not None
        try:
            # close() rolls back whatever was not committed and detaches the records without expiring
            # them, so what was read stays readable after the unit of work ends.
            await self._session.close()
        finally:
            self._session = None
            await self._stack.aclose()

    async def commit(self) -> None:
        assert self._session is not None
        await self._session.commit()


class UnitOfWorkFactory:
    """Hands out fresh units of work; the one object the service layer needs to reach storage.

    SQLite allows one writer at a time. Waiting for its lock inside SQLite means a sleeping busy handler
    (sleeps of up to 100 ms), so units of work in one process queue on an asyncio lock instead: first
    come, first served, no sleeping. Units of work must not nest.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, serialise: bool = False) -> None:
        self._sessions = sessions
        self._writer_lock = asyncio.Lock() if serialise else None

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> UnitOfWorkFactory:
        return cls(session_factory(engine), serialise=engine.dialect.name == "sqlite")

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self._sessions, self._writer_lock)
