"""What the audit chain's appending costs a transaction, and that its shortcuts never record a record other than
as stored: the content is taken from the write only where no one else can have changed the row, and read back
otherwise. Each test ends with verify, which compares every record with its last entry."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, event, inspect, make_url, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from storage.audit import APPEND_LOCK, AuditedSession, canonical, verify
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import (
    ActionStatus,
    Approval,
    ApprovalStatus,
    ApprovalVote,
    AuditEntry,
    Capability,
    Decision,
    Execution,
    ExecutionAttempt,
    Intent,
    ProposedAction,
    Run,
    utcnow,
)
from storage.repositories.base import audited_write, insert_records
from storage.unit_of_work import UnitOfWorkFactory


@dataclass
class Store:
    engine: AsyncEngine
    units: UnitOfWorkFactory
    action: ProposedAction
    approval: Approval
    execution: Execution

    @contextmanager
    def statements(self) -> Iterator[list[str]]:
        """The SQL sent meanwhile, each statement as its verb and table (BEGIN left out)."""
        sent: list[str] = []

        def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if not statement.startswith("BEGIN"):
                sent.append(shape(statement))

        event.listen(self.engine.sync_engine, "before_cursor_execute", note)
        try:
            yield sent
        finally:
            event.remove(self.engine.sync_engine, "before_cursor_execute", note)

    async def entries(self) -> list[AuditEntry]:
        async with self.units() as uow:
            return list((await uow.session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))).all())

    async def intact(self) -> None:
        """Every record matches its last entry and the chain links up (the execution here was never meant to
        be covered by a spent capability: these tests are about the chain)."""
        report = await verify(self.units, lambda name, params: set(), lambda text: None)
        assert [p for p in report.problems if p.kind != "execution without cover"] == []
        assert report.entries > 0


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An action asking for approval, its approval, and an execution of it started, all committed."""
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        units = UnitOfWorkFactory.for_engine(engine)
        async with units() as uow:
            intent = await uow.add(Intent(source="console", channel="C0SHOP", user="U0ALICE", text="refund"))
            run = await uow.add(Run(intent_id=intent.id or 0, agent="returns"))
            action = await uow.add(
                ProposedAction(run_id=run.id or 0, name="shop.refund", params={"amount": 1})
            )
            asked = await uow.add(
                Decision(action_id=action.id or 0, kind="policy", verdict="ask", actor="policy")
            )
            approval = await uow.add(
                Approval(
                    action_id=action.id or 0,
                    decision_id=asked.id or 0,
                    approver_roles=["managers"],
                    requester="U0ALICE",
                    channel="C0SHOP",
                )
            )
            execution = await uow.add(
                Execution(action_id=action.id or 0, idempotency_key="k1", status="started", owner=1)
            )
            await uow.commit()
        yield Store(engine, units, action, approval, execution)
    finally:
        await engine.dispose()


def shape(statement: str) -> str:
    """``SELECT approval``, ``UPDATE execution``, ``INSERT audit_entry``, ``DELETE audit_entry``,
    ``SELECT pg_advisory_xact_lock``."""
    words = statement.replace("(", " ").split()
    if words[0] == "SELECT":
        return f"SELECT {words[words.index('FROM') + 1] if 'FROM' in words else words[1]}"
    return f"{words[0]} {words[2] if words[0] in ('INSERT', 'DELETE') else words[1]}"


def audit_statements(sent: list[str]) -> list[str]:
    return [s for s in sent if s.endswith(("audit_entry", "pg_advisory_xact_lock"))]


