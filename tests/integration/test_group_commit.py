"""Intents arriving together share one transaction, each acked only after the commit that holds it (a batch without
delivery keys is one INSERT); when a batch's commit fails its items are
stored one by one, so only a faulty one fails (text no database keeps is cleaned first); a delivery key counts
once within a batch and across them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, event, insert, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlmodel import col, select

from runtime.group_commit import MAX_BATCH, GroupCommit
from runtime.intake import _TELLING_APART, IncomingIntent, IntentInbox, _ids_of, store_intents
from storage.engine import create_engine
from storage.multirow import MultiRowInsert
from storage.records import Intent, Once, utcnow
from storage.unit_of_work import UnitOfWorkFactory


def incoming(text: str, key: str | None = None) -> IncomingIntent:
    return IncomingIntent(
        source="mention", team_id="T1", channel="C1", thread_ts=None, user="U1", text=text, delivery_key=key
    )


async def stored_texts(units: UnitOfWorkFactory) -> list[str]:
    async with units() as uow:
        return [i.text for i in (await uow.session.exec(select(Intent).order_by(col(Intent.id)))).all()]


def count_commits(engine: AsyncEngine) -> list[int]:
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _connection: commits.append(1))
    return commits


def intent_inserts(engine: AsyncEngine) -> list[str]:
    inserts: list[str] = []

    def note(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO intent"):
            inserts.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    return inserts


async def test_a_burst_of_intents_is_stored_in_one_commit_and_each_gets_its_own_id(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    inbox = IntentInbox(units, owner=None)
    commits, inserts = count_commits(engine), intent_inserts(engine)
    ids = await asyncio.gather(*(inbox.accept(incoming(f"intent {n}")) for n in range(20)))
    assert len(inserts) == 1
    # PostgreSQL: the burst has no delivery keys to claim, so its one INSERT is sent alone, its own transaction.
    assert len(commits) == (1 if engine.dialect.name == "sqlite" else 0)
    assert len(set(ids)) == 20 and None not in ids
    assert await stored_texts(units) == [f"intent {n}" for n in range(20)]
    async with units() as uow:
        for n, intent_id in enumerate(ids):
            intent = await uow.get(Intent, intent_id)
            assert intent is not None and intent.text == f"intent {n}" and intent.owner is None


async def test_a_delivery_key_counts_once_within_a_batch_and_across_batches(units: UnitOfWorkFactory) -> None:
    inbox = IntentInbox(units, owner=None)
    first = await asyncio.gather(
        inbox.accept(incoming("a", key="Ev1")), inbox.accept(incoming("a again", key="Ev1"))
    )
    assert first[0] is not None and first[1] is None
    later = await asyncio.gather(
        inbox.accept(incoming("a later", key="Ev1")), inbox.accept(incoming("b", "Ev2"))
    )
    assert later[0] is None and later[1] is not None
    assert await stored_texts(units) == ["a", "b"]


def transactions_at_insert(engine: AsyncEngine) -> list[bool]:
    """For each INSERT INTO intent from now on, whether it ran inside a transaction (asyncpg sends BEGIN with
    a transaction's first statement: asked after the statement)."""
    inside: list[bool] = []

    def note(connection: Any, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO intent"):
            driver = connection.connection.dbapi_connection.driver_connection
            begun = driver.in_transaction if engine.dialect.name == "sqlite" else driver.is_in_transaction()
            inside.append(begun)

    event.listen(engine.sync_engine, "after_cursor_execute", note)
    return inside


async def test_a_batch_without_delivery_keys_is_one_statement_committed_before_the_acks(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    inbox = IntentInbox(units, owner=None)
    inside = transactions_at_insert(engine)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    ids = await asyncio.gather(*(inbox.accept(incoming(f"slash {n}")) for n in range(MAX_BATCH)))
    # SQLite: in the transaction that took its write lock. PostgreSQL: sent alone, with no BEGIN and no COMMIT
    # around it (each a round trip), as one statement is atomic by itself: so it must be the only one.
    assert inside == [engine.dialect.name == "sqlite"]
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO intent")
    assert None not in ids and len(set(ids)) == MAX_BATCH
    # Committed before the acks: another connection, which a crash of this process would not stop, reads every
    # acked intent.
    other = create_engine(engine.url.render_as_string(hide_password=False))
    try:
        async with other.connect() as connection:
            stored = await connection.execute(text("SELECT id, text FROM intent ORDER BY id"))
            assert [tuple(row) for row in stored] == [(i, f"slash {n}") for n, i in enumerate(ids)]
    finally:
        await other.dispose()


async def test_a_connection_that_stored_intents_alone_begins_transactions_again_for_the_next_write(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    """The autocommit of a keyless batch on PostgreSQL ends with it: the pool's connection (there is one here)
    is back in transactions for whatever uses it next."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite's batches are stored in a transaction")
    await engine.dispose()  # a pool of its own, empty
    inbox = IntentInbox(units, owner=None)
    await inbox.accept(incoming("slash"))
    assert isinstance(engine.pool, QueuePool) and engine.pool.checkedin() == 1  # the next write takes it
    inside = transactions_at_insert(engine)
    await units.on_connection(lambda connection: store_intents(connection, [incoming("next")], None))
    assert inside == [True]
    async with units() as uow:
        await uow.session.exec(select(Intent))
        connection = (await uow.session.connection()).sync_connection
        assert connection is not None and connection.connection.dbapi_connection is not None
        assert connection.connection.dbapi_connection.driver_connection.is_in_transaction()


async def test_a_batch_with_a_delivery_key_claims_it_and_inserts_in_one_transaction(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    inbox = IntentInbox(units, owner=None)
    inside = transactions_at_insert(engine)
    ids = await asyncio.gather(inbox.accept(incoming("slash")), inbox.accept(incoming("mention", key="Ev1")))
    assert inside and all(inside)
    assert None not in ids
    assert await inbox.accept(incoming("mention again", key="Ev1")) is None


async def test_a_failed_statement_of_a_batch_stores_none_of_it_and_retries_each(
    units: UnitOfWorkFactory,
) -> None:
    async with units() as uow:
        await uow.first_time("taken")
        await uow.commit()

    def insert_keys(connection: Connection, keys: list[str]) -> list[str]:
        connection.execute(insert(Once).values([{"key": key, "created_at": utcnow()} for key in keys]))
        return keys

    async def write(take: Callable[[], list[str]]) -> list[str]:
        return await units.on_connection(lambda connection: insert_keys(connection, take()))

    batches: GroupCommit[str, str] = GroupCommit(write)
    outcomes = await asyncio.gather(
        batches.submit("fresh"), batches.submit("taken"), batches.submit("also fresh"), return_exceptions=True
    )
    assert outcomes[0] == "fresh" and outcomes[2] == "also fresh"
    assert isinstance(outcomes[1], IntegrityError)
    async with units() as uow:
        keys = (await uow.session.exec(select(Once.key).order_by(col(Once.key)))).all()
    assert keys == ["also fresh", "fresh", "taken"]


async def test_callers_arriving_while_a_batch_commits_join_the_next_one(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    inbox = IntentInbox(units, owner=7)
    inserts = intent_inserts(engine)
    first = asyncio.ensure_future(inbox.accept(incoming("first")))
    await asyncio.sleep(0)  # the first batch has started its commit
    rest = [asyncio.ensure_future(inbox.accept(incoming(f"then {n}"))) for n in range(5)]
    ids = [await first, *await asyncio.gather(*rest)]
    assert None not in ids and len(set(ids)) == 6
    assert len(inserts) <= 2
    async with units() as uow:
        assert {(await uow.get(Intent, i)).owner for i in ids} == {7}  # type: ignore[union-attr]


async def test_a_failed_commit_fails_only_the_faulty_caller_of_its_batch(units: UnitOfWorkFactory) -> None:
    failing = {"texts": {"poison"}}

    first_time = MultiRowInsert(Once.__table__, ("key", "created_at"), ("key",), skip_conflicts=True)  # type: ignore[attr-defined]

    def claim(connection: Connection, batch: list[str]) -> list[int]:
        claimed = []
        for item in batch:
            claimed.append(len(first_time(connection, [{"key": f"item:{item}", "created_at": utcnow()}])))
        if failing["texts"] & set(batch):
            connection.execute(text("INSERT INTO no_such_table VALUES (1)"))
        return claimed

    async def write(take: Callable[[], list[str]]) -> list[int]:
        return await units.on_connection(lambda connection: claim(connection, take()))

    batches: GroupCommit[str, int] = GroupCommit(write)
    together = await asyncio.gather(
        batches.submit("poison"), batches.submit("innocent bystander"), return_exceptions=True
    )
    assert isinstance(together[0], SQLAlchemyError)
    assert together[1] == 1  # stored alone once the batch's transaction failed
    assert list(await asyncio.gather(batches.submit("next"), batches.submit("innocent bystander"))) == [1, 0]
    async with units() as uow:
        assert not await uow.first_time("item:next")
        assert await uow.first_time("item:poison")  # nothing of the failed write was kept


async def test_a_passing_fault_fails_no_caller_of_the_batch(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    inbox = IntentInbox(units, owner=None)
    faults = {"left": 1}

    def fail_once(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO intent") and faults["left"]:
            faults["left"] -= 1
            raise ConnectionResetError("the connection dropped")

    event.listen(engine.sync_engine, "before_cursor_execute", fail_once)
    ids = await asyncio.gather(*(inbox.accept(incoming(f"intent {n}")) for n in range(5)))
    assert None not in ids and len(set(ids)) == 5
    assert await stored_texts(units) == [f"intent {n}" for n in range(5)]


async def test_text_no_database_keeps_fails_no_intent_of_its_batch(units: UnitOfWorkFactory) -> None:
    inbox = IntentInbox(units, owner=None)
    ids = await asyncio.gather(
        inbox.accept(incoming("a slash command")),
        inbox.accept(incoming("bad \x00 text \ud800 here", key="Ev1")),
        inbox.accept(incoming("a mention", key="Ev2\x00")),
    )
    assert None not in ids and len(set(ids)) == 3
    assert await stored_texts(units) == ["a slash command", "bad  text \ufffd here", "a mention"]
    assert await inbox.accept(incoming("a retry", key="Ev2\x00")) is None  # its key was claimed as kept


async def test_an_intent_the_database_refuses_fails_alone_and_leaves_nothing_of_its_batch_twice(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    """A keyless batch is one INSERT (on PostgreSQL sent alone, outside a transaction): a row the database
    refuses fails the whole statement, and each intent is then stored alone, once."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite keeps a channel of any length")
    inbox = IntentInbox(units, owner=None)
    too_long = IncomingIntent(
        source="slash", team_id="T1", channel="C" * 41, thread_ts=None, user="U1", text="refused"
    )
    outcomes = await asyncio.gather(
        inbox.accept(incoming("before")), inbox.accept(too_long), inbox.accept(incoming("after")),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(outcomes[1], SQLAlchemyError)
    assert isinstance(outcomes[0], int) and isinstance(outcomes[2], int) and outcomes[0] != outcomes[2]
    assert await stored_texts(units) == ["before", "after"]


async def test_a_batch_is_bounded_and_the_rest_goes_in_the_next(units: UnitOfWorkFactory) -> None:
    sizes: list[int] = []

    async def write(take: Callable[[], list[int]]) -> list[int]:
        batch = take()
        sizes.append(len(batch))
        return batch

    batches: GroupCommit[int, int] = GroupCommit(write, max_batch=4)
    assert await asyncio.gather(*(batches.submit(n) for n in range(10))) == list(range(10))
    assert sizes == [4, 4, 2]


async def test_a_cancelled_caller_does_not_stop_the_others_commit(units: UnitOfWorkFactory) -> None:
    inbox = IntentInbox(units, owner=None)
    opener = asyncio.ensure_future(inbox.accept(incoming("opener")))
    await asyncio.sleep(0)
    joiner = asyncio.ensure_future(inbox.accept(incoming("joiner")))
    opener.cancel()
    assert await joiner is not None
    with pytest.raises(asyncio.CancelledError):
        await opener
    assert "joiner" in await stored_texts(units)


async def test_intents_stored_together_keep_their_times_as_every_other_row_is_kept(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    inbox = IntentInbox(units, owner=None)
    await asyncio.gather(inbox.accept(incoming("a")), inbox.accept(incoming("b", key="Ev1")))
    async with units() as uow:
        await uow.first_time("through the session")
        await uow.commit()
    async with engine.connect() as connection:
        kept = (
            await connection.execute(
                text("SELECT created_at FROM intent UNION ALL SELECT created_at FROM once")
            )
        ).all()
    written = [row[0] for row in kept]
    if (
        engine.dialect.name == "sqlite"
    ):  # text, compared as text: one form for every row ('…:19.000000', no '+00:00')
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", value) for value in written), (
            written
        )
    else:
        assert all(value.tzinfo is not None for value in written), written


def test_each_row_gets_its_own_id_whatever_order_they_come_back_in() -> None:
    def row(text: str, user: str = "U1") -> dict[str, Any]:
        return {
            "source": "slash", "team_id": "T1", "channel": "C1", "thread_ts": None,
            "user": user, "text": text, "message_ts": None,
        }  # fmt: skip

    def back(intent_id: int, stored: dict[str, Any]) -> tuple[Any, ...]:
        return (intent_id, *(stored[column] for column in _TELLING_APART))

    rows = [row("same"), row("other"), row("same"), row("same", user="U2")]
    returned = [back(13, rows[3]), back(12, rows[2]), back(11, rows[1]), back(10, rows[0])]
    # Rows alike get their ids in the order they came; each other row its own.
    assert _ids_of(rows, returned) == [10, 11, 12, 13]
    # A value that came back other than as given (shortened by the database, say) fails nothing: that row gets
    # the id left over.
    shortened = dict(rows[1], channel="C")
    assert _ids_of(rows, [back(10, rows[0]), back(11, shortened), back(12, rows[2]), back(13, rows[3])]) == [
        10,
        11,
        12,
        13,
    ]
    assert _ids_of([row("alone")], [back(7, row("came back otherwise"))]) == [7]


async def test_acks_arriving_while_other_work_holds_the_writer_lock_share_the_waiting_batch(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's writers take no lock of this process")
    inbox = IntentInbox(units, owner=None)
    commits = count_commits(engine)
    async with units():  # the planning's work, say, holding the writer lock
        first = [asyncio.ensure_future(inbox.accept(incoming(f"first {n}"))) for n in range(3)]
        await asyncio.sleep(0.05)  # the batch waits for the lock
        then = [asyncio.ensure_future(inbox.accept(incoming(f"then {n}"))) for n in range(3)]
        await asyncio.sleep(0.05)
        assert not any(ack.done() for ack in first + then)
    ids = await asyncio.gather(*first, *then)
    assert None not in ids and len(set(ids)) == 6
    assert len(commits) == 1  # not a second batch waiting for the lock after the first, behind other work


_TELLING = st.fixed_dictionaries(
    {
        "source": st.sampled_from(["slash", "mention"]),
        "team_id": st.just("T1"),
        "channel": st.sampled_from(["C1", "C2"]),
        "thread_ts": st.sampled_from([None, "1.0"]),
        "user": st.sampled_from(["U1", "U2"]),
        "text": st.sampled_from(["a", "b", ""]),
        "message_ts": st.sampled_from([None, "2.0"]),
    }
)


@given(rows=st.lists(_TELLING, min_size=1, max_size=12), order=st.randoms(use_true_random=False))
def test_ids_handed_back_in_any_order_each_go_to_a_row_that_was_stored_with_it(
    rows: list[dict[str, Any]], order: Any
) -> None:
    stored = {100 + n: row for n, row in enumerate(rows)}  # as the database numbered them, in VALUES order
    returned = [(intent_id, *(row[c] for c in _TELLING_APART)) for intent_id, row in stored.items()]
    order.shuffle(returned)
    ids = _ids_of(rows, returned)
    assert sorted(ids) == sorted(stored)  # each id once
    assert all(stored[intent_id] == row for intent_id, row in zip(ids, rows, strict=True))
    # Rows alike get their ids in the order they came.
    for row in rows:
        alike = [intent_id for intent_id, given in zip(ids, rows, strict=True) if given == row]
        assert alike == sorted(alike)


async def test_a_steady_stream_of_acks_leaves_other_work_its_turn_at_the_writer_lock(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's writers take no lock of this process")
    inbox = IntentInbox(units, owner=None)
    streaming = True
    sent: list[asyncio.Future[int | None]] = []

    async def stream() -> None:
        while streaming:
            sent.append(asyncio.ensure_future(inbox.accept(incoming(f"ack {len(sent)}"))))
            await asyncio.sleep(0)  # as fast as the loop turns: a batch always waiting

    async def planning() -> None:
        async with units() as uow:  # waits for the writer lock behind the acks, which go first
            await uow.first_time("planned")
            await uow.commit()

    acks = asyncio.ensure_future(stream())
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        await planning()  # had the lock between two batches, while the acks went on
    streaming = False
    await acks
    assert None not in await asyncio.gather(*sent)


async def test_a_write_that_never_took_its_batch_fails_its_callers_and_not_the_next(
    units: UnitOfWorkFactory,
) -> None:
    async def write(take: Callable[[], list[int]]) -> list[int]:
        return []  # took nothing, gave nothing

    batches: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(RuntimeError, match="gave 0 results"):
        await batches.submit(1)

    async def taking(take: Callable[[], list[int]]) -> list[int]:
        return take()

    batches._write = taking  # the next batch, written as it should be
    assert await batches.submit(2) == 2
