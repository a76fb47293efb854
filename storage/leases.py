"""Process liveness leases: each running bot holds one, and it ends when the process ends, however it ends.

Work in progress (an intent accepted, a run being planned, an execution in flight) records the lease of the
process doing it, so a restarted process or a replica can tell work whose owner died (carry it on now) from
work a live process is still doing (leave it alone).

- PostgreSQL: a session-level advisory lock held on a dedicated connection. The server drops it with the
  connection, so a killed process loses it at once; others read ``pg_locks`` to see whether it is held.
- SQLite (one machine by nature): an exclusive ``flock`` on a per-lease file next to the database. The kernel
  drops it when the process dies; others test it with a non-blocking ``flock`` of their own.

Lease ids come from the ``process_lease`` table, whose ids are never reused, so a new process cannot mistake a
dead one's work for its own; the rows also list the processes running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from pathlib import Path

import structlog
from sqlalchemy import delete, or_, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col, select

from storage.records import Intent, IntentStatus, ProcessLease, utcnow
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

# The first key of the two-key advisory locks that are leases ("AIOS"), so they share no key with other locks.
LEASE_LOCK_CLASS = 0x41494F53
_HELD_LEASES = text(
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND classid::bigint = :lock_class "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_HOLDING_MINE = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
    "AND pid = pg_backend_pid() AND classid::bigint = :lock_class AND objid::bigint = :lease"
)


class LeaseError(RuntimeError):
    """This process could not take its liveness lease."""


class Lease(ABC):
    """This process's lease, and the test of whether other processes' leases are still held."""

    def __init__(self, lease_id: int, units: UnitOfWorkFactory) -> None:
        self.id = lease_id
        self._units = units

    async def alive(self, owners: Iterable[int]) -> set[int]:
        """Those of ``owners`` whose process is running (this one always is)."""
        owners = set(owners)
        others = owners - {self.id}
        return (owners & {self.id}) | (await self._held(others) if others else set())

    @abstractmethod
    async def keep(self) -> None:
        """Called every few seconds: make sure the lease is still held (a connection can be lost)."""

    async def release(self) -> None:
        """At a clean stop, after the work in flight is done: whatever is left is anyone's to carry on."""
        await self._delete_rows({self.id})

    async def forget_ended(self) -> set[int]:
        """Delete the rows of processes that ended without releasing their lease (they crashed)."""
        async with self._units() as uow:
            query = select(ProcessLease.id).where(col(ProcessLease.id) != self.id)
            others = {lease for lease in (await uow.session.exec(query)).all() if lease is not None}
        ended = others - await self.alive(others)
        await self._delete_rows(ended)
        return ended

    async def _delete_rows(self, leases: set[int]) -> None:
        if not leases:
            return
        async with self._units() as uow:
            await uow.session.exec(delete(ProcessLease).where(col(ProcessLease.id).in_(leases)))
            await uow.commit()

    @abstractmethod
    async def _held(self, others: set[int]) -> set[int]: ...


class AdvisoryLockLease(Lease):
    def __init__(self, lease_id: int, units: UnitOfWorkFactory, engine: AsyncEngine) -> None:
        super().__init__(lease_id, units)
        self._engine = engine
        self._connection: AsyncConnection | None = None

    async def lock(self) -> None:
        connection = await self._engine.connect()
        taken = await connection.scalar(
            text("SELECT pg_try_advisory_lock(:lock_class, :lease)"),
            {"lock_class": LEASE_LOCK_CLASS, "lease": self.id},
        )
        await connection.commit()  # a session-level lock outlives the transaction; the connection stays idle
        if not taken:
            await connection.close()
            raise LeaseError(f"lease {self.id} is locked by another connection")
        self._connection = connection

    async def keep(self) -> None:
        if await self._still_held():
            return
        await self._close()
        # Until it is taken again others may carry on this process's work; idempotency keys and
        # compare-and-sets make a step done twice take effect once.
        try:
            await self.lock()
        except (DBAPIError, OSError, LeaseError) as exc:
            log.error("lease_lost", lease=self.id, error=str(exc).splitlines()[0])
            return
        log.warning("lease_taken_again", lease=self.id)

    async def release(self) -> None:
        await self._close()
        await super().release()

    async def _still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            held = await self._connection.scalar(
                _HOLDING_MINE, {"lock_class": LEASE_LOCK_CLASS, "lease": self.id}
            )
            await self._connection.commit()
        except (DBAPIError, OSError) as exc:
            log.warning("lease_connection_lost", lease=self.id, error=str(exc).splitlines()[0])
            return False
        return bool(held)

    async def _close(self) -> None:
        """End the lock's session: the connection is closed, never handed back to the pool holding the lock."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(DBAPIError, OSError):  # already gone, and the lock with it
            await connection.invalidate()
        await connection.close()

    async def _held(self, others: set[int]) -> set[int]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(_HELD_LEASES, {"lock_class": LEASE_LOCK_CLASS})
        return {int(lease) for (lease,) in rows} & others


class FileLockLease(Lease):
    def __init__(self, lease_id: int, units: UnitOfWorkFactory, directory: Path, *, private: bool) -> None:
        super().__init__(lease_id, units)
        self._directory = directory
        self._private = private  # a directory made for this process alone, removed at release
        self._fd: int | None = None

    def lock(self) -> None:
        """Lock a fresh file, then give it its name: no one ever finds a live lease's file unlocked."""
        self._directory.mkdir(parents=True, exist_ok=True)
        fresh = self._directory / f".{self.id}.{uuid.uuid4().hex}"
        fd = os.open(fresh, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)  # not inherited by child processes
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(fresh, self._path(self.id))
        self._fd = fd

    async def release(self) -> None:
        if self._fd is not None:
            self._path(self.id).unlink(missing_ok=True)  # while still locked, so no one takes it for a crash
            os.close(self._fd)
            self._fd = None
        if self._private:
            shutil.rmtree(self._directory, ignore_errors=True)
        await super().release()

    async def keep(self) -> None:
        """The kernel holds a flock for as long as the process lives."""

    async def forget_ended(self) -> set[int]:
        ended = await super().forget_ended()
        for lease in ended:
            self._path(lease).unlink(missing_ok=True)
        return ended

    async def _held(self, others: set[int]) -> set[int]:
        return {lease for lease in others if _locked(self._path(lease))}

    def _path(self, lease: int) -> Path:
        return self._directory / f"{lease}.lock"


