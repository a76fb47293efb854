"""The one way out to people: every message the bot posts, updates or shows to one user goes through here, with
the configured secrets replaced, whatever text (an error, a model's words, a tool's result) it was built from.

The runtime's notices are scrubbed twice. First field by field, before they are drawn: a secret is replaced as
the notice holds it (its text already escaped for mrkdwn by the runtime, so the redactor knows that form too, and
a number whose digits are a secret included), before a card's shortening could cut it in two. Then the drawn
message itself, its text and blocks, on its way to the transport's post or update: nothing a card adds in
drawing (a number written out, a label) can carry a secret out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from agents.context import ThreadEntry
from bot.block_kit_notices import BlockKitNotices
from connectors.redaction import Redactor
from runtime.notices import ApprovalCard, BudgetBlocked, Done, EscalationMessage, Notice, RunReview, Thread
from runtime.transport import Transport


class _Posting(Protocol):
    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str: ...

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None: ...


class _ScrubbedPosts:
    """Post and update with the message's text and blocks scrubbed on their way to the transport."""

    def __init__(self, posting: _Posting, redactor: Redactor) -> None:
        self._posting = posting
        self._redactor = redactor

    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        return await self._posting.post(
            channel, self._redactor.text(text), blocks=self._redactor.data(blocks), thread_ts=thread_ts
        )

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await self._posting.update(channel, ts, self._redactor.text(text), blocks=self._redactor.data(blocks))


class _ScrubbedWhenDrawn(_ScrubbedPosts, BlockKitNotices):
    """A Block Kit transport's drawing, each message it draws scrubbed before that transport posts it."""


class RedactingTransport(_ScrubbedPosts):
    def __init__(self, transport: Transport, redactor: Redactor) -> None:
        super().__init__(transport, redactor)
        self._transport = transport
        # Notices go to whoever draws them: this transport's drawing with the drawn message scrubbed, when it
        # draws Block Kit (Slack, the console); otherwise the transport itself, given the scrubbed notice.
        self._notices: BlockKitNotices | Transport = (
            _ScrubbedWhenDrawn(transport, redactor) if isinstance(transport, BlockKitNotices) else transport
        )

    async def tell(self, thread: Thread, notice: Notice) -> str:
        return await self._notices.tell(thread, self._scrubbed(notice))

    async def ask_approval(self, thread: Thread, card: ApprovalCard) -> str:
        return await self._notices.ask_approval(thread, self._scrubbed(card))

    async def update_approval(self, channel: str, ts: str, card: ApprovalCard) -> None:
        await self._notices.update_approval(channel, ts, self._scrubbed(card))

    async def settle_approval(
        self, channel: str, ts: str, card: ApprovalCard, outcome: str, actor: str | None, at: datetime
    ) -> None:
        await self._notices.settle_approval(channel, ts, self._scrubbed(card), outcome, actor, at)

    async def ask_review(self, thread: Thread, review: RunReview) -> str:
        return await self._notices.ask_review(thread, self._scrubbed(review))

    async def update_review(self, channel: str, ts: str, review: RunReview) -> None:
        await self._notices.update_review(channel, ts, self._scrubbed(review))

    async def escalate(self, thread: Thread, message: EscalationMessage) -> str:
        return await self._notices.escalate(thread, self._scrubbed(message))

    async def settle_escalation(
        self, channel: str, ts: str, message: EscalationMessage, outcome: str, actor: str, at: datetime
    ) -> None:
        await self._notices.settle_escalation(channel, ts, self._scrubbed(message), outcome, actor, at)

    async def report_done(self, thread: Thread, done: Done) -> None:
        await self._notices.report_done(thread, self._scrubbed(done))

    async def report_budget_blocked(self, thread: Thread, blocked: BudgetBlocked) -> None:
        await self._notices.report_budget_blocked(thread, self._scrubbed(blocked))

    async def post_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        await self._transport.post_ephemeral(
            channel, user, self._redactor.text(text), thread_ts=thread_ts, blocks=self._redactor.data(blocks)
        )

    async def thread_history(self, channel: str, thread_ts: str) -> list[ThreadEntry]:
        # A secret someone pasted into the thread is not carried into the planner's prompt and its records.
        entries = await self._transport.thread_history(channel, thread_ts)
        return [replace(entry, text=self._redactor.text(entry.text)) for entry in entries]

    async def group_members(self, group_id: str) -> set[str]:
        return await self._transport.group_members(group_id)

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        return await self._transport.open_view(trigger_id, self._redactor.data(view))

    async def update_view(self, view_id: str, view: dict[str, Any]) -> None:
        await self._transport.update_view(view_id, self._redactor.data(view))

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        await self._transport.publish_home(user, self._redactor.data(view))

    def _scrubbed(self, value: Any) -> Any:
        """A notice with every secret replaced in its text, however deep (the lines of a review card, the
        edits and parameters of an approval card), and in a number that would be drawn as a secret's digits;
        other values (times, zones) as they are."""
        if not self._redactor:
            return value
        if is_dataclass(value) and not isinstance(value, type):
            return replace(value, **{f.name: self._scrubbed(getattr(value, f.name)) for f in fields(value)})
        if isinstance(value, Mapping):
            return {self._scrubbed(key): self._scrubbed(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._scrubbed(item) for item in value)
        return self._redactor.data(value)
