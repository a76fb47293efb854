"""Recovery's take-over of work whose process died, on a store left with 20,000 such rows (SQLite by default,
PostgreSQL with --postgres URL).

    .venv/bin/python -m bench.take_over [--rows 20000] [--repeat 5] [--postgres postgresql+asyncpg://…]

The store holds ``--rows`` intents not yet planned, owned by a process lease that has ended, as a starting
`aios serve` finds them after a crash under load. Each round reads them as recovery does (its anchor, in the same
run) and then takes them over in one unit of work (`UnitOfWork.take_over`, then COMMIT); between rounds they are
given back to the dead owner. Printed: the median of ``--repeat`` rounds of each, after a warm-up, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from bot.logs import configure_logging
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import Intent, IntentStatus, utcnow
from storage.unit_of_work import UnitOfWorkFactory

DEAD = 1  # the lease of the process that died
ALIVE = 2  # the lease of the process starting now
CHUNK = 2_000  # intents inserted per statement


async def fill(units: UnitOfWorkFactory, rows: int) -> None:
    now = utcnow()
    for first in range(0, rows, CHUNK):
        values = [
            {
                "source": "slash",
                "channel": "C0BENCH",
                "user": f"U0{n % 40:06d}",
                "text": f"refund order {n}",
                "status": IntentStatus.RECEIVED,
                "created_at": now,
                "owner": DEAD,
            }
            for n in range(first, min(first + CHUNK, rows))
        ]
        async with units() as uow:
            await uow.session.exec(insert(Intent).values(values))
            await uow.commit()


async def one_round(units: UnitOfWorkFactory, rows: int) -> tuple[float, float]:
    """Seconds to read the dead process's intents as recovery does, and to take them over."""
    started = time.perf_counter()
    async with units() as uow:
        intents = await uow.runs.intents_with_status(IntentStatus.RECEIVED)
    read = time.perf_counter() - started
    assert len(intents) == rows
    started = time.perf_counter()
    async with units() as uow:
        taken = await uow.take_over(intents, ALIVE)
        await uow.commit()
    took = time.perf_counter() - started
    assert len(taken) == rows
    async with units() as uow:  # the dead owner's again, for the next round
        await uow.session.exec(update(Intent).values(owner=DEAD))
        await uow.commit()
    return read, took


@asynccontextmanager
async def sqlite_url(folder: str) -> AsyncIterator[str]:
    yield f"sqlite+aiosqlite:///{Path(folder) / 'take_over.db'}"


async def main() -> None:
    configure_logging(json=False, level=40)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="intents of the dead process")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds, after a warm-up")
    parser.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL database to create a throwaway one from"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.postgres:
            from tests.conftest import throwaway_postgres

            store: Any = throwaway_postgres(args.postgres)
        else:
            store = sqlite_url(folder)
        async with store as url:
            engine = create_engine(url)
            try:
                await upgrade_to_head(engine)
                units = UnitOfWorkFactory.for_engine(engine)
                await fill(units, args.rows)
                await one_round(units, args.rows)  # warm-up
                rounds = [await one_round(units, args.rows) for _ in range(args.repeat)]
            finally:
                await engine.dispose()
    read = statistics.median(r for r, _ in rounds)
    took = statistics.median(t for _, t in rounds)
    print(f"{engine.dialect.name}, {args.rows:,} dead intents, median of {args.repeat}:")
    print(f"  read as recovery does (anchor): {read * 1000:8.1f} ms")
    print(f"  taken over and committed:       {took * 1000:8.1f} ms  ({took / read:.2f}x the read)")


if __name__ == "__main__":
    asyncio.run(main())
