"""Block Kit messages built with ``slack_sdk.models.blocks`` (validated on build), each with a text fallback.

Every text is shortened to what Slack accepts, so a long intent or a model's long rationale can never stop a
message (an approval request above all) from being posted; the records keep the full text. Text that people or
models wrote arrives raw in an ``ApprovalCard`` and is escaped here; ``notice`` takes mrkdwn its caller composed.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

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

from agents.dates import UTC_ZONE, describe
from runtime.card_values import SHORT_VALUE_MAX, edit_changes, humanise, told_value
from runtime.mrkdwn import escape, mentions, quote, truncate
from runtime.notices import ApprovalCard, EscalationMessage, ReportedFailed

APPROVE_ACTION_ID = "aios_approve"
EDIT_ACTION_ID = "aios_edit"  # opens the Edit dialog (bot.slack_edit)
REJECT_ACTION_ID = "aios_reject"
REQUEST_BUDGET_ACTION_ID = "aios_budget_request"
UNDO_ACTION_ID = "aios_undo"

Message = tuple[str, list[dict[str, Any]]]

# Slack's limits (slack_sdk checks them when a block is built, and Slack refuses a message past them).
SECTION_TEXT_MAX = SectionBlock.text_max_length  # 3,000
CONTEXT_TEXT_MAX = 3000
CONFIRM_TEXT_MAX = ConfirmObject.text_max_length  # 300
FALLBACK_TEXT_MAX = 3000  # the notification text; Slack takes more, but nobody reads more in a notification
# What one card field may take of its block, so that the fields around it always fit.
SUMMARY_MAX = 500
PARAMS_MAX = 2000  # the short parameters together
PARAM_SECTIONS_MAX = (
    20  # a section each for long parameters (an email body); the card stays well under 50 blocks
)
REASON_MAX = 1000
CONFIRM_SUFFIX = ". It runs as soon as you confirm."
EDITS_SHOWN = 5  # the newest edits a card lists; `/aios why` lists them all


def _render(blocks: list[Block]) -> list[dict[str, Any]]:
    return [block.to_dict() for block in blocks]


def _when(moment: datetime, zone: ZoneInfo = UTC_ZONE) -> str:
    return describe(moment, zone)


def _card_blocks(card: ApprovalCard, header: str, *, decided: bool = False) -> list[Block]:
    # A decided card has nothing left to expire: the line would only mislead.
    deadline = f" · expires {_when(card.expires_at, card.zone)}" if card.expires_at and not decided else ""
    rationale_label = "*Why the agent proposes it:* "
    short, long = _parameters(card)
    return [
        HeaderBlock(block_id="aios_header", text=header),
        _section(
            "aios_summary",
            f"*{quote(card.summary, SUMMARY_MAX)}*\nRequested by <@{card.requester}> · `{card.action_id}`"
            + (f"\n{short}" if short else ""),
        ),
        *_edits(card),
        *long,
        _section(
            "aios_reasoning",
            rationale_label + quote(card.rationale, SECTION_TEXT_MAX - len(rationale_label)),
        ),
        _context(
            "aios_policy",
            f"Policy rule `{card.rule_id}`: {quote(card.reason, REASON_MAX)}. Approvers: "
            f"{_approvers(card)} · `{card.approval_id}` · `{card.decision_id}`{deadline}",
        ),
    ]


def _approvers(card: ApprovalCard) -> str:
    """Who may decide: the roles' members as mentions with the roles (and a quorum) named after them, or the
    roles alone."""
    roles = ", ".join(card.approver_roles)
    quorum = f"{card.quorum} different people" if card.quorum > 1 else ""
    if card.approver_mentions:
        return f"{card.approver_mentions} ({', '.join(filter(None, (roles, quorum)))})"
    return f"{roles} ({quorum})" if quorum else roles


def _edits(card: ApprovalCard) -> list[Block]:
    """A line for each of the newest edits: ✏️ Edited by <@U>: Amount $250.00 → $40.00."""
    if not card.edits:
        return []
    shown = card.edits[-EDITS_SHOWN:]
    lines = [
        f":pencil2: Edited by <@{edit.editor}>: {edit_changes(edit, card.labels, card.zone)}"
        for edit in shown
    ]
    if len(card.edits) > len(shown):
        lines.insert(
            0, f"_{len(card.edits) - len(shown)} earlier edits; `/aios why {card.action_id}` lists them_"
        )
    return [_context("aios_edits", "\n".join(lines))]


def _parameters(card: ApprovalCard) -> tuple[str, list[Block]]:
    """The parameters as ``*Label:* value`` lines: the short ones together under the summary, each long one
    (an email body, a nested JSON object) in a section of its own, up to ``PARAM_SECTIONS_MAX`` of them."""
    lines: list[str] = []
    long: list[Block] = []
    unshown: list[str] = []
    for name in sorted(card.params):
        label = f"*{quote(card.labels.get(name) or humanise(name), 100)}:*"
        value = card.params[name]
        shown = told_value(name, value, card.zone)
        if shown is not None and len(shown) <= SHORT_VALUE_MAX:
            lines.append(f"{label} {shown}")
        elif len(long) < PARAM_SECTIONS_MAX:
            long.append(_section(f"aios_param_{len(long)}", f"{label}\n{_long(value, shown)}"))
        else:
            unshown.append(name)
    if unshown:
        lines.append(f"_{len(unshown)} more long parameters than a card can show; the record keeps them_")
    return truncate("\n".join(lines), PARAMS_MAX), long


def _long(value: Any, shown: str | None) -> str:
    """A value too long for a line: text as a quote block with its own line breaks, anything else as JSON."""
    if isinstance(value, str):
        quoted = "\n".join(f">{line}" for line in escape(value).split("\n"))
        return truncate(quoted, SECTION_TEXT_MAX - 110)
    if shown is not None:
        return truncate(shown, SECTION_TEXT_MAX - 110)
    as_json = quote(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False), SECTION_TEXT_MAX - 120)
    return f"```{as_json}```"


def _section(block_id: str, mrkdwn: str) -> SectionBlock:
    return SectionBlock(block_id=block_id, text=MarkdownTextObject(text=truncate(mrkdwn, SECTION_TEXT_MAX)))


def _context(block_id: str, mrkdwn: str) -> ContextBlock:
    return ContextBlock(
        block_id=block_id, elements=[MarkdownTextObject(text=truncate(mrkdwn, CONTEXT_TEXT_MAX))]
    )


DECISION_BLOCK_ID = "aios_decision"
_DECISION_BLOCK = re.compile(r"^aios_decision(?:_AP-\d+)?(?:\.e(\d+))?$")


def decision_block_id(edits: int, approval_id: str | None = None) -> str:
    """The block of a request's buttons. It names how many edits the card showed when it was drawn, so that a
    click on a card drawn before an edit is not taken as approving the edited request; with ``approval_id``,
    the block of those buttons on the App Home, where block ids must be unique among many requests."""
    block_id = DECISION_BLOCK_ID if approval_id is None else f"{DECISION_BLOCK_ID}_{approval_id}"
    return block_id if edits == 0 else f"{block_id}.e{edits}"


def edits_seen(block_id: str) -> int | None:
    """How many edits the clicked card showed, read from its buttons' block id; None for another block."""
    match = _DECISION_BLOCK.match(block_id)
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else 0


