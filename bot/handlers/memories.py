"""The team's long-term memory in Slack (`/aios remember`, `recall`, `forget`), and what the bot remembers on its
own: the outcome of every executed action, keyed by order, customer or post, for later threads to find."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from bot.handlers.base import HandlerBase
from bot.messagebus import Message
from bot.messages import ActionExecuted, Forget, Recall, Remember
from connectors.actions import CmsCreateDraft, CmsPublish, CmsUnpublish, EmailSend, ShopRefund
from storage.ids import UnknownIdError, format_id, parse_id
from storage.memory import MemoryStoreError
from storage.records import Intent, ProposedAction, Run

log = structlog.get_logger(__name__)


class Memories(HandlerBase):
    async def remember(self, command: Remember) -> Sequence[Message]:
        try:
            memory_id, created = await self.memory.remember(
                command.team, command.text, meta={"by": command.user}
            )
        except MemoryStoreError as exc:
            await self._whisper(command.channel, command.user, f"I can't remember that: {exc}.")
            return []
        ref = format_id("M", memory_id)
        said = f"Remembered as `{ref}`." if created else f"I already knew that (`{ref}`)."
        await self._whisper(command.channel, command.user, said)
        return []

    async def recall(self, command: Recall) -> Sequence[Message]:
        hits = await self.memory.search(command.team, command.query, limit=5)
        if not hits:
            await self._whisper(command.channel, command.user, f"I remember nothing about “{command.query}”.")
            return []
        lines = [f"• `{format_id('M', h.id)}` ({h.kind}, {h.created_at:%Y-%m-%d}) {h.text}" for h in hits]
        await self._whisper(command.channel, command.user, "\n".join(["*What I remember*", *lines]))
        return []

    async def forget(self, command: Forget) -> Sequence[Message]:
        """Forget one memory, by id or as the best match for the words given; say which."""
        try:
            prefix, key = parse_id(command.target)
        except UnknownIdError:
            prefix, key = "", 0
        if prefix not in ("", "M"):
            await self._whisper(command.channel, command.user, f"{command.target} is not a memory id (M-…).")
            return []
        if not prefix:
            hits = await self.memory.search(command.team, command.target, limit=1)
            if not hits:
                await self._whisper(
                    command.channel, command.user, f"Nothing I remember matches “{command.target}”."
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
        """Keep what was done, keyed so that a later thread about the same order, customer or post finds it."""
        async with self.units() as uow:
            proposed = await uow.repo.get(ProposedAction, event.action_id)
            run = await uow.repo.get(Run, proposed.run_id) if proposed else None
            intent = await uow.repo.get(Intent, run.intent_id) if run else None
        if proposed is None or run is None or intent is None:
            return []
        action = self.registry.validate(proposed.name, proposed.params)
        refs = f"({format_id('A', proposed.id)}, asked by <@{intent.user}>)"
        when = f"{self.clock():%Y-%m-%d}"
        if isinstance(action, ShopRefund):
            fact = f"{when}: refunded ${action.amount:,.2f} on order {action.order_id} because {action.reason} {refs}"
            kind, key = "decision", f"order:{action.order_id}"
        elif isinstance(action, EmailSend):
            fact, kind, key = (
                f"{when}: emailed {action.to} “{action.subject}” {refs}",
                "customer",
                f"customer:{action.to}",
            )
        elif isinstance(action, CmsCreateDraft):
            slug = action.effective_slug()
            fact, kind, key = (
                f"{when}: drafted the post “{action.title}” ({slug}) {refs}",
                "post",
                f"post:{slug}",
            )
        elif isinstance(action, CmsPublish | CmsUnpublish):
            verb = "published" if isinstance(action, CmsPublish) else "unpublished"
            fact, kind, key = f"{when}: {verb} the post {action.slug} {refs}", "post", f"post:{action.slug}"
        else:
            return []
        try:
            await self.memory.remember(
                intent.team_id,
                fact,
                kind=kind,
                key=key,
                meta={"action": proposed.id, "run": run.id},
            )
        except MemoryStoreError as exc:
            log.warning("outcome_not_remembered", action=proposed.id, error=str(exc))
        return []