async def test_a_transaction_after_the_head_its_engine_knows_appends_in_one_insert(store: Store) -> None:
    """New records, a Core compare-and-set and an ORM change: the rows are known from the writes, and the head
    and the action's and the approval's last entries from the fixture's commit on the same engine, so the audit
    adds one statement: the INSERT of the entries after that head."""
    with store.statements() as sent:
        async with store.units() as uow:
            action = await uow.get(ProposedAction, store.action.id)
            assert action is not None
            await uow.add(Decision(action_id=action.id or 0, kind="human", verdict="approve", actor="U0BOB"))
            assert await uow.approvals.decide_approval(
                store.approval.id or 0, ApprovalStatus.APPROVED, "U0BOB", utcnow()
            )
            await uow.approvals.mint_capability(
                Capability(
                    action_id=action.id or 0,
                    action_name=action.name,
                    params_hash="h",
                    policy_hash="p",
                    granted_by="U0BOB",
                    expires_at=utcnow() + timedelta(minutes=5),
                )
            )
            action.status = "approved"
            uow.session.add(action)
            await uow.commit()

    # On PostgreSQL the action changed through the ORM is read back: another transaction may have changed it
    # since its load (READ COMMITTED); on SQLite nobody can have.
    postgres = store.engine.dialect.name == "postgresql"
    assert sent == [
        "SELECT proposed_action",  # the load
        "INSERT decision",
        "UPDATE approval",  # the compare-and-set, RETURNING its row
        "INSERT capability",  # RETURNING its row
        "UPDATE proposed_action",  # the flush at commit
        *(["SELECT proposed_action"] if postgres else []),
        "INSERT audit_entry",
    ]
    entries = await store.entries()
    assert [e.record_table for e in entries[-4:]] == ["decision", "approval", "capability", "proposed_action"]
    await store.intact()


async def decide(units: UnitOfWorkFactory, action_id: int, actor: str, rationale: str | None = None) -> None:
    """A transaction that appends: a new decision, and the action's rationale when given."""
    async with units() as uow:
        await uow.add(Decision(action_id=action_id, kind="human", verdict="vote", actor=actor))
        if rationale is not None:
            action = await uow.get(ProposedAction, action_id)
            assert action is not None
            action.rationale = rationale
            uow.session.add(action)
        await uow.commit()


def head_read(postgres: bool) -> list[str]:
    return [*(["SELECT pg_advisory_xact_lock"] if postgres else []), "SELECT audit_entry"]


async def test_after_another_engine_appended_the_entries_go_after_the_head_read(
    store: Store, database_url: str
) -> None:
    """Another engine (another replica) appends: the known head is out of date, so the INSERT after it finds its
    first seq taken; the entry that went in is taken out, and the entries are linked to the head read instead.
    The next transaction appends in one INSERT again."""
    action_id = store.action.id or 0
    other = create_engine(database_url)
    try:
        await decide(UnitOfWorkFactory.for_engine(other), action_id, "U0OTHER")

        with store.statements() as sent:
            async with store.units() as uow:
                await uow.add(Decision(action_id=action_id, kind="human", verdict="vote", actor="U0BOB"))
                assert await uow.approvals.decide_approval(
                    store.approval.id or 0, ApprovalStatus.APPROVED, "U0BOB", utcnow()
                )
                await uow.commit()
        assert audit_statements(sent) == [
            "INSERT audit_entry",  # the decision's seq is the other engine's: the approval's goes in
            "DELETE audit_entry",  # and is taken out (its seq stays this transaction's: no turn to wait for)
            "SELECT audit_entry",
            "INSERT audit_entry",
        ]

        with store.statements() as sent:
            await decide(store.units, action_id, "U0CAROL")
        assert audit_statements(sent) == ["INSERT audit_entry"]
    finally:
        await other.dispose()
    entries = await store.entries()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [(e.record_table, e.record_id) for e in entries[-4:]] == [
        ("decision", entries[-4].record_id),
        ("decision", entries[-3].record_id),
        ("approval", str(store.approval.id)),
        ("decision", entries[-1].record_id),
    ]
    await store.intact()


async def test_a_record_changed_back_after_another_engine_changed_it_gets_an_entry(
    store: Store, database_url: str
) -> None:
    """This engine records the action's rationale as "mine", another engine then as "theirs", and this engine sets
    "mine" again: the last entry this engine knows of the action holds "mine", but it is not the last one any more.
    The INSERT after the known head finds its seq taken, so the action is compared with its entry as read."""
    action_id = store.action.id or 0
    await decide(store.units, action_id, "U0BOB", rationale="mine")
    other = create_engine(database_url)
    try:
        await decide(UnitOfWorkFactory.for_engine(other), action_id, "U0OTHER", rationale="theirs")
    finally:
        await other.dispose()

    await decide(store.units, action_id, "U0BOB", rationale="mine")

    last_of_action = [e for e in await store.entries() if e.record_table == "proposed_action"][-1]
    assert '"rationale":"mine"' in last_of_action.content
    await store.intact()


