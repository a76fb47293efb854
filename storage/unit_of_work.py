"""A unit of work: one transaction, committed explicitly, rolled back on any error or early exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self, TypeVar

from sqlalchemy import Connection, Engine, update
from sqlalchemy import inspect as inspect_record
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.util import greenlet_spawn
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.audit import AUDITED
from storage.engine import session_factory
from storage.records import Once, utcnow
from storage.repositories import (
    ApprovalRepository,
    BudgetRepository,
    ExecutionRepository,
    ReplayQueries,
    RunRepository,
    UndoQueries,
)
from storage.repositories.base import Owned, Record, insert_if_absent, insert_records

Written = TypeVar("Written")

# Rows a take-over sets in one statement at most (each id is one bound parameter).
TAKE_OVER_BATCH = 1_000


class WriterLock:
    """One writer at a time, handed over in order of arrival, except that a writer someone is waiting on
    (what stands between a request and its ack) goes before the background work queued ahead of it."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, urgent: bool) -> None:
        if not self._held and not self._urgent and not self._others:
            self._held = True
            return
        queue = self._urgent if urgent else self._others
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # it was handed over just as the waiter was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._others):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # still held: it passes straight to this waiter
                    return
        self._held = False


# Commits this process's units of work have made (or attempted: one that failed may have committed all the same).
# An answer read before the latest of them may be out of date; see bot/shared_answers.py.
_commits = 0


def commits_so_far() -> int:
    return _commits


# What an open unit of work holds, each over its one session; outside `async with` they are not there.
_OPENED = ("session", "runs", "approvals", "executions", "budgets", "replay", "undos")