def approval_request(card: ApprovalCard) -> Message:
    buttons = ActionsBlock(
        block_id=decision_block_id(len(card.edits)),
        elements=[
            ButtonElement(
                text="Approve",
                action_id=APPROVE_ACTION_ID,
                value=card.approval_id,
                style="primary",
                confirm=ConfirmObject(
                    title="Approve this action?",
                    text=quote(card.summary, CONFIRM_TEXT_MAX - len(CONFIRM_SUFFIX)) + CONFIRM_SUFFIX,
                    confirm="Approve",
                    deny="Cancel",
                ),
            ),
            ButtonElement(text="Edit", action_id=EDIT_ACTION_ID, value=card.approval_id),
            ButtonElement(text="Reject", action_id=REJECT_ACTION_ID, value=card.approval_id, style="danger"),
        ],
    )
    summary = quote(card.summary, SUMMARY_MAX)
    text = f"Approval needed ({card.approval_id}): {summary}, requested by <@{card.requester}>"
    votes: list[Block] = []
    if card.voters:
        so_far = ", ".join(f"<@{voter}>" for voter in card.voters)
        votes = [_section("aios_votes", f"*{len(card.voters)} of {card.quorum} approvals:* {so_far}")]
    return text, _render([*_card_blocks(card, "Approval needed"), *votes, buttons])


def approval_closed(card: ApprovalCard, outcome: str, actor: str | None, at: datetime) -> Message:
    """The approval request after it was decided or expired: the same card, the buttons replaced by the outcome."""
    icons = {"approved": ":white_check_mark:", "rejected": ":no_entry_sign:", "expired": ":hourglass:"}
    deciders = [*card.voters, *([actor] if actor and actor not in card.voters else [])]
    who = f" by {mentions(deciders, ', ')}" if deciders else ""
    line = f"{icons.get(outcome, '')} *{outcome.capitalize()}*{who} at {_when(at, card.zone)}".strip()
    text = f"{quote(card.summary, SUMMARY_MAX)}: {outcome}{who} ({card.approval_id})"
    outcome_block = _section("aios_outcome", line)
    blocks = _card_blocks(card, f"Approval request {outcome}", decided=True)
    return text, _render([*blocks, outcome_block])