async def test_a_commit_that_fails_after_the_append_leaves_the_next_append_linked_to_the_chain(
    store: Store,
) -> None:
    """The commit fails after the entries were inserted (here a commit hook after the audit's raises): they are
    rolled back with the transaction, the head they would have made is forgotten, and the next append reads the
    head the chain has."""
    postgres = store.engine.dialect.name == "postgresql"
    action_id = store.action.id or 0
    before = await store.entries()

    def fail(_session: Any) -> None:
        raise RuntimeError("the commit failed")

    event.listen(AuditedSession, "before_commit", fail)
    try:
        with pytest.raises(RuntimeError, match="the commit failed"):
            await decide(store.units, action_id, "U0BOB")
    finally:
        event.remove(AuditedSession, "before_commit", fail)
    assert await store.entries() == before

    with store.statements() as sent:
        await decide(store.units, action_id, "U0CAROL")

    assert audit_statements(sent) == [*head_read(postgres), "INSERT audit_entry"]
    entries = await store.entries()
    assert len(entries) == len(before) + 1 and entries[-1].prev_hash == before[-1].entry_hash
    await store.intact()


async def lose_the_last_decision(database_url: str) -> None:
    """The store as a restore, or a failover to a replica that lagged, leaves it under a running process: the
    last decision and its audit entry, both committed, are gone."""
    other = create_engine(database_url)
    try:
        async with other.begin() as connection:
            await connection.execute(
                text("DELETE FROM audit_entry WHERE seq = (SELECT max(seq) FROM audit_entry)")
            )
            await connection.execute(text("DELETE FROM decision WHERE id = (SELECT max(id) FROM decision)"))
    finally:
        await other.dispose()


async def test_after_the_store_lost_the_head_its_engine_knows_the_entries_go_after_the_head_read(
    store: Store, database_url: str
) -> None:
    """The store loses the entry this engine last appended: the INSERT after it goes in only where that head is
    still in the chain, so it inserts nothing, and the entries are linked to the head read instead (linked to
    the lost one, they would leave a gap in the chain)."""
    postgres = store.engine.dialect.name == "postgresql"
    before = await store.entries()
    await decide(store.units, store.action.id or 0, "U0BOB")
    await lose_the_last_decision(database_url)

    with store.statements() as sent:
        await decide(store.units, store.action.id or 0, "U0CAROL")

    assert audit_statements(sent) == ["INSERT audit_entry", *head_read(postgres), "INSERT audit_entry"]
    entries = await store.entries()
    assert [e.seq for e in entries] == list(range(1, len(before) + 2))
    assert entries[-1].prev_hash == before[-1].entry_hash
    await store.intact()


async def test_after_a_connection_found_broken_is_replaced_the_chain_stays_intact(
    store: Store, database_url: str
) -> None:
    """A failover shows as a broken connection, and a new one then goes to the promoted replica, which may lack
    the last commits: the entries appended through it are linked to the head it has."""
    before = await store.entries()
    await decide(store.units, store.action.id or 0, "U0BOB")
    await lose_the_last_decision(database_url)
    async with store.engine.connect() as connection:
        await connection.invalidate()

    await decide(store.units, store.action.id or 0, "U0CAROL")

    entries = await store.entries()
    assert [e.seq for e in entries] == list(range(1, len(before) + 2))
    assert entries[-1].prev_hash == before[-1].entry_hash
    await store.intact()


async def test_a_new_connection_leaves_the_head_known_to_be_appended_after_in_one_statement(
    store: Store,
) -> None:
    """Connections come and go in a burst (the pool's overflow): each new one is no reason to read the head again,
    the INSERT after the known head finding for itself whether it is still in the chain."""
    await decide(store.units, store.action.id or 0, "U0BOB")
    await store.engine.dispose()  # the pool's connections closed: the next append's is a new one

    with store.statements() as sent:
        await decide(store.units, store.action.id or 0, "U0CAROL")

    assert audit_statements(sent) == ["INSERT audit_entry"]
    await store.intact()


