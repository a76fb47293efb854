"""One review card for a run whose actions wait for approval: the actions as readable lines, and Approve all /
Reject all (the buttons carry the run id). A month of planned posts is one card and one click, not nine.

Each line says what became of its approval, so the card read after the click is its outcome. Past
``LINES_SHOWN`` lines the card says how many more there are; `/aios pending` lists every request.
"""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ConfirmObject, HeaderBlock

from bot.blocks import (
    FALLBACK_TEXT_MAX,
    REASON_MAX,
    SECTION_TEXT_MAX,
    Message,
    _context,
    _render,
    _section,
)
from runtime.mrkdwn import ELLIPSIS, quote, truncate
from runtime.notices import ReviewLine, RunReview

APPROVE_ALL_ACTION_ID = "aios_approve_all"
REJECT_ALL_ACTION_ID = "aios_reject_all"

LINES_SHOWN = 30  # well inside Block Kit's 50 blocks and 3,000 characters a section
LINE_TEXT_MAX = 300
NOTE_MAX = 300


_ICONS = {
    "pending": ":white_circle:",
    "approved": ":white_check_mark:",
    "rejected": ":no_entry_sign:",
    "expired": ":hourglass:",
}


def _line(line: ReviewLine) -> str:
    outcome = "" if line.status == "pending" else f" — {line.status}"
    if line.decided_by and line.status in ("approved", "rejected"):
        outcome += f" by <@{line.decided_by}>"
    note = (
        f" — still waiting: {truncate(line.note, NOTE_MAX)}" if line.note and line.status == "pending" else ""
    )
    edited = f" · :pencil2: edited by <@{line.edited_by}>" if line.edited_by else ""
    return (
        f"{_ICONS.get(line.status, '')} `{line.approval_id}` {quote(line.text, LINE_TEXT_MAX)}{edited}{outcome}"
        f"{note}"
    )


def _line_sections(lines: tuple[ReviewLine, ...]) -> list[Block]:
    """The lines in as few sections as fit, then how many were left off."""
    sections: list[Block] = []
    chunk: list[str] = []
    for line in lines[:LINES_SHOWN]:
        text = _line(line)
        if chunk and sum(len(t) + 1 for t in chunk) + len(text) > SECTION_TEXT_MAX:
            sections.append(_section(f"aios_review_lines_{len(sections)}", "\n".join(chunk)))
            chunk = []
        chunk.append(text)
    if chunk:
        sections.append(_section(f"aios_review_lines_{len(sections)}", "\n".join(chunk)))
    hidden = lines[LINES_SHOWN:]
    if hidden:
        waiting = sum(1 for line in hidden if line.status == "pending")
        sections.append(
            _section(
                "aios_review_more",
                f"…and {len(hidden)} more ({waiting} still waiting); `/aios pending` lists every request.",
            )
        )
    return sections


def run_review(review: RunReview) -> Message:
    """The card; its buttons stay while any line still waits, and decide only those."""
    waiting = sum(1 for line in review.lines if line.status == "pending")
    total = len(review.lines)
    header = f"Review: {total} actions" if waiting else f"Reviewed: {total} actions"
    why = "*Why the agent proposes them:* "
    blocks: list[Block] = [
        HeaderBlock(block_id="aios_header", text=header),
        _section(
            "aios_review_intro",
            f"Requested by <@{review.requester}> · `{review.run_id}` · {waiting} of {total} waiting\n"
            + why
            + _whole_words(quote(review.rationale, REASON_MAX + 1), REASON_MAX),
        ),
        *_line_sections(review.lines),
        _context(
            "aios_review_context",
            f"Approvers: {', '.join(review.approvers)} · each request is checked as if it were clicked on its "
            "own; one you may not decide stays waiting",
        ),
    ]
    if waiting:
        blocks.append(_buttons(review.run_id, waiting))
    text = f"Review needed ({review.run_id}): {waiting} of {total} actions requested by <@{review.requester}>"
    if not waiting:
        text = f"Reviewed ({review.run_id}): {total} actions requested by <@{review.requester}>"
    return truncate(text, FALLBACK_TEXT_MAX), _render(blocks)


def _whole_words(quoted: str, limit: int) -> str:
    """Quoted text cut at ``limit`` after its last whole word, with … (never inside an entity or a word)."""
    if len(quoted) <= limit:
        return quoted
    kept = truncate(quoted, limit).removesuffix(ELLIPSIS)
    space = kept.rfind(" ")
    return (kept[:space] if space > limit // 2 else kept).rstrip() + ELLIPSIS


def _buttons(run_id: str, waiting: int) -> ActionsBlock:
    return ActionsBlock(
        block_id="aios_review_decision",
        elements=[
            ButtonElement(
                text="Approve all",
                action_id=APPROVE_ALL_ACTION_ID,
                value=run_id,
                style="primary",
                confirm=ConfirmObject(
                    title="Approve all?",
                    text=f"This approves the {waiting} requests still waiting in {run_id} that you may "
                    "approve; each runs as soon as it is approved.",
                    confirm="Approve all",
                    deny="Cancel",
                ),
            ),
            ButtonElement(
                text="Reject all",
                action_id=REJECT_ALL_ACTION_ID,
                value=run_id,
                style="danger",
                confirm=ConfirmObject(
                    title="Reject all?",
                    text=f"This rejects the {waiting} requests still waiting in {run_id} that you may "
                    "decide; nothing of them is done.",
                    confirm="Reject all",
                    deny="Cancel",
                ),
            ),
        ],
    )
