"""Accepting an intent, a click or an edit: persisted (an intent with its delivery key, atomically) before Slack
gets its ack."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from runtime.group_commit import GroupCommit
from runtime.observability import INTENTS
from storage.multirow import MultiRowInsert
from storage.records import ActionEdit, Approval, ApprovalStatus, Click, Intent, IntentStatus, Once, utcnow
from storage.text import storable
from storage.unit_of_work import UnitOfWorkFactory

# Every intent belongs to a team (the memory and budget tenant); payloads without one share this one.
DEFAULT_TEAM = "default"
_INTENT_COLUMNS = (
    "source", "team_id", "channel", "thread_ts", "user", "text", "message_ts", "status", "created_at", "owner",
)  # fmt: skip
# What tells the rows of a batch apart, handed back with each one's id: the batch's rows differ in nothing else
# (one time, one status, one owner), and rows alike in all of it are alike, whichever id each caller gets.
_TELLING_APART = ("source", "team_id", "channel", "thread_ts", "user", "text", "message_ts")
_INSERT_INTENTS = MultiRowInsert(
    Intent.__table__,  # type: ignore[attr-defined]
    _INTENT_COLUMNS,
    ("id", *_TELLING_APART),
)
_CLAIM_KEYS = MultiRowInsert(
    Once.__table__,  # type: ignore[attr-defined]
    ("key", "created_at"),
    ("key",),
    skip_conflicts=True,
)


@dataclass(frozen=True)
class IncomingIntent:
    source: str  # slash, mention, im, console
    team_id: str
    channel: str
    thread_ts: str | None
    user: str
    text: str
    message_ts: str | None = None  # the message that carried it, when there is one
    delivery_key: str | None = None  # Slack's event_id; None where Slack never redelivers


class IntentInbox:
    """Intents stored before their ack; those arriving together share one transaction (a group commit), so a
    burst costs one commit rather than one each (and an intent the batch's transaction fails on is then stored
    alone, failing no other)."""

    def __init__(self, units: UnitOfWorkFactory, owner: int | None) -> None:
        """``owner``: the lease of the process that plans what it accepts, or None when a worker takes
        each intent from the store."""
        self._units = units
        self._owner = owner
        self._batches: GroupCommit[IncomingIntent, int | None] = GroupCommit(self._store)

    async def accept(self, incoming: IncomingIntent) -> int | None:
        """The stored intent's id, once it is committed; None when this delivery was seen before (a Slack
        retry or duplicate, in this batch or an earlier one)."""
        intent_id = await self._batches.submit(incoming)
        if intent_id is not None:
            INTENTS.labels(source=incoming.source).inc()
        return intent_id

    async def _store(self, take: Callable[[], list[IncomingIntent]]) -> list[int | None]:
        if self._units.writers_take_turns:
            # Taken once the transaction is had: on SQLite the acks that arrive while it waits for the writer
            # lock (behind the planning's work) join it.
            return await self._units.on_connection(
                lambda connection: store_intents(connection, take(), self._owner), urgent=True
            )
        batch = take()
        # Without delivery keys to claim (slash commands), the batch is the one INSERT of its intents.
        keyless = all(incoming.delivery_key is None for incoming in batch)
        return await self._units.on_connection(
            lambda connection: store_intents(connection, batch, self._owner),
            urgent=True,
            one_statement=keyless,
        )


def store_intents(
    connection: Connection, batch: Sequence[IncomingIntent], owner: int | None
) -> list[int | None]:
    """Add the intents, each with its delivery key claimed in the same transaction: a statement for the keys, one
    for the intents. Each one's id, or None for a delivery seen before (in an earlier batch, or earlier in this
    one). What no database keeps (a NUL character, a lone surrogate) is taken out of each text, so that a message
    carrying one is still stored rather than refused by the database."""
    now = utcnow()
    keys = [
        None if incoming.delivery_key is None else f"slack-event:{storable(incoming.delivery_key)}"
        for incoming in batch
    ]
    claimed = {
        key
        for (key,) in _CLAIM_KEYS(
            connection,
            # In one order for every replica: two claiming the same keys never wait on each other in a cycle.
            [{"key": key, "created_at": now} for key in sorted({k for k in keys if k is not None})],
        )
    }
    rows: list[dict[str, Any] | None] = []
    for incoming, key in zip(batch, keys, strict=True):
        if key is not None:
            if key not in claimed:
                rows.append(None)
                continue
            claimed.discard(key)  # the same delivery again in this batch is a duplicate
        rows.append(
            {
                "source": storable(incoming.source),
                "team_id": storable(incoming.team_id or DEFAULT_TEAM),
                "channel": storable(incoming.channel),
                "thread_ts": _storable_or_none(incoming.thread_ts),
                "user": storable(incoming.user),
                "text": storable(incoming.text),
                "message_ts": _storable_or_none(incoming.message_ts),
                "status": IntentStatus.RECEIVED,
                "created_at": now,
                "owner": owner,
            }
        )
    fresh = [row for row in rows if row is not None]
    ids = iter(_ids_of(fresh, _INSERT_INTENTS(connection, fresh)))
    return [None if row is None else next(ids) for row in rows]


def _ids_of(rows: list[dict[str, Any]], returned: list[tuple[Any, ...]]) -> list[int]:
    """The id of each row, from what its INSERT handed back (the id and the columns that tell rows apart, in no
    set order). A row whose columns came back other than as given (a value the database shortened, say) gets one
    of the ids left over, in order, rather than failing its batch."""
    if len(rows) == 1 and len(returned) == 1:
        return [int(returned[0][0])]
    alike: dict[tuple[Any, ...], deque[int]] = {}
    for intent_id, *telling in sorted(returned, key=lambda row: int(row[0])):
        alike.setdefault(tuple(telling), deque()).append(int(intent_id))
    ids: list[int | None] = []
    for row in rows:
        same = alike.get(tuple(row[column] for column in _TELLING_APART))
        ids.append(same.popleft() if same else None)
    left_over = iter(sorted(intent_id for same in alike.values() for intent_id in same))
    return [next(left_over) if intent_id is None else intent_id for intent_id in ids]


def _storable_or_none(text: str | None) -> str | None:
    return None if text is None else storable(text)


async def accept_click(units: UnitOfWorkFactory, click: Click) -> int:
    """Store an Approve or Reject click; its id goes with the DecideApproval that handles it. The click names
    its owner, the lease of the process that decides it, so that recovery takes over a click whose process
    died (and leaves alone one a live process is deciding)."""
    async with units(urgent=True) as uow:
        stored = await uow.add(click)
        await uow.commit()
    assert stored.id is not None
    return stored.id


async def accept_edit(
    units: UnitOfWorkFactory,
    approval_id: int,
    user: str,
    params: dict[str, Any],
    channel: str,
    *,
    owner: int | None = None,
) -> int:
    """Store a submitted edit before Slack gets its ack (a crash after the ack loses nothing); its id, which goes
    with the EditApproval that handles it. ``owner``: the lease of the process that handles it (as a click's)."""
    async with units(urgent=True) as uow:
        approval = await uow.get(Approval, approval_id)
        edit = ActionEdit(
            approval_id=approval_id,
            action_id=approval.action_id if isinstance(approval, Approval) else None,
            user=user,
            channel=channel,
            params_after=params,
            owner=owner,
        )
        stored = await uow.add(edit)
        await uow.commit()
    assert stored.id is not None
    return stored.id


async def accept_run_click(
    units: UnitOfWorkFactory,
    run_id: int,
    user: str,
    approve: bool,
    channel: str,
    card_ts: str,
    *,
    owner: int | None = None,
) -> tuple[int, ...]:
    """Store Approve all or Reject all as one click per approval of the run waiting now on the card clicked
    (the message ``card_ts``), in one transaction: each is then handled, and recovered after a crash, exactly as
    if it had been clicked on its own. Approvals the run asked for later, on another card, are not decided by a
    click on this one."""
    async with units(urgent=True) as uow:
        clicks = []
        for proposed in await uow.runs.actions_for_run(run_id):
            approval = await uow.approvals.approval_for_action(proposed.id or 0)
            if (
                approval is not None
                and approval.id is not None
                and approval.status == ApprovalStatus.PENDING
                and approval.message_ts == card_ts
            ):
                click = Click(
                    approval_id=approval.id, user=user, approve=approve, channel=channel, owner=owner
                )
                clicks.append(await uow.add(click))
        await uow.commit()
    return tuple(sorted(click.id for click in clicks if click.id is not None))