async def test_bookkeeping_alone_sends_nothing_for_the_audit(store: Store) -> None:
    """An approval's card posted (its message_ts) and an execution taken over (its owner) change nothing the
    chain covers: no read-back, no entry, not a statement more than the writes."""
    before = len(await store.entries())
    with store.statements() as sent:
        async with store.units() as uow:
            approval = await uow.get(Approval, store.approval.id)
            assert approval is not None
            approval.message_ts = "1700000000.000200"
            uow.session.add(approval)
            await uow.commit()
        async with store.units() as uow:
            assert await uow.take_over([store.execution], 2) == {store.execution.id}
            await uow.commit()

    assert audit_statements(sent) == []
    assert sent == ["SELECT approval", "UPDATE approval", "UPDATE execution"]
    assert len(await store.entries()) == before
    await store.intact()


async def test_an_object_loaded_in_an_earlier_transaction_is_read_back(store: Store) -> None:
    """An object kept from an earlier unit of work may be out of date in columns its change leaves alone: the
    row is read back, so its entry holds what another writer changed meanwhile too."""
    async with store.units() as uow:
        kept = await uow.get(ProposedAction, store.action.id)
        assert kept is not None
    async with store.units() as uow:
        action = await uow.get(ProposedAction, store.action.id)
        assert action is not None
        action.rationale = "reworded by another writer"
        uow.session.add(action)
        await uow.commit()

    async with store.units() as uow:
        kept.status = "approved"
        uow.session.add(kept)
        await uow.commit()

    last = (await store.entries())[-1]
    assert (
        '"rationale":"reworded by another writer"' in last.content and '"status":"approved"' in last.content
    )
    await store.intact()


async def test_a_core_update_then_an_orm_change_of_the_same_row_is_read_back(store: Store) -> None:
    """A Core UPDATE that leaves the ORM object as it was, then a change through that object: the object does not
    know the Core UPDATE's column, so the row is read back."""
    async with store.units() as uow:
        action = await uow.get(ProposedAction, store.action.id)
        assert action is not None
        await uow.session.exec(
            update(ProposedAction)
            .where(col(ProposedAction.id) == action.id)
            .values(rationale="set by a Core UPDATE")
            .execution_options(synchronize_session=False)
        )
        action.status = "approved"
        uow.session.add(action)
        await uow.commit()

    last = (await store.entries())[-1]
    assert '"rationale":"set by a Core UPDATE"' in last.content and '"status":"approved"' in last.content
    await store.intact()


async def test_a_row_changed_by_another_transaction_after_the_load_is_recorded_as_stored(
    store: Store, database_url: str
) -> None:
    """PostgreSQL (READ COMMITTED): a transaction loads an action, another changes and commits it, then the first
    changes another column. Its UPDATE applies to the row as the other left it, so the object in memory is out
    of date: the row is read back. (SQLite's writers take turns from BEGIN, so this cannot interleave there.)"""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns from BEGIN to COMMIT: the interleaving cannot happen")
    other = create_engine(database_url)
    try:
        async with store.units() as uow:
            action = await uow.get(ProposedAction, store.action.id)
            assert action is not None
            async with UnitOfWorkFactory.for_engine(other)() as concurrent:
                await concurrent.session.exec(
                    update(ProposedAction)
                    .where(col(ProposedAction.id) == action.id)
                    .values(rationale="changed meanwhile")
                )
                await concurrent.commit()
            action.status = "approved"
            uow.session.add(action)
            await uow.commit()
    finally:
        await other.dispose()

    last = (await store.entries())[-1]
    assert '"rationale":"changed meanwhile"' in last.content and '"status":"approved"' in last.content
    await store.intact()


async def test_values_the_database_changes_are_recorded_as_it_stores_them(store: Store) -> None:
    """Python takes 1 for a boolean and 2.0 for an integer; the database keeps true and 2, and so must the
    entry."""
    async with store.units() as uow:
        approval = await uow.get(Approval, store.approval.id)
        assert approval is not None
        approval.forbid_self_approval = 1  # type: ignore[assignment]
        approval.quorum = 2.0  # type: ignore[assignment]
        uow.session.add(approval)
        await uow.commit()
    last = (await store.entries())[-1]
    assert '"forbid_self_approval":true' in last.content and '"quorum":2,' in last.content
    await store.intact()


