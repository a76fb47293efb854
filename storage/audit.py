"""A tamper-evident audit: every write to a governance record appends an entry to one hash chain.

Each :class:`~storage.records.AuditEntry` holds a record's canonical content, its hash, and the hash of the
entry before it, so editing, deleting or reordering anything (a record or an entry) breaks the chain at a
place :func:`verify` can name. Entries are appended by the session hooks below, in the transaction of the
write itself: the handlers know nothing of the audit.

Canonical content is the JSON of the record's columns (sorted keys, datetimes as ISO UTC, no spaces), with
two kinds of column left out: bookkeeping that changes without meaning (which process holds an execution,
which Slack message shows an approval) and columns that are null, so that a column added by a later
migration (null on old rows) does not change the hash of records written before it. A write of bookkeeping
alone appends nothing.

What the appending costs a transaction: a record's content is taken from the write where the write tells it
(a new ORM object; a Core INSERT or UPDATE, given a RETURNING of the whole row; an ORM object changed where
nobody else can have written its row since it was loaded) and read back at commit otherwise; then one
statement inserts the entries after the head the engine's last commit left, where that head is still in the
chain, compared with the last entries it knows (see :func:`append`). When a record updated is not known, another
writer has appended since (the entries that went in are then taken out again), or the head is gone (the store
lost its last commits under the process), one statement reads the chain's head with the last entries of the
records updated, and one inserts the entries after it (PostgreSQL takes its advisory lock before the read, unless
the transaction holds a seq from the entries it took out). Entries are appended when the outermost transaction
commits, not when a savepoint is released.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum, auto
from functools import cache
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    DateTime,
    Delete,
    Float,
    Insert,
    Integer,
    Select,
    String,
    Table,
    UniqueConstraint,
    Update,
    and_,
    bindparam,
    event,
    exists,
    func,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy import inspect as inspect_record
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Engine, RowMapping
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, UOWTransaction, make_transient
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel, col
from sqlmodel import select as select_records
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.orm.session import Session as SqlModelSession

from storage.ids import format_id
from storage.records import (
    ActionEdit,
    Approval,
    ApprovalStatus,
    ApprovalVote,
    AuditEntry,
    Capability,
    Decision,
    Execution,
    ExecutionAttempt,
    PolicyVersion,
    ProposedAction,
    RejectionReason,
    utcnow,
)

if TYPE_CHECKING:
    from storage.unit_of_work import UnitOfWork

# Table name → the model it stores, in the order a first ("genesis") walk of an existing store takes them.
AUDITED: dict[str, type[SQLModel]] = {
    "policy_version": PolicyVersion,
    "proposed_action": ProposedAction,
    "decision": Decision,
    "approval": Approval,
    "approval_vote": ApprovalVote,
    "capability": Capability,
    "execution": Execution,
    "execution_attempt": ExecutionAttempt,
    "action_edit": ActionEdit,
    "rejection_reason": RejectionReason,
}
BOOKKEEPING: dict[str, frozenset[str]] = {
    "execution": frozenset({"owner"}),  # the process lease holding it: moves on take-over, says nothing
    "approval": frozenset({"message_ts"}),  # where the request is shown in Slack, set after it is posted
    "action_edit": frozenset({"owner"}),  # the process lease deciding it, as an execution's
    "rejection_reason": frozenset({"received_by"}),  # the process lease that stored it
}
SHORT_PREFIX = {"proposed_action": "A", "decision": "D", "approval": "AP", "execution": "E"}
GENESIS_HASH = "0" * 64
# Any constant will do: every writer takes the same transaction-scoped lock before reading the chain head (one
# that appends after the head it knows takes none: the unique seq turns it back if another went first).
APPEND_LOCK = 7_246_861_530
BATCH = 5_000
REMEMBERED = 1_000  # records whose last entry a process keeps in mind per engine, the latest written or read
# Entries appended after the known head in one statement at most (each binds its columns: SQLite takes 500
# SELECTs in a UNION ALL); a transaction appending more reads the head.
KNOWN_ROWS = 200

Record = tuple[str, str]  # (table, key)
_NOTES = "aios_audit_notes"  # session.info key: what the transaction in progress wrote (_Notes)
_PENDING = "aios_audit_pending"  # session.info key: the engine and its _Chain once the transaction commits
_SAVEPOINTS = "aios_audit_savepoints"  # session.info key: each open savepoint → the notes as it began
# The content of the entry that records a deletion: a record whose last entry is this is meant to be gone. The
# product deletes audited rows in two cases only, and only those are tombstoned: the votes an edit of the
# parameters voids (approval_vote rows named by ``voiding_votes``, in a transaction that writes the edit's
# decision), and a rejection's reason that did not count (named by ``forgetting_reasons``), which frees the
# approval's one reason for the person who did reject it. Any other deletion of an audited row gets no tombstone,
# and so breaks verification.
TOMBSTONE = "null"


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


def _key_column(name: str) -> Any:
    [column] = _table(AUDITED[name]).primary_key.columns
    return column


# --- canonical content and hashes ---


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(table: str, row: Mapping[str, Any] | RowMapping) -> str:
    skip = BOOKKEEPING.get(table, frozenset())
    content = {
        k: (_iso(v) if isinstance(v, datetime) else v)
        for k, v in row.items()
        if k not in skip and v is not None
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def entry_hash(
    prev_hash: str, seq: int, table: str, record_id: str, content_hash: str, recorded_at: datetime
) -> str:
    """H(prev_hash ‖ seq ‖ record kind ‖ record id ‖ content hash ‖ time), fields split by a unit separator."""
    parts = (prev_hash, str(seq), table, record_id, content_hash, _iso(recorded_at))
    return sha256("\x1f".join(parts))


def short_ref(table: str, record_id: str) -> str:
    """The record as the product names it: ``D-42`` where it has a short form, else its kind and key."""
    prefix = SHORT_PREFIX.get(table)
    if prefix is not None and record_id.isdigit():
        return format_id(prefix, int(record_id))
    if table == "policy_version":
        return f"policy version {record_id[:12]}"
    return f"{table.replace('_', ' ')} {record_id}"


# --- appending: the session hooks, listened for on AuditedSession (HOOKS, below) ---


class AuditedSession(SqlModelSession):
    """The unit of work's session (storage.engine makes its sessions of this class): audited writes append
    their chain entries when it commits."""


@dataclass(frozen=True)
class _Written:
    """What the transaction did to one audited record, as far as its statements tell."""

    new: bool  # inserted by this transaction: there is no entry of it to compare with
    # Its canonical content as written, when the write told all of it; None: read it back at commit.
    content: str | None = None
    deleted: bool = False


@dataclass
class _Notes:
    """The audit's notes on the transaction in progress, kept in its session's info until it ends."""

    written: dict[Record, _Written] = field(default_factory=dict)  # in the order first written
    meant_deletions: set[Record] = field(default_factory=set)  # see TOMBSTONE
    # Records the ORM loaded from the database in this transaction. On SQLite, whose writers take turns from
    # BEGIN to COMMIT (and a reader cannot write once another wrote after its snapshot), such an object holds
    # its row as stored, but for what this transaction changes.
    loaded: set[Record] = field(default_factory=set)
    # Records a Core statement wrote in this transaction: their ORM objects may not know every column.
    core_written: set[Record] = field(default_factory=set)

    def copy(self) -> _Notes:
        return _Notes(dict(self.written), set(self.meant_deletions), set(self.loaded), set(self.core_written))


def _notes(session: Session) -> _Notes:
    # Not setdefault: that would make new notes on every call (each object the session loads), to throw away.
    notes: _Notes | None = session.info.get(_NOTES)
    if notes is None:
        notes = session.info[_NOTES] = _Notes()
    return notes


def _audited(record: object) -> str | None:
    """The audited table the ORM object is a row of, if it is one."""
    name = getattr(type(record), "__tablename__", None)
    return name if name in AUDITED else None


def _record(name: str, values: Mapping[str, Any] | RowMapping) -> Record:
    return name, str(values[_key_column(name).name])


def _held(name: str, values: Mapping[str, Any]) -> str | None:
    """The canonical content of an ORM object's values, as reading its row back would give it, when it holds
    every column and each value is one the database is known to keep as the object holds it, or to change in a
    known way (see _as_stored); otherwise None, and the row is read back at commit."""
    stored: dict[str, Any] = {}
    for column in _table(AUDITED[name]).columns:
        if column.name not in values:
            return None
        value = _as_stored(column, values[column.name])
        if value is _UNSURE:
            return None
        stored[column.name] = value
    return canonical(name, stored)


_UNSURE = object()


def _as_stored(column: Column[Any], value: Any) -> Any:
    """The value as the database gives it back from the column, or _UNSURE. Python accepts what a column
    does not hold as such (1 for a boolean, 2.0 for an integer, a tuple or an int key in JSON), and the round
    trip changes it (to True, 2, a list, a string key): content taken from memory must be the stored one."""
    if value is None:
        return None
    kind = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, JSON):
        try:
            return json.loads(json.dumps(value))  # what the column keeps is this text
        except (TypeError, ValueError):
            return _UNSURE
    if isinstance(kind, Boolean):
        return bool(value) if isinstance(value, int) and value in (0, 1) else _UNSURE
    if isinstance(kind, Integer):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return int(value) if isinstance(value, int) else _UNSURE
    if isinstance(kind, Float):
        return float(value) if isinstance(value, int | float) else _UNSURE
    if isinstance(kind, String):
        return value if isinstance(value, str) else _UNSURE
    if isinstance(kind, DateTime):
        return value if isinstance(value, datetime) and value.tzinfo is not None else _UNSURE
    return _UNSURE


def _changed(record: object) -> set[str]:
    """The columns a flush writes of this object (its history as before the flush: after_flush still sees it)."""
    state = inspect_record(record)
    return {
        attribute.columns[0].name
        for attribute in state.mapper.column_attrs
        if state.attrs[attribute.key].history.has_changes()
    }


def loaded_as_persistent(session: Session, record: object) -> None:
    name = _audited(record)
    if name is not None:
        _notes(session).loaded.add(_record(name, record.__dict__))


def after_flush(session: Session, _context: UOWTransaction) -> None:
    notes = _notes(session)
    sqlite = session.get_bind().dialect.name == "sqlite"
    for record in session.new:
        name = _audited(record)
        if name is not None:
            values = record.__dict__
            _note(notes, _record(name, values), _Written(new=True, content=_held(name, values)))
    for record in session.dirty:
        name = _audited(record)
        if name is None or _changed(record) <= BOOKKEEPING.get(name, frozenset()):
            continue  # nothing the chain covers was written: no entry, nothing to read back
        values = record.__dict__
        key = _record(name, values)
        earlier = notes.written.get(key)
        # The object holds the row as stored when no one else can have written the row since it was loaded: it
        # is new in this transaction, or loaded in it on SQLite. Otherwise the row is read back at commit: a
        # Core statement of this transaction may have changed columns the object does not know of, and on
        # PostgreSQL (READ COMMITTED) another transaction may have committed a change since the object's load.
        known = key not in notes.core_written and (
            (earlier is not None and earlier.new) or (sqlite and key in notes.loaded)
        )
        _note(notes, key, _Written(new=False, content=_held(name, values) if known else None))
    for record in session.deleted:
        name = _audited(record)
        if name is not None:
            _note(notes, _record(name, record.__dict__), _Written(new=False, deleted=True))


def do_orm_execute(state: ORMExecuteState) -> Any:
    """Core INSERTs, UPDATEs and DELETEs bypass the flush: note the rows they write. An INSERT or UPDATE is
    given a RETURNING of the whole row (as return_defaults' supplement, which leaves the caller its row count
    and no rows it did not ask for), so its rows' content is known at once. Only rows this transaction wrote are
    noted (an UPDATE or INSERT … ON CONFLICT DO NOTHING that changed nothing notes nothing): it holds their
    locks, so nobody else changes them before it commits."""
    statement = state.statement
    if not isinstance(statement, Insert | Update | Delete):
        return None
    table = statement.table
    if not isinstance(table, Table) or table.name not in AUDITED:
        return None
    if isinstance(statement, Update) and _sets_bookkeeping_only(state, table.name):
        return None
    if isinstance(statement, Delete) or state.is_executemany or len(statement.exported_columns):
        return _note_by_keys(state, table)
    result = state.invoke_statement(statement=returning_whole_row(statement, table))
    if not (isinstance(result, CursorResult) and result.returns_rows):
        raise RuntimeError(f"a write to audited {table.name} did not return the rows it wrote")
    note_rows(state.session, table.name, result.returned_defaults_rows or (), new=state.is_insert)
    return result


def note_rows(session: Session, name: str, rows: Iterable[Any], *, new: bool, held: bool = False) -> None:
    """Note the rows a Core INSERT (``new``) or UPDATE wrote to the audited table ``name``, each row whole as
    the statement's RETURNING gave it (:func:`returning_whole_row`), as :func:`do_orm_execute` notes those of a
    write through the session: for a statement run on the session's own connection, past its ORM execution.
    Only the rows it returned are noted: a write that changed nothing (an UPDATE matching no row, an INSERT …
    ON CONFLICT DO NOTHING that met its row) notes nothing. The notes are the transaction's, so a savepoint
    that rolls back drops them as it drops any other (after_transaction_create keeps the notes it began with),
    and takes back the session's objects of those rows as the ORM takes back its own flushes (see _take_back).

    ``held``: the session holds each row as returned (its object made from it), so a later change to that object
    through the ORM is known without reading the row back at commit."""
    if name not in AUDITED:
        raise ValueError(f"{name} is not an audited table")
    notes = _notes(session)
    for row in rows:  # none when an UPDATE matched no row
        written = _record(name, row._mapping)
        if not held:
            notes.core_written.add(written)
        _note(notes, written, _Written(new=new, content=canonical(name, row._mapping)))


# Each write's statement with the whole-row RETURNING added, for as long as the write's statement lives: a
# statement built once (with bind parameters) gets one, whose cache key is then computed once, not per execution.
_WHOLE_ROW: WeakKeyDictionary[Insert | Update, Insert | Update] = WeakKeyDictionary()


def returning_whole_row(statement: Insert | Update, table: Table) -> Insert | Update:
    """The write with a RETURNING of its whole row added as return_defaults' supplement: its result keeps its
    row count and primary key, and hands the rows it wrote as ``returned_defaults_rows``."""
    derived = _WHOLE_ROW.get(statement)
    if derived is None:
        derived = _WHOLE_ROW[statement] = statement.return_defaults(supplemental_cols=list(table.columns))
    return derived


def _sets_bookkeeping_only(state: ORMExecuteState, name: str) -> bool:
    """Whether an UPDATE sets nothing but columns the chain leaves out; unsure (no SET to be seen), not."""
    return sets_bookkeeping_only(state.statement, name, state.parameters)


def sets_bookkeeping_only(statement: object, name: str, parameters: object) -> bool:
    """Whether an UPDATE with these parameters sets nothing but columns the chain leaves out; unsure (no SET
    to be seen), not."""
    bookkeeping = BOOKKEEPING.get(name)
    given = getattr(statement, "_values", None) or {}  # the statement's .values(…)
    bound = parameters if isinstance(parameters, Mapping) else {}
    columns = {getattr(column, "key", column) for column in [*given, *bound]}
    return bool(bookkeeping and columns and columns <= bookkeeping)


def _note_by_keys(state: ORMExecuteState, table: Table) -> Any:
    """A write the whole-row RETURNING is not added to: a DELETE (return_defaults is for INSERT and UPDATE), an
    executemany, a statement with a RETURNING of its own (its rows are the caller's, as it asked for them). The
    keys of the rows it writes are found by a query before it (an UPDATE or DELETE) or from the INSERT, and
    their content read back at commit."""
    statement = state.statement
    notes = _notes(state.session)
    key = _key_column(table.name)
    if state.is_update or state.is_delete:
        where = getattr(statement, "whereclause", None)
        query = select(key) if where is None else select(key).where(where)
        # With the statement's own parameters: a statement built once binds its values at execution.
        bound = state.parameters if isinstance(state.parameters, Mapping) else None
        keys = list(state.session.execute(query, bound).scalars())
        result = state.invoke_statement()
        if getattr(result, "rowcount", 1):
            for row_key in keys:
                written = (table.name, str(row_key))
                notes.core_written.add(written)
                _note(notes, written, _Written(new=False, deleted=state.is_delete))
        return result
    assert isinstance(statement, Insert)
    result = state.invoke_statement()
    if getattr(result, "rowcount", 1):
        primary = (
            result.inserted_primary_key
            if isinstance(result, CursorResult) and not state.is_executemany
            else None
        )
        for row_key in [primary[0]] if primary is not None else _inserted(state, table, statement):
            written = (table.name, str(row_key))
            notes.core_written.add(written)
            _note(notes, written, _Written(new=True))
    return result


def _note(notes: _Notes, record: Record, written: _Written) -> None:
    earlier = notes.written.get(record)
    if earlier is not None and earlier.new:  # new in this transaction: stays new
        if written.deleted:
            del notes.written[record]  # written and deleted in one transaction: never in the chain
            return
        written = replace(written, new=True)
    notes.written[record] = written


def _inserted(state: ORMExecuteState, table: Table, statement: Insert) -> list[Any]:
    given = state.parameters
    if isinstance(given, Mapping) and given:
        rows: list[Mapping[str, Any]] = [given]
    elif isinstance(given, Sequence) and given:
        rows = list(given)
    else:
        rows = [statement.compile(dialect=state.session.get_bind().dialect).params]
    return [row_key for values in rows for row_key in _inserted_keys(state.session, table, values)]


def _inserted_keys(session: Session, table: Table, values: Mapping[str, Any]) -> list[Any]:
    """The row an INSERT wrote (or found in its place), found again by a unique key its values name."""
    candidates = [list(table.primary_key.columns)]
    candidates += [[c] for c in table.columns if c.unique]
    candidates += [list(u.columns) for u in table.constraints if isinstance(u, UniqueConstraint)]
    for columns in candidates:
        if columns and all(values.get(c.name) is not None for c in columns):
            query = select(_key_column(table.name)).where(*(c == values[c.name] for c in columns))
            return list(session.execute(query).scalars())
    raise RuntimeError(f"an INSERT into audited {table.name} names no unique key to find its row by")


def voiding_votes(session: Session, vote_ids: Iterable[Any]) -> None:
    """These approval votes are deleted because an edit voids them, in this transaction (which must also write
    the edit's decision): their deletion is recorded by a tombstone."""
    _notes(session).meant_deletions.update(("approval_vote", str(vote_id)) for vote_id in vote_ids)


def forgetting_reasons(session: Session, reason_ids: Iterable[Any]) -> None:
    """These rejection reasons are deleted in this transaction because their rejection did not count: their
    deletion is recorded by a tombstone."""
    _notes(session).meant_deletions.update(("rejection_reason", str(reason_id)) for reason_id in reason_ids)


def before_commit(session: Session) -> None:
    """The outermost transaction appends for all it wrote. A savepoint's release (SQLAlchemy calls it a commit
    too) leaves its notes to that transaction: entries appended in it, and a head remembered from them, would
    name what the outer transaction may yet roll back."""
    if session.in_nested_transaction():
        return
    session.flush()  # so that after_flush has seen every record of the transaction
    notes: _Notes | None = session.info.pop(_NOTES, None)
    if notes is not None and notes.written:
        connection = session.connection()
        engine = connection.engine
        _, chain = append(connection, notes.written, notes.meant_deletions, _KNOWN.get(engine))
        session.info[_PENDING] = (engine, chain)


def after_commit(session: Session) -> None:
    pending: tuple[Engine, _Chain] | None = session.info.pop(_PENDING, None)
    if pending is not None:
        engine, chain = pending
        known = _KNOWN.get(engine)
        # Sessions of one engine commit in any order: keep the furthest head (any committed one is true).
        if known is None or known.seq < chain.seq:
            _KNOWN[engine] = chain


def after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    """A savepoint keeps the notes as they were when it began, for its rollback to go back to."""
    if transaction.nested:
        notes: _Notes | None = session.info.get(_NOTES)
        saved = None if notes is None else notes.copy()
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = saved


def after_rollback(session: Session) -> None:
    savepoint = session.get_nested_transaction()
    if savepoint is not None:  # what was written since it began is undone; what was before stays
        saved: _Notes | None = session.info.get(_SAVEPOINTS, {}).get(savepoint)
        undone: _Notes | None = session.info.get(_NOTES)
        if saved is None:
            session.info.pop(_NOTES, None)
        else:
            session.info[_NOTES] = saved
        if undone is not None:
            _take_back(session, undone, saved or _Notes())
        return
    session.info.pop(_NOTES, None)
    _forget_pending(session)


def _take_back(session: Session, undone: _Notes, saved: _Notes) -> None:
    """After a savepoint's rollback, the session's objects of the rows written past it since the savepoint began, as
    the ORM takes back its own flushes: one inserted (storage.repositories.base.insert_records) is no longer held,
    one updated is expired (read again when next used)."""
    for record, written in undone.written.items():
        inserted = written.new and record not in saved.written
        # Each write notes anew (see _note): a note other than the savepoint's own is a write made in it.
        updated = record in undone.core_written and written is not saved.written.get(record)
        if not (inserted or updated):
            continue
        held = _held_object(session, record)
        if held is None:
            continue
        if inserted:
            session.expunge(held)
            make_transient(held)
        else:
            session.expire(held)


def _held_object(session: Session, record: Record) -> object | None:
    table, key = record
    mapper = inspect_record(AUDITED[table])
    [column] = mapper.primary_key
    value: Any = int(key) if column.type.python_type is int else key
    return session.identity_map.get(mapper.identity_key_from_primary_key((value,)))


def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """A transaction closed without commit or rollback (the session closed) leaves no notes to the next one:
    what it loaded is no longer known to be as stored."""
    if transaction.nested:
        session.info.get(_SAVEPOINTS, {}).pop(transaction, None)
    elif transaction.parent is None:
        session.info.pop(_NOTES, None)
        session.info.pop(_SAVEPOINTS, None)
        _forget_pending(session)


def _forget_pending(session: Session) -> None:
    """The transaction appended but did not commit: its entries are not in the chain. What the engine's sessions
    know of the chain is forgotten too, so that the next append reads the head (a COMMIT that failed on the way
    may or may not have been applied; either way the known head is then only a guess)."""
    pending: tuple[Engine, _Chain] | None = session.info.pop(_PENDING, None)
    if pending is not None:
        _KNOWN.pop(pending[0], None)


@dataclass(frozen=True)
class _Chain:
    """The chain as of one committed head, as this process last wrote or read it: the head (seq and entry hash),
    and the content hash of the newest entry, at that head, of records it wrote or read lately. Only ever set
    from a committed transaction, so it is true of the chain up to that head, though others may have appended
    since."""

    seq: int
    entry_hash: str
    latest: Mapping[Record, str]

    def after(self, rows: Sequence[Mapping[str, Any]], also: Mapping[Record, str]) -> _Chain:
        """The chain once ``rows`` are appended to this head, knowing ``also`` (last entries read at it) too."""
        latest = dict(self.latest)
        for record, content_hash in [
            *also.items(),
            *(((row["record_table"], row["record_id"]), row["content_hash"]) for row in rows),
        ]:
            latest.pop(record, None)  # to the end: the least lately written are the ones forgotten
            latest[record] = content_hash
        for record in list(latest)[: max(0, len(latest) - REMEMBERED)]:
            del latest[record]
        last = rows[-1] if rows else None
        return _Chain(
            last["seq"] if last else self.seq, last["entry_hash"] if last else self.entry_hash, latest
        )


# Per engine (so per database, and apart for each engine a test makes): the chain as its sessions last left it.
_KNOWN: WeakKeyDictionary[Engine, _Chain] = WeakKeyDictionary()


def append(
    connection: Connection,
    written: Mapping[Record, _Written],
    meant: Collection[Record] = (),
    known: _Chain | None = None,
) -> tuple[int, _Chain]:
    """Append an entry for each record whose content differs from its last entry; returns how many, and the
    chain as it is once they are.

    Another writer cannot have changed a record this transaction wrote (it holds the row's lock), so reading
    back and comparing needs no turn. The entries are linked to a head, and their INSERT skips any seq already
    taken: an append whose every entry goes in followed its head with no one in between. With the chain as
    ``known`` (the head this process last wrote or read, and the last entries of the records compared), that is
    the one statement: if another writer has appended since, some seq is taken, the entries that went in are
    taken out again, and the append falls back to reading the head; so it does when the known head is no longer
    in the chain (the statement inserts only after a head it finds), nothing having gone in. Readers of the
    head take turns from that read to their commit (PostgreSQL: an advisory lock, but for one that holds seqs
    it took out, see _append_to_head_read; SQLite: the write lock the engine takes at BEGIN), and try again
    after a writer that went by the known head took their seq: no fork, no gap."""
    contents = _contents(connection, written, meant)
    holding = False
    if known is not None:
        appended = _append_to_known(connection, known, written, contents)
        if isinstance(appended, tuple):
            return appended
        holding = appended is _Inserted.TAKEN_OUT
    return _append_to_head_read(connection, written, contents, known, take_turn=not holding)


def _contents(
    connection: Connection, written: Mapping[Record, _Written], meant: Collection[Record]
) -> dict[Record, str | None]:
    """Each record's canonical content as it is to be recorded: None for one not found, or deleted unmeant."""
    contents: dict[Record, str | None] = {record: w.content for record, w in written.items()}
    unread = [record for record, w in written.items() if w.content is None and not w.deleted]
    for name in dict.fromkeys(name for name, _ in unread):
        # A record not found stays without content: noted as written, but its INSERT did nothing.
        for row_key, read in _read_rows(connection, name, [key for table, key in unread if table == name]):
            contents[(name, row_key)] = read
    for record, w in written.items():
        if w.deleted:
            contents[record] = TOMBSTONE if _deletion_meant(record, meant, contents) else None
    return contents


def _append_to_known(
    connection: Connection,
    known: _Chain,
    written: Mapping[Record, _Written],
    contents: Mapping[Record, str | None],
) -> tuple[int, _Chain] | _Inserted:
    """The append after the known head in one INSERT; if that cannot be done, what the attempt left: NONE when
    there was no INSERT (a record compared is not known, or there is nothing to append, so no INSERT to tell
    whether the head moved, and with it the last entries compared, or more entries than KNOWN_ROWS) or none of
    its entries went in (every seq taken, or the known head gone), TAKEN_OUT
    when another writer has appended since and the entries that did go in were taken out again."""
    compared = [
        record for record, content in contents.items() if content is not None and not written[record].new
    ]
    if any(record not in known.latest for record in compared):
        return _Inserted.NONE
    rows = _entries(
        (known.seq, known.entry_hash), contents, {record: known.latest[record] for record in compared}
    )
    if not rows or len(rows) > KNOWN_ROWS:
        return _Inserted.NONE
    inserted = _insert(connection, rows, after=(known.seq, known.entry_hash))
    return (len(rows), known.after(rows, {})) if inserted is _Inserted.ALL else inserted


def _append_to_head_read(
    connection: Connection,
    written: Mapping[Record, _Written],
    contents: Mapping[Record, str | None],
    known: _Chain | None,
    take_turn: bool,
) -> tuple[int, _Chain]:
    """The append after the head read. ``take_turn``: PostgreSQL's advisory lock is taken before the read (a
    transaction that wrote an audited record nearly always appends), unless the transaction holds seqs (entries
    of its own that went in and were taken out: PostgreSQL keeps them locked until it ends). The lock's holder
    may be waiting for such a seq, so waiting for the lock then would close a cycle; and a transaction holding a
    seq holds every seq from the head up to it (each one before it was taken by a committed entry or by this
    transaction), so no one else can append before it anyway."""
    if take_turn and connection.dialect.name == "postgresql":
        _take_turn(connection)
    while True:
        head, latest = _head_and_latest(connection, [record for record, w in written.items() if not w.new])
        rows = _entries(head, contents, latest)
        # Only a writer that went by its known head, without the turn, can have taken a seq after the head read.
        if _insert(connection, rows) is _Inserted.ALL:
            break
    # The records known before stay known when the head is the known one: no one appended in between.
    base = known if known is not None and (known.seq, known.entry_hash) == head else _Chain(*head, {})
    return len(rows), base.after(rows, latest)


def _entries(
    head: tuple[int, str], contents: Mapping[Record, str | None], latest: Mapping[Record, str]
) -> list[dict[str, Any]]:
    """The entries after ``head`` of the records whose content differs from their last entry, in the order
    they were written."""
    changed = [
        (record, content, content_hash)
        for record, content in contents.items()
        if content is not None and latest.get(record) != (content_hash := sha256(content))
    ]
    seq, prev = head
    rows: list[dict[str, Any]] = []
    now = utcnow()
    for (name, row_key), content, content_hash in changed:
        seq += 1
        link = entry_hash(prev, seq, name, row_key, content_hash, now)
        rows.append(
            {
                "seq": seq,
                "record_table": name,
                "record_id": row_key,
                "content": content,
                "content_hash": content_hash,
                "prev_hash": prev,
                "entry_hash": link,
                "recorded_at": now,
            }
        )
        prev = link
    return rows


class _Inserted(Enum):
    """What became of an INSERT of entries."""

    ALL = auto()
    NONE = auto()  # every seq was taken: nothing went in
    # Some seqs were taken, and the entries that went in were taken out again. On PostgreSQL the transaction
    # still holds their seqs (a deleted row of a transaction in progress): another INSERT of one waits for it.
    TAKEN_OUT = auto()


def _insert(
    connection: Connection, rows: Sequence[Mapping[str, Any]], after: tuple[int, str] | None = None
) -> _Inserted:
    """Insert the entries unless a seq of theirs is taken (PostgreSQL waits for the transaction that took it),
    or, ``after`` a head (seq, entry hash), unless that head is no longer in the chain: the store lost its last
    commits under the process (a restore, a failover to a replica that lagged), and entries linked to it would
    leave a gap. If some seqs are taken, the entries that went in are taken out again."""
    if not rows:
        return _Inserted.ALL
    dialect = connection.dialect.name
    if after is None:
        result = connection.execute(_insert_entries(dialect), rows)
    else:
        seq, head_hash = after
        given = {f"{name}_{i}": value for i, row in enumerate(rows) for name, value in row.items()}
        result = connection.execute(
            _insert_entries_after(dialect, len(rows)), {**given, "seq": seq, "hash": head_hash}
        )
    inserted = list(result.scalars())
    if len(inserted) == len(rows):
        return _Inserted.ALL
    if not inserted:
        return _Inserted.NONE
    entries = audit_table()
    connection.execute(entries.delete().where(entries.c.seq.in_(inserted)))
    return _Inserted.TAKEN_OUT


@cache
def _insert_entries(dialect: str) -> Insert:
    """INSERT … ON CONFLICT (seq) DO NOTHING RETURNING seq, one statement for all the entries (SQLAlchemy's
    insertmanyvalues, up to 1,000 a statement), compiled once."""
    entries = audit_table()
    # Imported here: the PostgreSQL dialect is slow to import, and a store on SQLite never needs it.
    insert: Insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        insert = postgresql_insert(entries).on_conflict_do_nothing(index_elements=[entries.c.seq])
    else:
        insert = sqlite_insert(entries).on_conflict_do_nothing(index_elements=[entries.c.seq])
    return insert.returning(entries.c.seq)


@cache
def _insert_entries_after(dialect: str, count: int) -> Insert:
    """INSERT INTO audit_entry SELECT … FROM (the ``count`` entries) WHERE the head they follow is in the chain,
    ON CONFLICT (seq) DO NOTHING RETURNING seq: one statement, which inserts nothing once that head is gone
    (the empty chain's head, seq 0, never is: an append after it reads the head). Entry i's values are bound
    as ``<column>_<i>``, the head as ``seq`` and ``hash``."""
    entries = audit_table()
    columns = list(entries.columns)
    new = union_all(
        *(
            select(*(bindparam(f"{c.name}_{i}", type_=c.type).label(c.name) for c in columns))
            for i in range(count)
        )
    ).subquery("new")
    # SQLite needs a WHERE here in any case: without one, its parser takes ON CONFLICT for a join's ON.
    query = select(new).where(
        exists().where(entries.c.seq == bindparam("seq"), entries.c.entry_hash == bindparam("hash"))
    )
    insert: Insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        insert = postgresql_insert(entries).from_select(columns, query)
    else:
        insert = sqlite_insert(entries).from_select(columns, query)
    return insert.on_conflict_do_nothing(index_elements=[entries.c.seq]).returning(entries.c.seq)


def _take_turn(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK})


def _head_and_latest(
    connection: Connection, records: Collection[Record]
) -> tuple[tuple[int, str], dict[Record, str]]:
    """In one statement: the chain's head (its seq and entry hash; 0 and the genesis hash when empty), and the
    content hash of each record's newest entry (none for a record never appended)."""
    entries = audit_table()
    columns = (
        entries.c.seq,
        entries.c.record_table,
        entries.c.record_id,
        entries.c.content_hash,
        entries.c.entry_hash,
    )
    head = select(*columns).where(entries.c.seq == select(func.max(entries.c.seq)).scalar_subquery())
    by_table: dict[str, list[str]] = {}
    for name, key in records:
        by_table.setdefault(name, []).append(key)
    query: Any = head
    if by_table:
        newest = (
            select(func.max(entries.c.seq))
            .where(
                or_(
                    *(
                        and_(entries.c.record_table == name, entries.c.record_id.in_(keys))
                        for name, keys in by_table.items()
                    )
                )
            )
            .group_by(entries.c.record_table, entries.c.record_id)
        )
        query = union_all(head, select(*columns).where(entries.c.seq.in_(newest)))
    rows = connection.execute(query).all()
    top = max(rows, key=lambda row: int(row[0]), default=None)
    wanted = set(records)
    latest = {(t, k): content_hash for _, t, k, content_hash, _ in rows if (t, k) in wanted}
    return ((int(top[0]), str(top[4])) if top is not None else (0, GENESIS_HASH)), latest


def _deletion_meant(
    record: Record,
    meant: Collection[Record],
    contents: Mapping[Record, str | None],
) -> bool:
    """Whether a deleted record is one the product deletes: a reason named by ``forgetting_reasons``, or a vote
    named by ``voiding_votes`` with an edit decision written in the same transaction."""
    if record not in meant:
        return False
    name, _ = record
    return name == "rejection_reason" or (
        name == "approval_vote"
        and any(
            table == "decision" and content is not None and _kind(content) == "edit"
            for (table, _), content in contents.items()
        )
    )


def _kind(content: str) -> object:
    try:
        decoded = json.loads(content)
    except ValueError:
        return None
    return decoded.get("kind") if isinstance(decoded, dict) else None


# Session event → its hook; listened for on import of this module, so every AuditedSession appends.
HOOKS: dict[str, Callable[..., Any]] = {
    "loaded_as_persistent": loaded_as_persistent,
    "after_flush": after_flush,
    "do_orm_execute": do_orm_execute,
    "before_commit": before_commit,
    "after_commit": after_commit,
    "after_transaction_create": after_transaction_create,
    "after_rollback": after_rollback,
    "after_transaction_end": after_transaction_end,
}
for _event, _hook in HOOKS.items():
    event.listen(AuditedSession, _event, _hook)


def audit_table() -> Table:
    return _table(AuditEntry)


def _read_rows(connection: Connection, name: str, keys: Sequence[str]) -> Iterator[tuple[str, str]]:
    key = _key_column(name)
    for row in connection.execute(_rows_query(name, keys)).mappings():
        yield str(row[key.name]), canonical(name, row)


def _rows_query(name: str, keys: Sequence[str]) -> Select[Any]:
    key = _key_column(name)
    typed = [int(k) for k in keys] if key.type.python_type is int else list(keys)
    return select(_table(AUDITED[name])).where(key.in_(typed))


def genesis(connection: Connection) -> int:
    """One entry per existing audited row, table by table in key order: an upgraded store starts verified.
    Only the columns the table has at this point of the migrations are read."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    appended = 0
    for name in AUDITED:
        if not inspector.has_table(name):
            continue  # audited from a later migration on, which creates it empty
        table = _table(AUDITED[name])
        present = {c["name"] for c in inspector.get_columns(name)}
        columns = [c for c in table.columns if c.name in present]
        key = _key_column(name)
        after: Any = None
        while True:
            query = select(*columns).order_by(key).limit(BATCH)
            if after is not None:
                query = query.where(key > after)
            rows = connection.execute(query).mappings().all()
            if not rows:
                break
            after = rows[-1][key.name]
            appended += append(
                connection,
                {(name, str(r[key.name])): _Written(new=True, content=canonical(name, r)) for r in rows},
            )[0]
    return appended


# --- verifying ---


@dataclass(frozen=True)
class Problem:
    """One break in the trail. ``kind``: edited, deleted, inserted out of order, or execution without cover."""

    kind: str
    record: str  # the record as the product names it (E-9, AP-5, audit entry #12)
    detail: str
    seq: int | None = None  # the entry where the break shows, for ordering

    def line(self) -> str:
        where = f" (audit entry #{self.seq})" if self.seq is not None else ""
        return f"{self.record}: {self.kind}{where} — {self.detail}"


@dataclass
class AuditReport:
    entries: int = 0
    last_seq: int = 0
    records: int = 0
    executions: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[Problem] = field(default_factory=list)
    # Executions covered only if an approver was in a Slack user group when they voted: the group's members
    # then are not stored, so this cannot be proven offline. Not a break, but never counted as proven.
    unproven: list[Problem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def as_json(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "entries": self.entries,
            "records": self.records,
            "executions_checked": self.executions,
            "head_hash": self.head_hash,
            "problems": [asdict(p) | {"line": p.line()} for p in self.problems],
            "unproven": [asdict(p) | {"line": p.line()} for p in self.unproven],
        }


# What the gate proof needs from outside the store: an action's acceptable parameter hashes (as
# connectors.registry.params_hash computes them), and a stored policy text's roles.
HashParams = Callable[[str, Mapping[str, Any]], Collection[str]]
RolesOf = Callable[[str], Mapping[str, Collection[str]] | None]
# Units of work to read in, one per batch: a UnitOfWorkFactory.
Units = Callable[[], AbstractAsyncContextManager["UnitOfWork"]]
UNPROVEN = "cannot be proven offline"


async def verify(units: Units, hash_params: HashParams, roles_of: RolesOf, batch: int = BATCH) -> AuditReport:
    """Walk the chain, then every audited record, then the entries appended meanwhile, then every execution's
    cover; all read in batches, each in a short transaction of its own.

    The store may be written meanwhile (a live bot): a record that differs from the chain as first read is read
    again, and then the entries appended since are read and checked too. A record's version and its entry are
    committed together, so every version that second read can see has its entry in that later read: a healthy
    busy store verifies. A record is accepted when it matches its last entry as first read or an entry
    appended while verify ran.

    Problems come in that order: a break in the chain itself first (every record after it is suspect), then
    records that differ from their last entry (by that entry's place in the chain), then uncovered
    executions."""
    report = AuditReport()
    chain: list[Problem] = []
    latest: dict[Record, tuple[int, str]] = {}
    async for entry in _stream(units, audit_table(), "seq", batch):
        _check_entry(report, chain, entry, latest)
    seen: set[Record] = set()
    differing: list[Record] = []
    for name in AUDITED:
        key = _key_column(name).name
        async for row in _stream(units, _table(AUDITED[name]), key, batch):
            report.records += 1
            record = (name, str(row[key]))
            seen.add(record)
            last = latest.get(record)
            if last is None or last[1] != sha256(canonical(name, row)):
                differing.append(record)
    reread = await _read_again(units, differing, batch)
    since: dict[Record, set[str]] = {}  # content hashes appended while verify ran
    first_latest = dict(latest)
    async for entry in _stream(units, audit_table(), "seq", batch, after=report.last_seq):
        _check_entry(report, chain, entry, latest)
        since.setdefault((entry["record_table"], entry["record_id"]), set()).add(entry["content_hash"])
    found: list[Problem] = []
    for record in differing:
        content = reread.get(record)
        first = first_latest.get(record)
        if content is not None and (
            (first is not None and first[1] == sha256(content)) or sha256(content) in since.get(record, ())
        ):
            continue
        found.append(_record_problem(record, content, latest.get(record)))
    for record, (seq, content_hash) in first_latest.items():
        if record not in seen and content_hash != sha256(TOMBSTONE):
            found.append(Problem("deleted", short_ref(*record), "audited, no longer stored", seq))
    found.sort(key=lambda p: (p.seq is None, p.seq or 0))
    report.problems = [*chain, *found]
    await _check_cover(units, report, hash_params, roles_of, batch)
    return report


def _record_problem(record: Record, content: str | None, last: tuple[int, str] | None) -> Problem:
    """What is wrong with a record that matches none of its entries, as read the second time."""
    ref = short_ref(*record)
    if last is None:
        return Problem("inserted out of order", ref, "the record has no audit entry")
    if content is None:
        return Problem("deleted", ref, "audited, no longer stored", last[0])
    return Problem("edited", ref, "its content differs from its last audit entry", last[0])


async def _read_again(units: Units, records: Sequence[Record], batch: int) -> dict[Record, str]:
    """The canonical content of these records as stored now; a record no longer stored is left out."""
    contents: dict[Record, str] = {}
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        async with units() as uow:
            connection = await uow.session.connection()
            for name in dict.fromkeys(name for name, _ in chunk):
                query = _rows_query(name, [key for table, key in chunk if table == name])
                key = _key_column(name).name
                for row in (await connection.execute(query)).mappings():
                    contents[(name, str(row[key]))] = canonical(name, row)
    return contents


def _check_entry(
    report: AuditReport, chain: list[Problem], entry: RowMapping, latest: dict[Record, tuple[int, str]]
) -> None:
    seq = int(entry["seq"])
    ref = short_ref(entry["record_table"], entry["record_id"])
    if seq != report.last_seq + 1:
        gap = f"#{report.last_seq + 1}" + (f" to #{seq - 1}" if seq - 1 > report.last_seq + 1 else "")
        chain.append(
            Problem(
                "deleted", f"audit entry {gap}", f"the chain jumps from #{report.last_seq} to #{seq}", seq
            )
        )
    elif entry["prev_hash"] != report.head_hash:
        chain.append(
            Problem("inserted out of order", ref, "the entry does not link to the one before it", seq)
        )
    if sha256(entry["content"]) != entry["content_hash"]:
        chain.append(Problem("edited", ref, "the entry's content does not match its hash", seq))
    elif (
        entry_hash(
            entry["prev_hash"],
            seq,
            entry["record_table"],
            entry["record_id"],
            entry["content_hash"],
            entry["recorded_at"],
        )
        != entry["entry_hash"]
    ):
        chain.append(Problem("edited", ref, "the entry's hash does not match its fields", seq))
    report.entries += 1
    report.last_seq = seq
    report.head_hash = entry["entry_hash"]
    latest[(entry["record_table"], entry["record_id"])] = (seq, entry["content_hash"])


async def _stream(
    units: Units, table: Table, key: str, batch: int, after: Any = None
) -> AsyncIterator[RowMapping]:
    """Rows in key order (after ``after``, when given), one short transaction per batch."""
    while True:
        query = select(table).order_by(table.c[key]).limit(batch)
        if after is not None:
            query = query.where(table.c[key] > after)
        async with units() as uow:
            connection = await uow.session.connection()
            rows = (await connection.execute(query)).mappings().all()
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1][key]


async def _check_cover(
    units: Units, report: AuditReport, hash_params: HashParams, roles_of: RolesOf, batch: int
) -> None:
    """Every execution ran on a spent capability for exactly its action and parameters, minted by an
    allowing policy verdict or by an approval whose approvers the policy of that moment allowed."""
    roles_cache: dict[str, Mapping[str, Collection[str]] | None] = {}
    executions = _table(Execution)
    after = 0
    while True:
        query = (
            select(executions.c.id, executions.c.action_id)
            .where(executions.c.id > after)
            .order_by(executions.c.id)
            .limit(batch)
        )
        async with units() as uow:
            session = uow.session
            rows = (await (await session.connection()).execute(query)).all()
            if not rows:
                return
            cover = await _Cover.load(session, {action_id for _, action_id in rows})
            for uncached in {h for h in cover.policy_hashes() if h not in roles_cache}:
                stored = await session.get(PolicyVersion, uncached)
                roles_cache[uncached] = roles_of(stored.text) if stored is not None else None
        for execution_id, action_id in rows:
            report.executions += 1
            found = cover.gap(action_id, hash_params, roles_cache)
            if found is not None:
                kind, detail = found
                problem = Problem(kind, short_ref("execution", str(execution_id)), detail)
                (report.unproven if kind == UNPROVEN else report.problems).append(problem)
        after = rows[-1][0]


@dataclass
class _Cover:
    """What covers a batch of actions' executions, read in a handful of queries."""

    actions: dict[int, ProposedAction]
    capabilities: dict[int, Capability]
    allowed: set[int]  # actions with an allowing policy verdict
    # Undo actions of steps that ran, allowed as compensation: they restore a state someone already accepted.
    undoing: set[int]
    approvals: dict[int, Approval]  # by action
    requests: dict[int, Decision]  # the policy decisions that asked for the approvals, by id
    voters: dict[int, list[tuple[str, datetime]]]  # by approval, in the order they voted, with when

    @classmethod
    async def load(cls, session: AsyncSession, action_ids: set[int]) -> _Cover:
        ids = sorted(action_ids)
        actions = await session.exec(select_records(ProposedAction).where(col(ProposedAction.id).in_(ids)))
        capabilities = await session.exec(
            select_records(Capability).where(col(Capability.action_id).in_(ids))
        )
        allowed = await session.exec(
            select_records(Decision.action_id).where(
                col(Decision.action_id).in_(ids),
                col(Decision.kind) == "policy",
                col(Decision.verdict) == "allow",
            )
        )
        undoing = await session.exec(
            select_records(ProposedAction.id).where(
                col(ProposedAction.id).in_(ids),
                col(ProposedAction.compensates).in_(
                    select_records(Capability.action_id).where(col(Capability.spent_at).is_not(None))
                ),
                col(ProposedAction.id).in_(
                    select_records(Decision.action_id).where(
                        col(Decision.kind) == "compensation", col(Decision.verdict) == "allow"
                    )
                ),
            )
        )
        approvals = {
            a.action_id: a
            for a in await session.exec(select_records(Approval).where(col(Approval.action_id).in_(ids)))
        }
        requests = await session.exec(
            select_records(Decision).where(col(Decision.id).in_([a.decision_id for a in approvals.values()]))
        )
        voters: dict[int, list[tuple[str, datetime]]] = {}
        votes = (
            select_records(ApprovalVote)
            .where(col(ApprovalVote.approval_id).in_([a.id for a in approvals.values()]))
            .order_by(col(ApprovalVote.id))
        )
        for vote in await session.exec(votes):
            voters.setdefault(vote.approval_id, []).append((vote.user, vote.created_at))
        return cls(
            actions={a.id: a for a in actions if a.id is not None},
            capabilities={c.action_id: c for c in capabilities},
            allowed=set(allowed),
            undoing={i for i in undoing if i is not None},
            approvals=approvals,
            requests={d.id: d for d in requests if d.id is not None},
            voters=voters,
        )

    def policy_hashes(self) -> set[str]:
        return {d.policy_hash for d in self.requests.values() if d.policy_hash}

    def gap(
        self,
        action_id: int,
        hash_params: HashParams,
        roles_cache: Mapping[str, Mapping[str, Collection[str]] | None],
    ) -> tuple[str, str] | None:
        """Why this action's execution is not covered, or cannot be proven covered (kind, detail); None when
        it is."""
        action = self.actions.get(action_id)
        if action is None:
            return _UNCOVERED, f"its action A-{action_id} is not stored"
        capability = self.capabilities.get(action_id)
        if capability is None or capability.spent_at is None:
            return _UNCOVERED, f"no spent capability for A-{action_id}"
        if capability.action_name != action.name or capability.params_hash not in hash_params(
            action.name, action.params
        ):
            return _UNCOVERED, f"the capability of A-{action_id} was granted for other parameters"
        if action_id in self.allowed or action_id in self.undoing:
            return None
        approval = self.approvals.get(action_id)
        if approval is None or approval.status != ApprovalStatus.APPROVED:
            return _UNCOVERED, f"A-{action_id} has neither an allowing verdict nor an approved approval"
        request = self.requests.get(approval.decision_id)
        policy_hash = request.policy_hash if request is not None else None
        if not policy_hash:
            return _UNCOVERED, f"AP-{approval.id} names no policy version"
        roles = roles_cache.get(policy_hash)
        if roles is None:
            return (
                _UNCOVERED,
                f"the policy version {policy_hash[:12]} that judged AP-{approval.id} is not stored",
            )
        proven: list[str] = []
        through_groups: dict[str, set[str]] = {}  # voters the policy allowed only if in one of these groups
        for user, voted_at in self.voters.get(approval.id or 0, []):
            groups = _allowed_through(approval, user, voted_at, roles)
            if groups == set():
                proven.append(user)
            elif groups:
                through_groups[user] = groups
        counted = [*proven, *through_groups]
        if len(counted) < max(approval.quorum, 1):
            return _UNCOVERED, (
                f"AP-{approval.id} has {len(counted)} vote(s) from approvers its policy allowed; "
                f"it needs {approval.quorum}"
            )
        if capability.granted_by not in counted:
            return (
                _UNCOVERED,
                f"the capability of A-{action_id} was granted by {capability.granted_by}, not an allowed approver",
            )
        if len(proven) >= max(approval.quorum, 1) and capability.granted_by in proven:
            return None
        who = "; ".join(
            f"{user} only as a member of {', '.join(sorted(g))}" for user, g in through_groups.items()
        )
        return UNPROVEN, (
            f"AP-{approval.id} counts {who}: Slack user groups' members are not stored, so this vote is "
            "taken on trust"
        )


_UNCOVERED = "execution without cover"


def _allowed_through(
    approval: Approval, user: str, voted_at: datetime, roles: Mapping[str, Collection[str]]
) -> set[str] | None:
    """Whether the policy let ``user`` approve when they voted, judged as the bot judges a click: an empty
    set when it did, the Slack user groups (S…) it did only through if any, None when it did not."""
    from policies.approvers import ApprovalRequestView, authorise_approval, group_ids

    request = ApprovalRequestView(
        status=ApprovalStatus.PENDING,  # as it was when the vote was counted
        requester=approval.requester,
        approver_roles=tuple(approval.approver_roles),
        forbid_self_approval=approval.forbid_self_approval,
        # A vote is stored just after its click was judged in time, so its own time may fall past the
        # deadline: expiry is left to the approval's status, which the expiry job sets.
        expires_at=None,
        quorum=approval.quorum,
        escalate_to=tuple(approval.escalate_to),
        escalate_at=approval.escalate_at,
    )

    def allowed(group_members: Mapping[str, Collection[str]]) -> bool:
        refusal = authorise_approval(
            request, user, approve=True, roles=roles, group_members=group_members, now=voted_at
        )
        return refusal is None

    if allowed({}):
        return set()
    # Would membership of the groups the deciding roles name have let them? Nothing else can be checked.
    groups = group_ids(roles, request.deciding_roles(voted_at))
    return groups if groups and allowed({group: (user,) for group in groups}) else None


# --- exporting ---


async def export(units: Units, since: datetime | None, batch: int = BATCH) -> AsyncIterator[dict[str, Any]]:
    """The chain's entries from ``since`` on, oldest first, each with the record's content as it was."""
    entries = audit_table()
    after = 0
    while True:
        query = select(entries).where(entries.c.seq > after).order_by(entries.c.seq).limit(batch)
        if since is not None:
            query = query.where(entries.c.recorded_at >= since)
        async with units() as uow:
            connection = await uow.session.connection()
            rows = (await connection.execute(query)).mappings().all()
        if not rows:
            return
        for row in rows:
            yield {
                "seq": row["seq"],
                "recorded_at": _iso(row["recorded_at"]),
                "record": short_ref(row["record_table"], row["record_id"]),
                "record_table": row["record_table"],
                "record_id": row["record_id"],
                "content": json.loads(row["content"]),
                "content_hash": row["content_hash"],
                "prev_hash": row["prev_hash"],
                "entry_hash": row["entry_hash"],
            }
        after = rows[-1]["seq"]
