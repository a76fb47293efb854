"""The team's long-term memory in Slack (`/aios remember`, `recall`, `forget`), and what the bot remembers on its
own: the outcome of every executed action, keyed by order, Stripe payment, customer or post, for later threads to
find."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from connectors.actions import (
    CmsCreateDraft,
    CmsPublish,
    CmsUnpublish,
    EmailSend,
    ShopRefund,
    StripeRefund,
)
from connectors.registry import ConnectorRegistry
from runtime.handlers.base import HandlerBase
from runtime.messagebus import Message
from runtime.messages import ActionExecuted, ExecutedAction, Forget, Recall, Remember
from runtime.mrkdwn import escape, quote
from storage.ids import UnknownIdError, format_id, parse_id, parse_key
from storage.memory import MemoryStore, MemoryStoreError, PreparedMemory
from storage.memory.entities import inferred_key
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

QUOTE_MAX = 500  # a memory or a query quoted back in a reply; `aios memory search` shows them whole
KEY_QUOTE_MAX = 80


class Memories(HandlerBase):
    async def remember(self, command: Remember) -> Sequence[Message]:
        """Remember a note under its kind, and under the key given or else the one entity the text names (an
        order, a customer, a post), so that exact lookups and searches naming that entity find it first."""
        if command.problem is not None:
            await self._whisper(command.channel, command.user, command.problem)
            return []
        key = command.key if command.key is not None else inferred_key(command.text)
        try:
            memory_id, created = await self.memory.remember(
                command.team, command.text, kind=command.kind, key=key, meta={"by": command.user}
            )
        except MemoryStoreError as exc:
            await self._whisper(command.channel, command.user, f"I can't remember that: {escape(str(exc))}.")
            return []
        ref = format_id("M", memory_id)
        labels = [
            *([f"kind `{command.kind}`"] if command.kind != "note" else []),
            *([f"key `{key}`"] if key else []),
        ]
        under = f" ({', '.join(labels)})" if labels and created else ""
        said = f"Remembered as `{ref}`{under}." if created else f"I already knew that (`{ref}`)."
        await self._whisper(command.channel, command.user, said)
        return []

    async def recall(self, command: Recall) -> Sequence[Message]:
        hits = await self.memory.search(command.team, command.query, limit=5)
        if not hits:
            said = f"I remember nothing about “{quote(command.query, QUOTE_MAX)}”."
            await self._whisper(command.channel, command.user, said)
            return []
        lines = [
            f"• `{format_id('M', h.id)}` ({h.kind}{f', `{quote(h.key, KEY_QUOTE_MAX)}`' if h.key else ''}, "
            f"{h.created_at:%Y-%m-%d}) {quote(h.text, QUOTE_MAX)}"
            for h in hits
        ]
        await self._whisper(command.channel, command.user, "\n".join(["*What I remember*", *lines]))
        return []

    async def forget(self, command: Forget) -> Sequence[Message]:
        """Forget one memory, by id or as the best match for the words given; say which."""
        try:
            prefix, key = parse_id(command.target)
        except UnknownIdError:
            prefix, key = "", 0
        if prefix not in ("", "M"):
            said = f"{quote(command.target, QUOTE_MAX)} is not a memory id (M-…)."
            await self._whisper(command.channel, command.user, said)
            return []
        if prefix and parse_key(command.target, "M") is None:
            # Wider than any key: no memory has it, and the database would refuse the number.
            ref = command.target.strip().upper()
            await self._whisper(command.channel, command.user, f"There is no memory {ref} here.")
            return []
        if not prefix:
            hits = await self.memory.search(command.team, command.target, limit=1)
            if not hits:
                await self._whisper(
                    command.channel,
                    command.user,
                    f"Nothing I remember matches “{quote(command.target, QUOTE_MAX)}”.",
                )
                return []
            key = hits[0].id
        forgotten = await self.memory.forget(command.team, key)
        ref = format_id("M", key)
        log.info("memory_forgotten", memory=key, user=command.user, found=forgotten)
        await self._whisper(
            command.channel,
            command.user,
            f"Forgot `{ref}`." if forgotten else f"There is no memory {ref} here.",
        )
        return []

    async def remember_outcome(self, event: ActionExecuted) -> Sequence[Message]:
        """Keep what was done (:func:`outcome_memory`), unless its booking did in its own transaction."""
        if event.outcome_prepared is not None:
            async with self.units() as uow:
                await self.memory.remember_within(uow, event.outcome_prepared)
                await uow.commit()
            return []
        outcome = None if event.outcome_remembered else outcome_memory(self.registry, event)
        if outcome is None:
            return []
        try:
            await self.memory.remember(
                outcome.team, outcome.text, kind=outcome.kind, key=outcome.key, meta=outcome.meta
            )
        except MemoryStoreError as exc:
            log.warning("outcome_not_remembered", action=event.action_id, error=str(exc))
        return []


@dataclass(frozen=True)
class OutcomeMemory:
    """What is remembered of an executed action, as :meth:`MemoryStore.remember` takes it."""

    team: str
    text: str
    kind: str
    key: str
    meta: dict[str, Any]


def outcome_memory(registry: ConnectorRegistry, event: ActionExecuted) -> OutcomeMemory | None:
    """What was done, keyed so that a later thread about the same order, payment, customer or post finds it (keys
    as `storage.memory.entities` reads them in a request); None for an action not worth remembering.

    The record says what happened (action, amount, who asked, who or which rule allowed it, when, ids); text a
    requester or a model wrote (a refund's reason, an email's subject, a post's title) is quoted and marked
    unverified, so that a later prompt cannot mistake it for a fact or an instruction. The same execution always
    gives the same text, so remembering it twice stores it once."""
    executed = event.action
    action = registry.validate(executed.name, executed.params)
    written: tuple[str, str] | None = None  # what a requester or the model wrote: (what it is, the text)
    if isinstance(action, ShopRefund):
        what = f"refunded ${action.amount:,.2f} on order {action.order_id}"
        kind, key = "decision", f"order:{action.order_id}"
        written = ("reason", action.reason)
    elif isinstance(action, StripeRefund):
        what = f"refunded ${action.amount:,.2f} of Stripe payment {action.payment}"
        kind, key = "decision", f"payment:{action.payment}"
        written = ("reason", action.reason)
    elif isinstance(action, EmailSend):
        what, kind, key = f"emailed {action.to}", "customer", f"customer:{action.to.lower()}"
        written = ("subject", action.subject)
    elif isinstance(action, CmsCreateDraft):
        slug = action.effective_slug()
        what, kind, key = f"drafted the post {slug}", "post", f"post:{slug}"
        written = ("title", action.title)
    elif isinstance(action, CmsPublish | CmsUnpublish):
        verb = "published" if isinstance(action, CmsPublish) else "unpublished"
        what, kind, key = f"{verb} the post {action.slug}", "post", f"post:{action.slug}"
    else:
        return None
    fact = (
        f"{executed.finished_at:%Y-%m-%d %H:%M} UTC: {what} ({action.name} {format_id('A', event.action_id)}, "
        f"execution {format_id('E', event.execution_id)}, run {format_id('R', executed.run_id)}; "
        f"asked by {executed.requester}, {_allowed_by(executed)})."
    )
    if written is not None:
        label, text = written
        quoted = json.dumps(text, ensure_ascii=False)  # in quotes that the text cannot close
        fact += f" {label.capitalize()} given by the requester/model (unverified): {quoted}"
    meta: dict[str, Any] = {"action": event.action_id, "run": executed.run_id}
    return OutcomeMemory(executed.team_id, fact, kind, key, meta)


async def prepare_outcome(
    memory: MemoryStore, registry: ConnectorRegistry, event: ActionExecuted
) -> PreparedMemory | bool:
    """The outcome's memory made ready before its booking's transaction begins (its vector may take seconds,
    which must not be spent holding the booking's locks): a PreparedMemory for :func:`remember_outcome_within`.
    Else whether that settled it: True when there is nothing to remember, or it was refused and logged; False
    when the store remembers only after the commit (:meth:`Memories.remember_outcome`).

    The memory is a nicety, the booking is not: whatever fails here (stored parameters that no longer validate,
    after a connector's schema changed) is logged and the booking goes on without it, or the execution, whose
    effect has happened, would never be booked and recovery would try it again at every start."""
    try:
        outcome = outcome_memory(registry, event)
        if outcome is None:
            return True
        prepared = await memory.prepare(
            outcome.team, outcome.text, kind=outcome.kind, key=outcome.key, meta=outcome.meta
        )
    except MemoryStoreError as exc:
        log.warning("outcome_not_remembered", action=event.action_id, error=str(exc))
        return True
    except Exception:
        log.exception("outcome_not_prepared", action=event.action_id)
        return True
    return False if prepared is None else prepared


async def remember_outcome_within(
    uow: UnitOfWork, memory: MemoryStore, prepared: PreparedMemory | bool, action_id: int
) -> bool:
    """Write the prepared outcome in the booking's transaction, as its first write: True when that settled it.
    A write that fails (on PostgreSQL any failed statement spoils the transaction) is logged and rolled back,
    which takes nothing else with it, so the booking of what was done still lands; False then leaves the memory,
    as prepared, to :meth:`Memories.remember_outcome` after the commit."""
    if isinstance(prepared, bool):
        return prepared
    try:
        await memory.remember_within(uow, prepared)
    except Exception:
        log.exception("outcome_not_remembered_with_its_booking", action=action_id)
        await uow.session.rollback()
        return False
    return True


def _allowed_by(executed: ExecutedAction) -> str:
    """Who let the action run: the people who approved it, else the policy rule that allowed it."""
    if executed.approvers:
        return "approved by " + ", ".join(executed.approvers)
    rule = executed.allowed_by_rule
    return f"allowed by policy rule {rule}" if rule else "allowed"
