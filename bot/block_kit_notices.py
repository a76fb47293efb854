"""The runtime's notices drawn as Block Kit messages (``bot.blocks``, ``bot.run_review``) and posted: what the
Slack transport and the console transport (which prints the same blocks as text) share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from bot import blocks
from bot.run_review import run_review
from runtime.notices import ApprovalCard, BudgetBlocked, Done, EscalationMessage, Notice, RunReview, Thread


class BlockKitNotices(ABC):
    @abstractmethod
    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str: ...

    @abstractmethod
    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None: ...

    async def tell(self, thread: Thread, notice: Notice) -> str:
        return await self._post(thread, blocks.notice(notice.text, notice.context))

    async def ask_approval(self, thread: Thread, card: ApprovalCard) -> str:
        return await self._post(thread, blocks.approval_request(card))

    async def update_approval(self, channel: str, ts: str, card: ApprovalCard) -> None:
        await self._update(channel, ts, blocks.approval_request(card))

    async def settle_approval(
        self, channel: str, ts: str, card: ApprovalCard, outcome: str, actor: str | None, at: datetime
    ) -> None:
        await self._update(channel, ts, blocks.approval_closed(card, outcome, actor, at))

    async def ask_review(self, thread: Thread, review: RunReview) -> str:
        return await self._post(thread, run_review(review))

    async def update_review(self, channel: str, ts: str, review: RunReview) -> None:
        await self._update(channel, ts, run_review(review))

    async def escalate(self, thread: Thread, message: EscalationMessage) -> str:
        return await self._post(thread, blocks.escalation(message))

    async def settle_escalation(
        self, channel: str, ts: str, message: EscalationMessage, outcome: str, actor: str, at: datetime
    ) -> None:
        await self._update(channel, ts, blocks.escalation_closed(message, outcome, actor, at))

    async def report_done(self, thread: Thread, done: Done) -> None:
        await self._post(
            thread, blocks.done(done.text, done.context, undo=done.undo, reported_failed=done.reported_failed)
        )

    async def report_budget_blocked(self, thread: Thread, blocked: BudgetBlocked) -> None:
        await self._post(thread, blocks.budget_blocked(blocked.run_id, blocked.why))

    async def _post(self, thread: Thread, message: blocks.Message) -> str:
        text, drawn = message
        return await self.post(thread.channel, text, blocks=drawn, thread_ts=thread.ts)

    async def _update(self, channel: str, ts: str, message: blocks.Message) -> None:
        text, drawn = message
        await self.update(channel, ts, text, blocks=drawn)