def notice(text: str, context: str | None = None) -> Message:
    """A plain reply in a thread, with an optional small-print line (ids, rule). Both are mrkdwn: whatever
    others wrote in them must already be escaped (``runtime.mrkdwn.escape``)."""
    blocks: list[Block] = [_section("aios_notice", text)]
    if context:
        blocks.append(_context("aios_notice_context", context))
    return truncate(text, FALLBACK_TEXT_MAX), _render(blocks)


def budget_blocked(run_id: str, why: str) -> Message:
    """A run stopped by a hard budget limit (``why``: plain text), with the button that asks the budget's
    approvers for more."""
    button = ButtonElement(text="Request budget", action_id=REQUEST_BUDGET_ACTION_ID, value=run_id)
    text = f":octagonal_sign: {escape(why)}"
    return truncate(text, FALLBACK_TEXT_MAX), _render(
        [
            _section("aios_budget", text),
            ActionsBlock(block_id="aios_budget_actions", elements=[button]),
            _context("aios_budget_context", f"`{run_id}`"),
        ]
    )


def done(
    text: str, context: str, undo: str | None = None, reported_failed: ReportedFailed | None = None
) -> Message:
    """An executed action's "Done" reply (mrkdwn, escaped by the caller), with an Undo button when the action
    has an inverse: ``undo`` is its action id (A-…), the button's whole value. ``reported_failed``: it was told
    as failed before, and its thread must not be left saying both without a word."""
    if reported_failed is not None:
        # First, so that a long result cut to Slack's limit never takes the warning with it.
        text = f"{_after_all(reported_failed)}\n{text}"
    if undo is None:
        return notice(text, context)
    button = ButtonElement(
        text="Undo",
        action_id=UNDO_ACTION_ID,
        value=undo,
        confirm=ConfirmObject(
            title="Undo this action?",
            text=f"This asks to take {undo} back. The undo is judged by the policy like any other action.",
            confirm="Ask to undo",
            deny="Cancel",
        ),
    )
    return truncate(text, FALLBACK_TEXT_MAX), _render(
        [
            _section("aios_notice", text),
            ActionsBlock(block_id="aios_done_actions", elements=[button]),
            _context("aios_notice_context", f"{context} · `/aios undo {undo}` takes it back"),
        ]
    )


def _after_all(reported: ReportedFailed) -> str:
    said = [":warning: This took effect after all, after it was reported failed."]
    if reported.undone or reported.being_undone:
        steps = ", ".join(reported.undone + tuple(f"{step} (being undone)" for step in reported.being_undone))
        said.append(
            f"The run's earlier steps were undone after a failure ({steps}): ask again for what should still be done."
        )
    if reported.handed_to_a_person:
        said.append(
            "Earlier steps that cannot be undone were handed to a person after a failure"
            f" ({', '.join(reported.handed_to_a_person)})."
        )
    return " ".join(said)


TAKE_OVER_ACTION_ID = "aios_take_over"


def _escalation_blocks(message: EscalationMessage) -> tuple[str, list[Block]]:
    asked = f"{message.people} " if message.people else ""
    # The fallback text carries the reason and the question: it is what the agent reads back as the thread.
    text = (
        f":raising_hand: {asked}I need a person for this rather than a guess. "
        f"Why: {quote(message.reason, REASON_MAX)} Question: {quote(message.question, REASON_MAX)}"
    )
    return text, [
        _section("aios_escalation", text),
        _context(
            "aios_escalation_context",
            f"{message.agent} · `{message.run_id}` · answer by mentioning me in this thread, or take it over",
        ),
    ]


def escalation(message: EscalationMessage) -> Message:
    """A run handed to people: who is asked, why, what to answer, and the button to take it over."""
    text, blocks = _escalation_blocks(message)
    button = ButtonElement(
        text="Take over",
        action_id=TAKE_OVER_ACTION_ID,
        value=message.run_id,
        confirm=ConfirmObject(
            title="Take this over?",
            text=f"{message.run_id} closes and the agent stops; you handle the request yourself.",
            confirm="Take over",
            deny="Cancel",
        ),
    )
    actions = ActionsBlock(block_id="aios_escalation_actions", elements=[button])
    return truncate(text, FALLBACK_TEXT_MAX), _render([*blocks, actions])


def escalation_closed(message: EscalationMessage, outcome: str, actor: str, at: datetime) -> Message:
    """The escalation after someone answered it or took it over: the button replaced by the outcome."""
    text, blocks = _escalation_blocks(message)
    line = f"*{outcome.capitalize()}* by <@{actor}> at {_when(at)}"
    return truncate(text, FALLBACK_TEXT_MAX), _render([*blocks, _section("aios_escalation_outcome", line)])