async def test_json_is_recorded_as_the_column_keeps_it(store: Store) -> None:
    """A key given as both 1 and "1" is one key once stored as JSON text (the last one given), a tuple a list."""
    async with store.units() as uow:
        await uow.add(
            Decision(
                action_id=store.action.id or 0,
                kind="policy",
                verdict="ask",
                actor="policy",
                facts={"m": {1: "first", "1": "last"}, "t": (1, 2), "n": 1e20},
            )
        )
        await uow.commit()
    last = (await store.entries())[-1]
    assert '"m":{"1":"last"}' in last.content and '"t":[1,2]' in last.content
    await store.intact()


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "the awaited moment never came"
        await asyncio.sleep(0.02)


async def test_a_transaction_holding_seqs_it_took_out_appends_without_waiting_for_the_turn(
    store: Store, database_url: str
) -> None:
    """PostgreSQL. Another engine appends, so this engine's known head is out of date: its INSERT of two entries
    (a decision and the action) finds the first seq taken and the second free, and the entry that went in is taken
    out, its seq still this transaction's until it ends. Meanwhile a transaction knowing no head waits for the
    turn (held by a third connection here); with the turn it reads the head and inserts at that very seq, so it
    waits for the first. Were the first to wait for the turn, each would wait for the other (a deadlock): it
    appends after the head read without the turn, and both commit."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns from BEGIN to COMMIT: no one waits for another's seq")
    action_id = store.action.id or 0
    other, knowing_nothing = create_engine(database_url), create_engine(database_url)
    connection = await asyncpg.connect(
        make_url(database_url).set(drivername="postgresql").render_as_string(False)
    )
    turn = connection.transaction()
    tasks: list[asyncio.Task[None]] = []

    async def waiting_for_the_turn(count: int) -> bool:
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return bool(waiting == count)

    try:
        await decide(UnitOfWorkFactory.for_engine(other), action_id, "U0OTHER")
        await turn.start()
        await connection.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        tasks.append(
            asyncio.create_task(decide(UnitOfWorkFactory.for_engine(knowing_nothing), action_id, "U0NEW"))
        )
        await until(lambda: waiting_for_the_turn(1))
        with store.statements() as sent:
            behind = asyncio.create_task(decide(store.units, action_id, "U0BOB", rationale="behind"))
            tasks.append(behind)

            async def appended_or_waiting() -> bool:
                return behind.done() or await waiting_for_the_turn(2)

            await until(appended_or_waiting)
            await turn.commit()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        for task in tasks:
            task.cancel()
        await connection.close()
        await other.dispose()
        await knowing_nothing.dispose()

    assert audit_statements(sent) == [
        "INSERT audit_entry",
        "DELETE audit_entry",
        "SELECT audit_entry",
        "INSERT audit_entry",
    ]
    entries = await store.entries()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    await store.intact()


async def test_appends_from_several_engines_at_once_all_commit_and_chain(
    store: Store, database_url: str
) -> None:
    """PostgreSQL, a few seconds of it: three engines (replicas), three tasks each, change actions and add
    decisions at once; some transactions roll back, some fail at commit after appending (so their engine reads
    the head next time). Every other transaction commits, and the chain holds each change once, in order."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns from BEGIN to COMMIT: appends cannot interleave")
    actions = [store.action.id or 0]
    async with store.units() as uow:
        for amount in (2, 3):
            added = await uow.add(
                ProposedAction(run_id=store.action.run_id, name="shop.refund", params={"amount": amount})
            )
            actions.append(added.id or 0)
        await uow.commit()
    engines = [store.engine, create_engine(database_url), create_engine(database_url)]
    failed: list[BaseException] = []

    def fail_some_commits(session: Any) -> None:
        if session.info.pop("fail this commit", False):
            raise RuntimeError("the commit failed")

    async def writer(units: UnitOfWorkFactory, seed: int) -> None:
        chance = random.Random(seed)
        for _ in range(20):
            try:
                async with units() as uow:
                    action = await uow.get(ProposedAction, chance.choice(actions))
                    assert action is not None
                    action.rationale = chance.choice(["a", "b", "c"])
                    uow.session.add(action)
                    for _ in range(chance.choice([0, 1, 2])):
                        await uow.add(
                            Decision(action_id=action.id or 0, kind="human", verdict="vote", actor="U")
                        )
                    if chance.random() < 0.1:
                        continue  # rolled back as the unit of work closes
                    uow.session.info["fail this commit"] = chance.random() < 0.1
                    await uow.commit()
            except RuntimeError as failure:
                if str(failure) != "the commit failed":
                    failed.append(failure)
            except Exception as failure:  # any other failure fails the test, once every writer is done
                failed.append(failure)

    event.listen(AuditedSession, "before_commit", fail_some_commits)
    try:
        writers = [
            writer(UnitOfWorkFactory.for_engine(e), 10 * i + t)
            for i, e in enumerate(engines)
            for t in range(3)
        ]
        await asyncio.wait_for(asyncio.gather(*writers), 20)
    finally:
        event.remove(AuditedSession, "before_commit", fail_some_commits)
        for engine in engines[1:]:
            await engine.dispose()
    assert failed == []
    await store.intact()