def _locked(path: Path) -> bool:
    """Whether some process holds the lock on ``path``; a missing file is a lease released or forgotten."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also lets go of the lock if this test took it
    return False


async def acquire_lease(engine: AsyncEngine, units: UnitOfWorkFactory) -> Lease:
    """Register this process and take its lease; forget the rows of processes that crashed."""
    async with units() as uow:
        row = await uow.add(ProcessLease(host=socket.gethostname(), pid=os.getpid(), started_at=utcnow()))
        await uow.commit()
    assert row.id is not None
    lease: Lease
    if engine.dialect.name == "postgresql":
        lease = AdvisoryLockLease(row.id, units, engine)
        await lease.lock()
    else:
        database = engine.url.database
        if database and database != ":memory:":
            lease = FileLockLease(row.id, units, Path(f"{database}.leases"), private=False)
        else:  # no other process can see an in-memory database
            lease = FileLockLease(row.id, units, Path(tempfile.mkdtemp(prefix="aios-leases-")), private=True)
        lease.lock()
    await lease.forget_ended()
    log.info("lease_taken", lease=lease.id)
    return lease


async def claim_intents(
    units: UnitOfWorkFactory,
    owner: int,
    limit: int,
    *,
    planning: Collection[int] = (),
    filed_sources: Collection[str] = (),
) -> list[int]:
    """Up to ``limit`` received intents for ``owner`` to plan, oldest first: those it owns already that it is
    not ``planning`` (recovery took them over for it, or its claim committed but the reply was lost), then
    those that name no owner (stored by a front door that leaves the work to workers), which it claims. Intents
    of ``filed_sources`` are filed by their own path, never planned from their text.

    An idle worker asks every few tenths of a second, so the store is first read without the write lock (on
    SQLite a writing transaction is a ``BEGIN IMMEDIATE`` that a front door's ack would wait behind). Unowned
    intents are then read and locked, and owned, in one transaction, so that of workers claiming at once each
    intent goes to one: on PostgreSQL the rows another worker has locked are skipped (``FOR UPDATE SKIP
    LOCKED``) rather than waited for; SQLite has one writer at a time. An intent whose worker dies is then work
    of a dead owner, which recovery hands to a live process."""
    if limit <= 0:
        return []
    waiting = (
        select(Intent.id, Intent.owner)
        .where(
            col(Intent.status) == IntentStatus.RECEIVED,
            or_(col(Intent.owner).is_(None), col(Intent.owner) == owner),
            col(Intent.id).not_in(planning),
            col(Intent.source).not_in(filed_sources),
        )
        .order_by(col(Intent.id))
        .limit(limit)
    )
    async with units.read() as uow:
        seen = (await uow.session.exec(waiting)).all()
    mine = [intent_id for intent_id, of in seen if of == owner and intent_id is not None]
    if len(mine) == len(seen):
        return mine
    async with units() as uow:
        session = uow.session
        unowned = (
            select(Intent.id)
            .where(
                col(Intent.status) == IntentStatus.RECEIVED,
                col(Intent.owner).is_(None),
                col(Intent.source).not_in(filed_sources),
            )
            .order_by(col(Intent.id))
            .limit(limit - len(mine))
        )
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            unowned = unowned.with_for_update(skip_locked=True)
        claimed = [intent_id for intent_id in (await session.exec(unowned)).all() if intent_id is not None]
        if claimed:
            await session.exec(update(Intent).where(col(Intent.id).in_(claimed)).values(owner=owner))
        await uow.commit()
    return sorted(mine + claimed)
