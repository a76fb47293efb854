"""A run's review card in its thread: posted once for the approvals a run asks for together, and drawn again
from the records whenever one of them is decided or expires.

The card's message is each of its approvals' ``message_ts``: approvals of one run that share a message are
on one card (a single request has a message of its own), so a restart that finds them decided redraws the
card rather than any one approval's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import structlog

from connectors.actions import Action
from runtime.handlers.base import HandlerBase
from runtime.notices import ReviewLine, RunReview, Thread
from runtime.transport import TransportError
from storage.action_edits import ActionEdits
from storage.ids import format_id
from storage.records import Approval, ApprovalStatus, ProposedAction

log = structlog.get_logger(__name__)


class RunReviews(HandlerBase):
    async def post(self, run_id: int, approval_ids: Sequence[int], thread: Thread) -> None:
        """Post the card for these approvals and remember its message on each of them; if it cannot be posted
        they stay without a message, and recovery asks for each on its own card."""
        on_card = [pair for pair in await self._run_approvals(run_id) if pair[0].id in approval_ids]
        review = self._review(run_id, on_card, {}, await self._editors(on_card))
        try:
            ts = await self.transport.ask_review(thread, review)
        except TransportError as exc:
            log.error("run_review_not_delivered", run=run_id, error=str(exc))
            return
        async with self.units() as uow:
            for approval_id in approval_ids:
                stored = await uow.get(Approval, approval_id)
                assert stored is not None
                stored.message_ts = ts
                uow.session.add(stored)
            await uow.commit()

    async def run_of(self, approval: Approval) -> int | None:
        """The run whose review card shows this approval, or None when it has a card of its own."""
        if approval.message_ts is None:
            return None
        async with self.units() as uow:
            proposed = await uow.get(ProposedAction, approval.action_id)
        if proposed is None:
            return None
        sharing = [
            a for a, _ in await self._run_approvals(proposed.run_id) if a.message_ts == approval.message_ts
        ]
        return proposed.run_id if len(sharing) > 1 else None

    async def waiting(self, run_id: int) -> list[Approval]:
        """The run's approvals still pending, in the order they were asked for."""
        return [a for a, _ in await self._run_approvals(run_id) if a.status == ApprovalStatus.PENDING]

    async def refresh(self, run_id: int, notes: Mapping[int, str]) -> None:
        """Draw the run's card again from the records; ``notes`` say why a click left an approval waiting."""
        pairs = [pair for pair in await self._run_approvals(run_id) if pair[0].message_ts is not None]
        by_message: dict[str, list[tuple[Approval, ProposedAction]]] = {}
        for pair in pairs:
            by_message.setdefault(pair[0].message_ts or "", []).append(pair)
        for ts, on_card in by_message.items():
            if len(on_card) < 2:
                continue  # an approval with a card of its own
            review = self._review(run_id, on_card, notes, await self._editors(on_card))
            try:
                await self.transport.update_review(on_card[0][0].channel, ts, review)
            except TransportError as exc:
                log.error("run_review_update_not_delivered", run=run_id, error=str(exc))

    async def _run_approvals(self, run_id: int) -> list[tuple[Approval, ProposedAction]]:
        async with self.units() as uow:
            pairs = []
            for proposed in await uow.runs.actions_for_run(run_id):
                approval = await uow.approvals.approval_for_action(proposed.id or 0)
                if approval is not None:
                    pairs.append((approval, proposed))
        return sorted(pairs, key=lambda pair: pair[0].id or 0)

    async def _editors(self, on_card: Sequence[tuple[Approval, ProposedAction]]) -> dict[int, str]:
        """Who last changed each action's parameters, by approval (approvals never edited left out)."""
        editors: dict[int, str] = {}
        async with self.units() as uow:
            for approval, proposed in on_card:
                applied = await ActionEdits(uow.session).applied_to(proposed.id or 0)
                if applied and approval.id is not None:
                    editors[approval.id] = applied[-1].user
        return editors

    def _review(
        self,
        run_id: int,
        on_card: Sequence[tuple[Approval, ProposedAction]],
        notes: Mapping[int, str],
        editors: Mapping[int, str],
    ) -> RunReview:
        roles: list[str] = []
        for approval, _ in on_card:
            roles += [role for role in approval.approver_roles if role not in roles]
        lines = tuple(
            ReviewLine(
                approval_id=format_id("AP", approval.id),
                text=review_line_text(self.registry.validate(proposed.name, proposed.params), self.zone),
                status=approval.status,
                decided_by=approval.decided_by,
                note=notes.get(approval.id or 0, ""),
                edited_by=editors.get(approval.id or 0),
            )
            for approval, proposed in on_card
        )
        first_approval, first_action = on_card[0]
        return RunReview(
            run_id=format_id("R", run_id),
            requester=first_approval.requester,
            rationale=_without_lines_shown(first_action.rationale, [proposed for _, proposed in on_card]),
            approvers=tuple(roles),
            lines=lines,
        )


def review_line_text(action: Action, zone: ZoneInfo) -> str:
    """What a line says of an action: a planned draft by its slot (day and time in the team's zone) and its
    working title; anything else by its summary."""
    planned_for = getattr(action, "planned_for", None)
    title = getattr(action, "title", None)
    if isinstance(planned_for, datetime) and isinstance(title, str):
        local = planned_for.astimezone(zone)
        return f"{local:%a} {local.day} {local:%b %H:%M} · “{title}”"
    return action.summary()


def _without_lines_shown(rationale: str, actions: Sequence[ProposedAction]) -> str:
    """The rationale without its lines naming an action's working title: the card has a line for each."""
    titles = [
        title for proposed in actions if isinstance(title := proposed.params.get("title"), str) and title
    ]
    kept = [line for line in rationale.splitlines() if not any(title in line for title in titles)]
    return "\n".join(kept).strip()