async def test_a_savepoint_released_then_rolled_back_with_its_transaction_leaves_no_head_behind(
    store: Store,
) -> None:
    """A decision written in a savepoint that is released, in a transaction then rolled back: nothing of it is in
    the chain, and the next transaction links its entry to the chain's real head (were the head its release
    would have made remembered, the next append would go after an entry that never was: a gap)."""
    before = await store.entries()
    async with store.units() as uow:
        async with uow.session.begin_nested():
            await uow.add(
                Decision(action_id=store.action.id or 0, kind="policy", verdict="ask", actor="policy")
            )
        await uow.session.rollback()
    assert await store.entries() == before

    await decide(store.units, store.action.id or 0, "U0BOB")

    entries = await store.entries()
    assert len(entries) == len(before) + 1 and entries[-1].prev_hash == before[-1].entry_hash
    await store.intact()


async def test_a_savepoint_rolled_back_undoes_only_what_was_written_in_it(store: Store) -> None:
    """A decision written, then another in a savepoint rolled back, then the commit: the first decision gets its
    entry, the second (never stored) none."""
    action_id = store.action.id or 0
    before = await store.entries()
    async with store.units() as uow:
        kept = await uow.add(Decision(action_id=action_id, kind="policy", verdict="ask", actor="policy"))
        savepoint = await uow.session.begin_nested()
        await uow.add(Decision(action_id=action_id, kind="policy", verdict="deny", actor="policy"))
        await savepoint.rollback()
        await uow.commit()

    entries = await store.entries()
    assert [(e.record_table, e.record_id) for e in entries[len(before) :]] == [("decision", str(kept.id))]
    await store.intact()


async def test_an_update_built_once_with_a_returning_of_its_own_is_recorded_with_its_bound_values(
    store: Store,
) -> None:
    """A statement built once binds its values at execution; the rows it writes are found with those values too."""
    built_once = (
        update(ProposedAction)
        .where(col(ProposedAction.id) == bindparam("action_id"))
        .values(rationale=bindparam("set_rationale"))
        .returning(col(ProposedAction.id))
        .execution_options(synchronize_session=False)
    )
    async with store.units() as uow:
        written = await uow.session.exec(
            built_once, params={"action_id": store.action.id, "set_rationale": "bound at execution"}
        )
        assert list(written.scalars()) == [store.action.id]
        await uow.commit()

    last = (await store.entries())[-1]
    assert '"rationale":"bound at execution"' in last.content
    await store.intact()


# Written past the session, as the gated path's prebuilt writes are (storage.repositories.base.audited_write).
_RATIONALE_IF = (
    update(ProposedAction)
    .where(col(ProposedAction.id) == bindparam("action_id"), col(ProposedAction.status) == bindparam("was"))
    .values(rationale=bindparam("set_rationale"))
)


async def test_a_write_past_the_session_is_recorded_with_the_content_its_row_holds(store: Store) -> None:
    """A Core UPDATE and an INSERT … ON CONFLICT run on the session's connection with their whole row returned:
    each gets its entry with the row's content as stored, and nothing is read back for it at commit."""
    action_id = store.action.id or 0
    before = len(await store.entries())
    with store.statements() as sent:
        async with store.units() as uow:
            changed = {"action_id": action_id, "was": "proposed", "set_rationale": "set past the session"}
            assert (await audited_write(uow.session, _RATIONALE_IF, changed)).rowcount == 1
            assert await uow.approvals.add_vote(store.approval.id or 0, "U0BOB")
            await uow.commit()

    assert sent == ["UPDATE proposed_action", "INSERT approval_vote", "INSERT audit_entry"]
    entries = (await store.entries())[before:]
    async with store.units() as uow:
        connection = await uow.session.connection()
        stored_action = (await connection.execute(select(ProposedAction.__table__))).mappings().one()  # type: ignore[attr-defined]
        stored_vote = (await connection.execute(select(ApprovalVote.__table__))).mappings().one()  # type: ignore[attr-defined]
    assert [(e.record_table, e.record_id, e.content) for e in entries] == [
        ("proposed_action", str(action_id), canonical("proposed_action", stored_action)),
        ("approval_vote", str(stored_vote["id"]), canonical("approval_vote", stored_vote)),
    ]
    assert '"rationale":"set past the session"' in entries[0].content
    await store.intact()


