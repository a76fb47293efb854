"""What every repository shares: the unit of work's session. The writes any record shares are the unit of
work's own (`uow.add`, `uow.first_time`, …), so there is one way in to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, CursorResult, Insert, Table, Update, insert
from sqlalchemy import inspect as inspect_record
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.audit import AUDITED, note_rows, returning_whole_row, sets_bookkeeping_only
from storage.records import ActionEdit, Click, Execution, Intent, Run

Record = TypeVar("Record", bound=SQLModel)
Owned = TypeVar(
    "Owned", Intent, Run, Execution, Click, ActionEdit
)  # work that records the lease of the process doing it


class SessionRepository:
    """Queries over one unit of work's session; each aggregate's repository adds its own."""

    __slots__ = ("session",)

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


async def core_connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection, for a statement that needs nothing of the ORM: no objects loaded, no audit (an
    audited write goes through the session, whose hook sees it, or through :func:`audited_write`). Core skips
    the ORM's per-execution work (it annotates each DML statement anew, whose cache key is then walked again).
    What the session holds is flushed first, as its own execute would: the statement may read what those changes
    write."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    return await session.connection()


async def audited_write(
    session: AsyncSession, statement: Insert | Update, params: Mapping[str, Any] | None = None
) -> CursorResult[Any]:
    """Run an INSERT or UPDATE of an audited table (built once, its values bound by ``params``) on the
    session's connection, past the ORM's execution, with a RETURNING of its whole row, and note the rows it
    wrote for the audit as the session's hook would (``storage.audit.note_rows``). What it costs over the bare
    statement is that RETURNING; through the session, the ORM's execution of it and the hook cost more than the
    statement itself. The result keeps its row count and inserted primary key; the rows written are its
    ``returned_defaults_rows``. An object the session holds of a row written is brought up to date with it (the
    statement's values are bound at execution, which the session's own synchronisation cannot read)."""
    # In one pass to the session's synchronous side (not one for its connection and one for the statement).
    return await session.run_sync(_audited_write, statement, params)


def _audited_write(
    session: Session, statement: Insert | Update, params: Mapping[str, Any] | None
) -> CursorResult[Any]:
    table = statement.table
    assert isinstance(table, Table), "an audited write names its table"
    connection = _flushed_connection(session)
    if isinstance(statement, Update) and sets_bookkeeping_only(statement, table.name, params):
        return connection.execute(statement, params)  # nothing the chain covers: nothing to note
    result = connection.execute(returning_whole_row(statement, table), params)
    written = result.returned_defaults_rows or ()
    note_rows(session, table.name, written, new=isinstance(statement, Insert))
    _bring_held_up_to_date(session, AUDITED[table.name], written)
    return result


def _bring_held_up_to_date(session: Session, model: type[SQLModel], rows: Sequence[Any]) -> None:
    """Set each row's values, as committed, on the object of it the session holds (if any)."""
    mapper = inspect_record(model)
    for row in rows:
        key = tuple(row._mapping[column.name] for column in mapper.primary_key)
        held = session.identity_map.get(mapper.identity_key_from_primary_key(key))
        if held is not None:
            for attribute in mapper.column_attrs:
                set_committed_value(held, attribute.key, row._mapping[attribute.columns[0].name])


def _flushed_connection(session: Session) -> Connection:
    """The session's connection, what it holds flushed first (as core_connection)."""
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection()


async def insert_records(session: AsyncSession, records: Sequence[SQLModel]) -> None:
    """INSERT new records of one audited table, past the ORM's flush: one statement (built once per table; on
    SQLite, SQLAlchemy sends it once per record to keep their order) with a RETURNING of their whole rows, whose
    rows are noted for the audit as the flush's hook would note the
    records. Each record is then what the flush would have made it: holding its row as stored (its key with
    it), and persistent in the session, which tracks changes made to it from then on."""
    if records:
        await session.run_sync(_insert_records, records)


def _insert_records(session: Session, records: Sequence[SQLModel]) -> None:
    model = type(records[0])
    assert all(type(record) is model for record in records), "records of one table at a time"
    mapper = inspect_record(model)
    table = _audited_table(model)
    states = [inspect_record(record) for record in records]
    assert all(state.transient for state in states), "only records the session does not hold yet"
    columns = [(attribute.key, attribute.columns[0]) for attribute in mapper.column_attrs]
    values = [_column_values(columns, state.dict) for state in states]
    rows = _flushed_connection(session).execute(_insert_returning(table), values).all()
    note_rows(session, table.name, rows, new=True, held=True)
    for state, row in zip(states, rows, strict=True):
        stored = row._mapping
        # Set as loaded: making the record detached then takes every value as its committed state.
        state.dict.update((key, stored[column.name]) for key, column in columns)
        make_transient_to_detached(state.obj())
        session.add(state.obj())


def _audited_table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    if table.name not in AUDITED:
        raise ValueError(f"{table.name} is not an audited table")
    return table


def _column_values(columns: Sequence[tuple[str, Column[Any]]], values: Mapping[str, Any]) -> dict[str, Any]:
    """The INSERT's parameters for a record (its attributes' values by key), as the flush sends them: every
    column, but for a primary key left for the database to give."""
    sent: dict[str, Any] = {}
    for key, column in columns:
        value = values.get(key)
        if value is None and column.primary_key:
            continue
        sent[column.key] = value
    return sent


@cache
def _insert_returning(table: Table) -> Insert:
    """INSERT into the table, its columns those of the parameters it is executed with, with a RETURNING of the
    whole row, its rows in the order of the parameters. Built once per table."""
    return insert(table).returning(*table.columns, sort_by_parameter_order=True)


def dialect_of(session: AsyncSession) -> str:
    """The name of the database the session talks to: "postgresql" or "sqlite"."""
    return session.bind.dialect.name if session.bind else "sqlite"


async def insert_if_absent(session: AsyncSession, model: type[SQLModel], values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when this call inserted the row."""
    return bool((await _insert_unless_conflicting(session, model, values)).rowcount)


async def inserted_key(session: AsyncSession, model: type[SQLModel], values: dict[str, Any]) -> Any | None:
    """INSERT … ON CONFLICT DO NOTHING; the primary key of the row this call inserted (handed back by the
    INSERT itself, nothing read after it), None when it inserted none."""
    result = await _insert_unless_conflicting(session, model, values)
    if not result.rowcount:
        return None
    [key] = result.inserted_primary_key or (None,)
    assert key is not None, f"the database gave no key for the {model.__name__} inserted"
    return key


async def _insert_unless_conflicting(
    session: AsyncSession, model: type[SQLModel], values: dict[str, Any]
) -> CursorResult[Any]:
    table: Table = model.__table__  # type: ignore[attr-defined]
    statement = insert_or_nothing(table, dialect_of(session))
    if table.name in AUDITED:
        return await audited_write(session, statement, values)
    return await (await core_connection(session)).execute(statement, values)


@cache
def insert_or_nothing(table: Table, dialect: str) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING into the table, its columns those of the parameters it is executed with.
    Built once per table: a statement remembers its cache key, so each execution skips building it and walking
    it for that key."""
    # Imported here: the PostgreSQL dialect is slow to import, and a store on SQLite never needs it.
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()
