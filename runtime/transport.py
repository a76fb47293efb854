"""The port the service layer talks through to people: Slack in production, the terminal in `aios chat`.

The handlers tell people things in the runtime's own terms (``runtime.notices``); each transport draws them its
own way. The generic messages and views (Block Kit) are for the front doors, which draw their own answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from agents.context import ThreadEntry
from runtime.notices import (
    ApprovalCard,
    BudgetBlocked,
    Done,
    EscalationMessage,
    Notice,
    RunReview,
    Thread,
)


class TransportError(Exception):
    """A message could not be delivered (the chat service refused it or could not be reached)."""


class Transport(Protocol):
    async def tell(self, thread: Thread, notice: Notice) -> str:
        """Reply in the thread, or start one in its channel when it has none yet; the message's ``ts``."""
        ...

    async def ask_approval(self, thread: Thread, card: ApprovalCard) -> str:
        """Ask the card's approvers to decide, with its buttons; the message's ``ts``, to update it later."""
        ...

    async def update_approval(self, channel: str, ts: str, card: ApprovalCard) -> None:
        """The request still waits, shown again: an edit changed it, or some of its quorum approved."""
        ...

    async def settle_approval(
        self, channel: str, ts: str, card: ApprovalCard, outcome: str, actor: str | None, at: datetime
    ) -> None:
        """The request was decided (by ``actor``, or nobody when it expired): its buttons give way to that."""
        ...

    async def ask_review(self, thread: Thread, review: RunReview) -> str:
        """One card for the approvals a run asks for together; the message's ``ts``."""
        ...

    async def update_review(self, channel: str, ts: str, review: RunReview) -> None:
        """The review card drawn again, as its approvals are decided or expire."""
        ...

    async def escalate(self, thread: Thread, message: EscalationMessage) -> str:
        """Hand a run to people, with the means to take it over; the message's ``ts``."""
        ...

    async def settle_escalation(
        self, channel: str, ts: str, message: EscalationMessage, outcome: str, actor: str, at: datetime
    ) -> None:
        """Someone answered the escalation or took it over."""
        ...

    async def report_done(self, thread: Thread, done: Done) -> None:
        """An action ran, with the means to ask for it to be undone when it can be."""
        ...

    async def report_budget_blocked(self, thread: Thread, blocked: BudgetBlocked) -> None:
        """A run stopped at a budget limit, with the means to ask the budget's approvers for more."""
        ...

    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Post a message (in a thread when ``thread_ts`` is given) and return its ``ts``."""
        ...

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None: ...

    async def post_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """A message only ``user`` sees: refusals, explanations."""
        ...

    async def thread_history(self, channel: str, thread_ts: str) -> list[ThreadEntry]:
        """The messages of a thread so far, for the agent's short-term context."""
        ...

    async def group_members(self, group_id: str) -> set[str]:
        """Members of a Slack user group (S…), for roles that name groups."""
        ...

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        """Open a modal for the person whose click or shortcut carried ``trigger_id`` (valid for 3 s); its view id."""
        ...

    async def update_view(self, view_id: str, view: dict[str, Any]) -> None:
        """Replace an open modal's content."""
        ...

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """Show ``view`` as ``user``'s App Home tab."""
        ...