class UnitOfWork:
    """Its repositories, one per aggregate, are attributes (`uow.runs`, `uow.approvals`, …), made when it opens;
    the writes that any record shares are its own methods (`uow.add`, `uow.get`, …)."""

    session: AsyncSession
    runs: RunRepository
    approvals: ApprovalRepository
    executions: ExecutionRepository
    budgets: BudgetRepository
    replay: ReplayQueries
    undos: UndoQueries

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer_lock: WriterLock | None,
        *,
        urgent: bool = False,
        read_only: bool = False,
        shared: SharedReads | None = None,
    ) -> None:
        self._sessions = sessions
        self._writer_lock = writer_lock
        self._urgent = urgent
        self._locked = False
        self._read_only = read_only
        self._shared = shared
        self._stack = AsyncExitStack()

    if not TYPE_CHECKING:  # hidden from the type checker, which would otherwise accept any attribute

        def __getattr__(self, name: str) -> NoReturn:
            if name in _OPENED:
                raise RuntimeError("use the unit of work inside `async with`")
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _open(self, session: AsyncSession) -> None:
        self.session = session
        self.runs = RunRepository(session)
        self.approvals = ApprovalRepository(session)
        self.executions = ExecutionRepository(session)
        self.budgets = BudgetRepository(session)
        self.replay = ReplayQueries(session)
        self.undos = UndoQueries(session)

    async def add(self, record: Record) -> Record:
        """Store the record, now: a new record of an audited table is inserted past the ORM's flush (see
        insert_records), which costs it less than a flush and the audit's hook; any other is flushed."""
        if getattr(type(record), "__tablename__", None) in AUDITED and inspect_record(record).transient:
            await insert_records(self.session, [record])
            return record
        self.session.add(record)
        await self.session.flush()
        return record

    async def get(self, model: type[Record], key: Any) -> Record | None:
        return await self.session.get(model, key)

    async def insert_if_absent(self, model: type[SQLModel], values: dict[str, Any]) -> bool:
        """INSERT … ON CONFLICT DO NOTHING; True when this call inserted the row."""
        return await insert_if_absent(self.session, model, values)

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
        ids taken. A compare-and-set: of processes taking over the same work, one does. One UPDATE … RETURNING
        for the rows of each table and previous owner, TAKE_OVER_BATCH at a time: a store left with thousands of
        dead rows is taken over in a few statements, not one each."""
        latest = {(type(row), row.id): row.owner for row in rows}  # a row read twice: as read last
        previous_owners: dict[tuple[type[Owned], int | None], list[int]] = {}
        for (model, row_id), previous in latest.items():
            assert row_id is not None
            previous_owners.setdefault((model, previous), []).append(row_id)
        taken: set[int] = set()
        # Groups in one order for every replica too (table, then previous owner, no owner first): two replicas
        # taking over the same rows lock them in the same order, so neither waits on the other in a cycle.
        in_order = sorted(previous_owners.items(), key=lambda group: (group[0][0].__name__, group[0][1] or 0))
        for (model, previous), ids in in_order:
            held = col(model.owner).is_(None) if previous is None else col(model.owner) == previous
            ids.sort()  # every replica cuts the same rows into the same batches, taken in the same order
            for start in range(0, len(ids), TAKE_OVER_BATCH):
                batch = ids[start : start + TAKE_OVER_BATCH]
                statement = (
                    update(model)
                    .where(col(model.id).in_(batch), held)
                    .values(owner=owner)
                    .returning(col(model.id))
                )
                taken.update((await self.session.exec(statement)).scalars())
        return taken

    async def __aenter__(self) -> Self:
        if self._shared is not None:
            self._open(await self._stack.enter_async_context(self._shared.session(self._sessions)))
            return self
        if self._writer_lock is not None:
            await self._writer_lock.acquire(urgent=self._urgent)
            self._locked = True
        self._open(self._sessions())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._shared is None:
                # close() rolls back whatever was not committed and detaches the records without expiring
                # them, so what was read stays readable after the unit of work ends.
                await self.session.close()
        finally:
            for name in _OPENED:
                delattr(self, name)
            if self._locked and self._writer_lock is not None:
                self._locked = False
                self._writer_lock.release()
            await self._stack.aclose()

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work has nothing to commit; use units() to write")
        global _commits
        try:
            await self.session.commit()
        finally:
            # Counted once the commit has ended, so that a read begun before then is not taken for a later one.
            _commits += 1


class SharedReads:
    """One read-only transaction that the read-only units of work opened inside :func:`reading_together` take
    turns on, instead of a transaction each: the reads see one snapshot of the store (taken at the first; SQLite's
    deferred transaction keeps it, and on PostgreSQL read-only transactions are REPEATABLE READ), never a write
    committed meanwhile. A call to another system (:func:`awaiting_remote`) ends it: the reads after it share a
    new one, with a newer snapshot."""

    def __init__(self) -> None:
        self._sessions: dict[int, AsyncSession] = {}
        self._turn = asyncio.Lock()  # one session serves one statement at a time, whatever task asks
        self._holder: asyncio.Task[object] | None = None
        # The turn as now held, also in the context of its holder and so of the tasks it starts meanwhile.
        self._hold: object | None = None
        self._remote_calls = 0  # calls to other systems awaited now, by tasks sharing these reads
        # A call to another system began while the turn's holder read on (so it could not end the transaction
        # then): the snapshot is older than the call, and the transaction ends as that read does.
        self._spent = False
        self.closed = False

    @asynccontextmanager
    async def session(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        if self._holder is not None and self._holder is asyncio.current_task():
            yield self._open(sessions)  # a read inside a read of the same task: its turn already
            return
        if not self._alone() and not self._held_above():
            async with self._turn:
                # A remote call may have begun while this read waited its turn: asked again.
                if not self._alone():
                    self._holder, self._hold = asyncio.current_task(), object()
                    held = _turn_held.set(self._hold)
                    try:
                        yield self._open(sessions)
                    finally:
                        _turn_held.reset(held)
                        self._holder = self._hold = None
                        # The block ended, or a call to another system began, during this read, and left the end
                        # to it.
                        if self.closed or self._spent:
                            self._spent = False
                            await self._end()
                    return
        # A task still running after the block (it took a copy of the context), a read beside a remote call, or
        # one of a task started by the turn's holder (which may be awaiting it: sharing the turn would deadlock,
        # sharing the session would run two statements on it at once): a transaction of its own, ended with the
        # read, so that none stays open.
        async with sessions() as alone:
            yield alone

    def _alone(self) -> bool:
        return self.closed or self._remote_calls > 0

    def _held_above(self) -> bool:
        """Whether the turn is held by this task or by one that started it while holding it."""
        return self._hold is not None and _turn_held.get() is self._hold

    def _open(self, sessions: async_sessionmaker[AsyncSession]) -> AsyncSession:
        session = self._sessions.get(id(sessions))
        if session is None:
            session = self._sessions[id(sessions)] = sessions()
        return session

    @asynccontextmanager
    async def set_aside(self) -> AsyncIterator[None]:
        """End the transaction (once the read on it is done); while the call is awaited, reads made beside it
        take transactions of their own. A read still open of this very task, or of one that started it (and may
        be awaiting it), keeps its transaction until it ends: it is using it."""
        # Counted before waiting for the turn, so that a read arriving meanwhile does not begin a new shared
        # transaction that would stay open throughout the call.
        self._remote_calls += 1
        try:
            if self._held_above():
                self._spent = True
            else:
                async with self._turn:
                    await self._end()
            yield
        finally:
            self._remote_calls -= 1

    async def close(self) -> None:
        """End the transaction, now or, if a task is reading on it (one started in the block and still
        running), as that read ends: never under a statement."""
        self.closed = True
        if not self._turn.locked():
            await self._end()

    async def _end(self) -> None:
        # close() rolls back (there is nothing to commit) and gives the connection back to the pool; what was
        # read stays readable, detached.
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


_shared_reads: ContextVar[SharedReads | None] = ContextVar("aios_shared_reads", default=None)
_turn_held: ContextVar[object | None] = ContextVar("aios_shared_read_turn", default=None)


@asynccontextmanager
async def reading_together() -> AsyncIterator[None]:
    """Read-only units of work opened inside (by this task, or by tasks it starts) share one transaction,
    ended when the block ends, or before a call to another system (:func:`awaiting_remote`). Only for reads that
    follow each other closely: keep calls to a model out of it. A task may await, inside a read, a task it starts
    there, but not one started before that read which reads or calls out: that one waits for the read's turn."""
    if _shared_reads.get() is not None:
        yield  # already inside one
        return
    shared = SharedReads()
    token = _shared_reads.set(shared)
    try:
        yield
    finally:
        _shared_reads.reset(token)
        await shared.close()