async def test_a_write_past_the_session_that_changed_nothing_notes_nothing(store: Store) -> None:
    """A compare-and-set that matched no row, and an INSERT … ON CONFLICT DO NOTHING that met its row, append
    nothing, and read nothing back."""
    approval_id = store.approval.id or 0
    async with store.units() as uow:
        assert await uow.approvals.add_vote(approval_id, "U0BOB")
        await uow.commit()
    before = len(await store.entries())
    with store.statements() as sent:
        async with store.units() as uow:
            unmatched = {"action_id": store.action.id, "was": "executed", "set_rationale": "never written"}
            assert (await audited_write(uow.session, _RATIONALE_IF, unmatched)).rowcount == 0
            assert not await uow.approvals.add_vote(approval_id, "U0BOB")
            await uow.commit()

    assert sent == ["UPDATE proposed_action", "INSERT approval_vote"]
    assert len(await store.entries()) == before
    await store.intact()


async def test_a_write_past_the_session_in_a_savepoint_rolled_back_is_not_recorded(store: Store) -> None:
    """What a Core write noted in a savepoint goes with the savepoint's rollback; what it noted before stays."""
    action_id = store.action.id or 0
    before = len(await store.entries())
    async with store.units() as uow:
        kept = {"action_id": action_id, "was": "proposed", "set_rationale": "kept"}
        await audited_write(uow.session, _RATIONALE_IF, kept)
        savepoint = await uow.session.begin_nested()
        assert await uow.approvals.add_vote(store.approval.id or 0, "U0BOB")
        await savepoint.rollback()
        await uow.commit()

    entries = (await store.entries())[before:]
    assert [(e.record_table, e.record_id) for e in entries] == [("proposed_action", str(action_id))]
    assert '"rationale":"kept"' in entries[0].content
    await store.intact()


async def test_a_savepoint_rolled_back_takes_back_the_objects_of_rows_written_past_the_session(
    store: Store,
) -> None:
    """As the ORM takes back its own flushes: a record inserted in the savepoint is no longer held (its key may
    be given again), one updated in it is read again as stored; a record the ORM flushed in it is taken back too."""
    action_id = store.action.id or 0
    async with store.units() as uow:
        held = await uow.get(ProposedAction, action_id)
        assert held is not None
        await uow.runs.set_action_status(action_id, ActionStatus.APPROVED)  # before: stays
        savepoint = await uow.session.begin_nested()
        added = await uow.add(Decision(action_id=action_id, kind="policy", verdict="ask", actor="policy"))
        flushed = ApprovalVote(approval_id=store.approval.id or 0, user="U0CAROL")
        uow.session.add(flushed)
        await uow.session.flush()
        await uow.runs.set_action_status(action_id, ActionStatus.EXECUTED)
        assert held.status == ActionStatus.EXECUTED
        await savepoint.rollback()
        assert added not in uow.session and flushed not in uow.session
        assert "status" in inspect(held).expired_attributes  # read again when next used
        await uow.session.refresh(held)
        assert held.status == ActionStatus.APPROVED
        again = await uow.add(Decision(action_id=action_id, kind="policy", verdict="ask", actor="policy"))
        assert again.id is not None
        await uow.commit()
    await store.intact()


