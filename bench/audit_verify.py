"""The audit chain's costs: `verify` over 100,000 entries, and the SQL statements the audit adds to a gated
refund (SQLite by default, PostgreSQL with --postgres URL).

    .venv/bin/python -m bench.audit_verify [--entries 100000] [--postgres postgresql+asyncpg://…]

For verify, the records are written in bulk, a fifth each of actions, allowing decisions, spent capabilities,
executions and execution attempts, and given their entries as an upgraded store would be (the genesis walk);
then `verify` walks the chain, every record and every execution's cover. For the write path, a $250 refund
goes through the whole bot (intent, policy, approval by a manager, execution) twice, once with the audit
hooks and once without, counting the statements each sends (the audit's by kind: the reads of the chain's head,
the INSERTs of entries, PostgreSQL's advisory locks, and the rest, rows read back) and timing each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import event, insert
from sqlmodel import select

from bot.audit_proof import ParamsHasher, installed_action_models, roles_of_policy
from bot.bootstrap import bootstrap
from bot.console import ConsoleTransport
from bot.logs import configure_logging
from bot.settings import Settings
from connectors.actions import ShopRefund
from connectors.registry import params_hash
from runtime.intake import IncomingIntent
from runtime.messages import DecideApproval, HandleIntent
from storage import audit
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import (
    Approval,
    Capability,
    Decision,
    Execution,
    ExecutionAttempt,
    Intent,
    ProposedAction,
    Run,
    utcnow,
)
from storage.unit_of_work import UnitOfWorkFactory

CHUNK = 5000
# The audit's statements on the chain itself, by how each starts.
CHAIN_STATEMENTS = {
    "head": "SELECT audit_entry.seq",
    "insert": "INSERT INTO audit_entry",
    "lock": "SELECT pg_advisory_xact_lock",
}


async def fill(url: str, entries: int) -> None:
    """``entries`` audited records in bulk, then one chain entry each."""
    engine = create_engine(url)
    await upgrade_to_head(engine)
    per_kind = entries // 5
    now = utcnow()
    async with engine.begin() as connection:
        await connection.execute(
            insert(Intent).values(
                id=1, source="console", channel="C0SHOP", user="U0ALICE", text="refunds", created_at=now
            )
        )
        await connection.execute(
            insert(Run).values(
                id=1,
                intent_id=1,
                agent="returns",
                status="completed",
                memories_used=[],
                created_at=now,
                updated_at=now,
            )
        )
    for start in range(1, per_kind + 1, CHUNK):
        ids = range(start, min(start + CHUNK, per_kind + 1))
        refunds = {
            i: ShopRefund(order_id=1000 + i % 5, amount=float(i % 90 + 1), reason="bench") for i in ids
        }
        async with engine.begin() as connection:
            await connection.execute(
                insert(ProposedAction),
                [
                    {
                        "id": i,
                        "run_id": 1,
                        "name": r.name,
                        "params": r.model_dump(mode="json"),
                        "status": "executed",
                        "created_at": now,
                    }
                    for i, r in refunds.items()
                ],
            )
            await connection.execute(
                insert(Decision),
                [
                    {"id": i, "action_id": i, "kind": "policy", "verdict": "allow", "actor": "policy"}
                    | {"rule_id": "small-refunds-are-fine", "policy_hash": "0" * 64, "created_at": now}
                    for i in ids
                ],
            )
            await connection.execute(
                insert(Capability),
                [
                    {"id": i, "action_id": i, "action_name": r.name, "params_hash": params_hash(r)}
                    | {
                        "policy_hash": "0" * 64,
                        "granted_by": "policy",
                        "expires_at": now + timedelta(minutes=15),
                    }
                    | {"spent_at": now, "created_at": now}
                    for i, r in refunds.items()
                ],
            )
            await connection.execute(
                insert(Execution),
                [
                    {"id": i, "action_id": i, "idempotency_key": f"k{i}", "status": "succeeded"}
                    | {"result": {"refund_id": f"re_{i}"}, "started_at": now, "finished_at": now}
                    for i in ids
                ],
            )
            await connection.execute(
                insert(ExecutionAttempt),
                [
                    {
                        "id": i,
                        "execution_id": i,
                        "number": 1,
                        "kind": "execute",
                        "outcome": "ok",
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
    async with engine.begin() as connection:
        await connection.run_sync(audit.genesis)
    await engine.dispose()


async def time_verify(url: str) -> tuple[float, audit.AuditReport]:
    engine = create_engine(url)
    units = UnitOfWorkFactory.for_engine(engine)
    started = time.perf_counter()
    report = await audit.verify(units, ParamsHasher(installed_action_models()), roles_of_policy)
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed, report


async def gated_refund(url: str) -> tuple[int, Counter[str], float]:
    """One $250 refund through the bot: (statements sent, those on the chain itself by kind, seconds)."""
    settings = Settings(
        AIOS_DATABASE_URL=url,
        AIOS_MEMORY_EMBEDDINGS="off",
        _env_file=None,
    )
    transport = ConsoleTransport(Console(quiet=True))
    aios = await bootstrap(settings, transport)
    statements: list[str] = []
    listener = _counter(statements)
    event.listen(aios.engine.sync_engine, "before_cursor_execute", listener)
    started = time.perf_counter()
    intent = IncomingIntent(
        source="console",
        team_id="",
        channel="C0SHOP",
        thread_ts=None,
        user="U0ALICE",
        text="refund order 1001, $250, arrived broken",
        message_ts=None,
    )
    intent_id = await aios.accept(intent)
    assert intent_id is not None
    await aios.process(HandleIntent(intent_id))
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, "U0MANAGER", approve=True, channel="C0SHOP"))
    elapsed = time.perf_counter() - started
    event.remove(aios.engine.sync_engine, "before_cursor_execute", listener)
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
    assert execution.status == "succeeded", execution
    await aios.close()
    on_chain = Counter(
        kind for s in statements for kind, start in CHAIN_STATEMENTS.items() if s.startswith(start)
    )
    if os.environ.get("BENCH_SHOW_STATEMENTS"):
        print("\n".join(s.splitlines()[0][:150] for s in statements))
    return len(statements), on_chain, elapsed


def _counter(statements: list[str]) -> Callable[..., None]:
    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.strip())

    return count


def _audit_hooks(on: bool) -> None:
    for name, hook in audit.HOOKS.items():
        if on and not event.contains(audit.AuditedSession, name, hook):
            event.listen(audit.AuditedSession, name, hook)
        if not on and event.contains(audit.AuditedSession, name, hook):
            event.remove(audit.AuditedSession, name, hook)


async def write_path(url_for: Callable[[str], Any]) -> None:
    results = {}
    for on in (False, True, False, True):  # twice each, the second of each warm
        _audit_hooks(on)
        async with url_for(f"refund{'_audited' if on else ''}") as url:
            results[on] = await gated_refund(url)
    _audit_hooks(True)
    (plain, _, plain_s), (audited, on_chain, audited_s) = results[False], results[True]
    others = audited - plain - sum(on_chain.values())
    print(
        f"gated $250 refund (intent → policy → approval → execution): {plain} statements without the audit, "
        f"{audited} with it (+{audited - plain}: {on_chain['head']} reads of the chain's head with last entries, "
        f"{on_chain['insert']} INSERTs of entries, {on_chain['lock']} advisory locks, {others} other, such as "
        f"rows read back); {plain_s * 1000:.0f} ms → {audited_s * 1000:.0f} ms"
    )


def sqlite_urls(folder: str) -> Callable[[str], Any]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def url_for(name: str) -> Any:
        path = Path(folder) / f"{name}.db"
        path.unlink(missing_ok=True)
        yield f"sqlite+aiosqlite:///{path}"

    return url_for


def postgres_urls(base: str) -> Callable[[str], Any]:
    from tests.conftest import throwaway_postgres

    def url_for(_name: str) -> Any:
        return throwaway_postgres(base)

    return url_for


async def main() -> None:
    configure_logging(json=False, level=40)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL database to create throwaway ones from"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url_for = postgres_urls(args.postgres) if args.postgres else sqlite_urls(folder)
        async with url_for("verify") as url:
            started = time.perf_counter()
            await fill(url, args.entries)
            print(
                f"wrote {args.entries:,} records and their entries in {time.perf_counter() - started:.1f} s"
            )
            elapsed, report = await time_verify(url)
            assert report.intact, report.problems[:3]
            print(
                f"verify: {report.entries:,} entries, {report.records:,} records, {report.executions:,} executions "
                f"covered in {elapsed:.2f} s ({report.entries / elapsed:,.0f} entries/s)"
            )
        await write_path(url_for)


if __name__ == "__main__":
    asyncio.run(main())