@asynccontextmanager
async def awaiting_remote() -> AsyncIterator[None]:
    """Around each call to another system (HTTP, MCP, Weaviate), made by code that cannot know whether it runs
    inside :func:`reading_together`: the shared read transaction ends first, and reads made meanwhile have their
    own, so that no transaction of ours waits on another system's answer (a PostgreSQL connection "idle in
    transaction", out of the pool for as long as the call takes; an SQLite snapshot kept from being
    checkpointed). The next read after the call begins a new shared transaction."""
    shared = _shared_reads.get()
    if shared is None or shared.closed:
        yield
        return
    async with shared.set_aside():
        yield


class UnitOfWorkFactory:
    """Hands out fresh units of work; the one object the service layer needs to reach storage.

    SQLite allows one writer at a time. Waiting for its lock inside SQLite means polling it, between sleeps
    (storage.engine), so units of work in one process queue on a lock of their own instead: no polling, first
    come, first served, except that an urgent unit (one a Slack ack waits on) goes first.
    Units of work must not nest. A read-only unit of work (:meth:`read`)
    takes neither that lock nor SQLite's write lock, and cannot commit.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        read_sessions: async_sessionmaker[AsyncSession],
        *,
        serialise: bool = False,
        engine: AsyncEngine | None = None,
    ) -> None:
        self._sessions = sessions
        self._read_sessions = read_sessions
        self._writer_lock = WriterLock() if serialise else None
        self._engine = engine

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> UnitOfWorkFactory:
        return cls(
            session_factory(engine),
            session_factory(engine, read_only=True),
            serialise=engine.dialect.name == "sqlite",
            engine=engine,
        )

    def __call__(self, *, urgent: bool = False) -> UnitOfWork:
        return UnitOfWork(self._sessions, self._writer_lock, urgent=urgent)

    @property
    def writers_take_turns(self) -> bool:
        """Whether this process's writers queue for the store's one writer lock (SQLite): a write may wait for
        it, and what arrives meanwhile can still join the write."""
        return self._writer_lock is not None

    async def on_connection(
        self, write: Callable[[Connection], Written], *, urgent: bool = False, one_statement: bool = False
    ) -> Written:
        """``write(connection)``, a synchronous function of a Core connection, run in a transaction of its own,
        begun before it is called and committed as it returns (rolled back if it raises), in one hop into
        SQLAlchemy's greenlet. Not for audited tables: nothing here appends to the audit chain.

        ``one_statement``: ``write`` sends at most one statement and raises nothing after it. Where every
        statement outside a transaction is one of its own (PostgreSQL) it is sent so, without BEGIN and COMMIT:
        as atomic, two round trips fewer (a batch of one intent: 1.0-1.2 ms of CPU in a transaction, 0.5-0.7 ms
        without), but committed as it ends, so nothing after it is rolled back with it. SQLite's writes still
        begin by taking its write lock, which is what lets the statement run on the event loop's thread (see
        storage.sqlite_driver).

        For the write an ack waits on (a batch of intents): there a session costs more than the write. Each call to
        a session is a hop of its own, and it begins, flushes, commits and closes through the ORM's machinery; a
        batch of one intent cost some 1.2 ms of CPU that way, most of an ack's own cost."""
        if self._engine is None:
            raise RuntimeError("a unit of work factory made without its engine has no connections to lend")
        if self._writer_lock is not None:
            await self._writer_lock.acquire(urgent=urgent)
        global _commits
        try:
            alone = one_statement and not self.writers_take_turns
            return await greenlet_spawn(_in_transaction, self._engine.sync_engine, write, alone)
        finally:
            _commits += 1  # as UnitOfWork.commit counts: answers read before it may be out of date
            if self._writer_lock is not None:
                self._writer_lock.release()

    def read(self) -> UnitOfWork:
        """A unit of work that only reads; inside :func:`reading_together`, one sharing its transaction."""
        return UnitOfWork(self._read_sessions, None, read_only=True, shared=_shared_reads.get())


def _in_transaction(engine: Engine, write: Callable[[Connection], Written], alone: bool) -> Written:
    with engine.connect() as connection:
        if alone:
            return write(connection.execution_options(isolation_level="AUTOCOMMIT"))
        with connection.begin():
            return write(connection)