async def test_an_approval_decided_past_the_session_is_read_as_decided_from_the_object_held(
    store: Store,
) -> None:
    """The approval the unit holds is brought up to date by the decision written past the session: read
    afterwards, it is decided, and a later change through it is recorded with the decision."""
    now = utcnow()
    async with store.units() as uow:
        held = await uow.get(Approval, store.approval.id)
        assert held is not None and held.status == ApprovalStatus.PENDING
        assert await uow.approvals.decide_approval(held.id or 0, ApprovalStatus.APPROVED, "U0BOB", now)
        assert (held.status, held.decided_by, held.decided_at) == (ApprovalStatus.APPROVED, "U0BOB", now)
        held.quorum = 2
        uow.session.add(held)
        await uow.commit()

    last = (await store.entries())[-1]
    assert '"status":"approved"' in last.content and '"quorum":2' in last.content
    await store.intact()


async def test_a_record_added_is_inserted_past_the_flush_and_held_as_stored(store: Store) -> None:
    """A new audited record is inserted with its whole row returned: the unit holds it as stored (JSON as the
    column gives it back), persistent in the session, its entry the row's content with nothing read back; a change
    made through it afterwards is recorded too."""
    action_id = store.action.id or 0
    before = len(await store.entries())
    with store.statements() as sent:
        async with store.units() as uow:
            decision = await uow.add(
                Decision(
                    action_id=action_id, kind="policy", verdict="ask", actor="policy", facts={"seen": (1, 2)}
                )
            )
            assert decision.id is not None and decision.facts == {"seen": [1, 2]}
            assert await uow.get(Decision, decision.id) is decision
            first = canonical("decision", decision.model_dump())
            await uow.commit()
    assert sent == ["INSERT decision", "INSERT audit_entry"]
    [entry] = (await store.entries())[before:]
    assert (entry.record_table, entry.record_id, entry.content) == ("decision", str(decision.id), first)

    with store.statements() as sent:
        async with store.units() as uow:
            added = await uow.add(Decision(action_id=action_id, kind="policy", verdict="ask", actor="policy"))
            added.reason = "changed after it was added"
            uow.session.add(added)
            await uow.commit()
    # Held as stored, its change is known as made: not read back at commit.
    assert sent == ["INSERT decision", "UPDATE decision", "INSERT audit_entry"], sent
    last = (await store.entries())[-1]
    assert last.record_id == str(added.id) and '"reason":"changed after it was added"' in last.content
    await store.intact()


async def test_records_inserted_together_are_recorded_in_their_order(store: Store) -> None:
    """Several records of one table in one INSERT: each gets its key and its entry, in the order given."""
    attempts = [
        ExecutionAttempt(execution_id=store.execution.id or 0, number=n, kind="execute", outcome="ok")
        for n in (1, 2, 3)
    ]
    before = len(await store.entries())
    async with store.units() as uow:
        await insert_records(uow.session, attempts)
        await uow.commit()

    entries = (await store.entries())[before:]
    assert [(e.record_table, e.record_id) for e in entries] == [
        ("execution_attempt", str(a.id)) for a in attempts
    ]
    assert [a.number for a in sorted(attempts, key=lambda a: a.id or 0)] == [1, 2, 3]
    assert all(f'"number":{a.number}' in e.content for a, e in zip(attempts, entries, strict=True))
    await store.intact()


async def test_a_capability_spent_past_the_session_is_recorded_spent_and_held_spent(store: Store) -> None:
    """Spending is a compare-and-set written past the session: the capability the unit holds reads as spent,
    the chain records it spent, and a second spend (nothing written) records nothing."""
    action_id = store.action.id or 0
    later = utcnow() + timedelta(hours=1)
    async with store.units() as uow:
        minted = Capability(
            action_id=action_id,
            action_name="shop.refund",
            params_hash="h",
            policy_hash="p",
            granted_by="U0BOB",
            expires_at=later,
        )
        assert await uow.approvals.mint_capability(minted)
        await uow.commit()
    now = utcnow()
    async with store.units() as uow:
        [held] = (await uow.session.exec(select(Capability))).all()
        assert held.spent_at is None
        assert await uow.approvals.spend_capability(action_id, "shop.refund", "h", now)
        assert held.spent_at == now
        assert not await uow.approvals.spend_capability(action_id, "shop.refund", "h", now)
        await uow.commit()

    entries = await store.entries()
    assert entries[-1].record_table == "capability" and entries[-1].content_hash != entries[-2].content_hash
    assert f'"spent_at":"{now.isoformat(timespec="microseconds")}"' in entries[-1].content
    assert entries[-2].record_table == "capability" and "spent_at" not in entries[-2].content
    await store.intact()
