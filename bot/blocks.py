"""Block Kit messages built with ``slack_sdk.models.blocks`` (validated on build), each with a text fallback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

APPROVE_ACTION_ID = "aios_approve"
REJECT_ACTION_ID = "aios_reject"
REQUEST_BUDGET_ACTION_ID = "aios_budget_request"

Message = tuple[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class ApprovalCard:
    """What an approval request shows; built by the handlers from the stored records."""

    approval_id: str
    action_id: str
    decision_id: str
    summary: str
    params: dict[str, Any]
    rationale: str
    rule_id: str
    reason: str
    approver_roles: tuple[str, ...]
    requester: str
    expires_at: datetime | None
    quorum: int = 1
    voters: tuple[str, ...] = ()  # approvers so far, while a quorum is incomplete


def _render(blocks: list[Block]) -> list[dict[str, Any]]:
    return [block.to_dict() for block in blocks]


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _card_blocks(card: ApprovalCard, header: str) -> list[Block]:
    params = json.dumps(card.params, sort_keys=True)
    deadline = f" · expires {_when(card.expires_at)}" if card.expires_at else ""
    needs = f" ({card.quorum} different people)" if card.quorum > 1 else ""
    return [
        HeaderBlock(block_id="aios_header", text=header),
        SectionBlock(
            block_id="aios_summary",
            text=MarkdownTextObject(
                text=f"*{card.summary}*\nRequested by <@{card.requester}> · `{card.action_id}`\n"
                f"```{params}```"
            ),
        ),
        SectionBlock(
            block_id="aios_reasoning",
            text=MarkdownTextObject(text=f"*Why the agent proposes it:* {card.rationale}"),
        ),
        ContextBlock(
            block_id="aios_policy",
            elements=[
                MarkdownTextObject(
                    text=f"Policy rule `{card.rule_id}`: {card.reason}. Approvers: "
                    f"{', '.join(card.approver_roles)}{needs} · `{card.approval_id}` · `{card.decision_id}`{deadline}"
                )
            ],
        ),
    ]


def approval_request(card: ApprovalCard) -> Message:
    buttons = ActionsBlock(
        block_id="aios_decision",
        elements=[
            ButtonElement(
                text="Approve",
                action_id=APPROVE_ACTION_ID,
                value=card.approval_id,
                style="primary",
                confirm=ConfirmObject(
                    title="Approve this action?",
                    text=f"{card.summary}. It runs as soon as you confirm.",
                    confirm="Approve",
                    deny="Cancel",
                ),
            ),
            ButtonElement(text="Reject", action_id=REJECT_ACTION_ID, value=card.approval_id, style="danger"),
        ],
    )
    text = f"Approval needed ({card.approval_id}): {card.summary}, requested by <@{card.requester}>"
    votes: list[Block] = []
    if card.voters:
        so_far = ", ".join(f"<@{voter}>" for voter in card.voters)
        votes = [
            SectionBlock(
                block_id="aios_votes",
                text=MarkdownTextObject(text=f"*{len(card.voters)} of {card.quorum} approvals:* {so_far}"),
            )
        ]
    return text, _render([*_card_blocks(card, "Approval needed"), *votes, buttons])


def approval_closed(card: ApprovalCard, outcome: str, actor: str | None, at: datetime) -> Message:
    """The approval request after it was decided or expired: the same card, the buttons replaced by the outcome."""
    icons = {"approved": ":white_check_mark:", "rejected": ":no_entry_sign:", "expired": ":hourglass:"}
    who = f" by <@{actor}>" if actor else ""
    line = f"{icons.get(outcome, '')} *{outcome.capitalize()}*{who} at {_when(at)}".strip()
    text = f"{card.summary}: {outcome}{who} ({card.approval_id})"
    outcome_block = SectionBlock(block_id="aios_outcome", text=MarkdownTextObject(text=line))
    return text, _render([*_card_blocks(card, f"Approval request {outcome}"), outcome_block])


def notice(text: str, context: str | None = None) -> Message:
    """A plain reply in a thread, with an optional small-print line (ids, rule)."""
    blocks: list[Block] = [SectionBlock(block_id="aios_notice", text=MarkdownTextObject(text=text))]
    if context:
        blocks.append(
            ContextBlock(block_id="aios_notice_context", elements=[MarkdownTextObject(text=context)])
        )
    return text, _render(blocks)


def budget_blocked(run_id: str, why: str) -> Message:
    """A run stopped by a hard budget limit, with the button that asks the budget's approvers for more."""
    button = ButtonElement(text="Request budget", action_id=REQUEST_BUDGET_ACTION_ID, value=run_id)
    text = f":octagonal_sign: {why}"
    return text, _render(
        [
            SectionBlock(block_id="aios_budget", text=MarkdownTextObject(text=text)),
            ActionsBlock(block_id="aios_budget_actions", elements=[button]),
            ContextBlock(block_id="aios_budget_context", elements=[MarkdownTextObject(text=f"`{run_id}`")]),
        ]
    )
