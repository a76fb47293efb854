"""`/aios why` in Slack: the explanation as sections within Block Kit's limits, and buttons that open the why of
the run, the approval and the execution it is about (each answered privately, like the command)."""

from __future__ import annotations

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from bot.blocks import SECTION_TEXT_MAX, Message, _render, _section
from bot.explain import RelatedRecords
from runtime.mrkdwn import truncate

WHY_OPEN_PREFIX = "aios_why_open_"  # + run, approval, execution: action ids are unique within a block
MESSAGE_TEXT_MAX = 40_000  # Slack cuts a message's text there; the text is what notifications and search show
WHY_SECTIONS_MAX = 45  # of Block Kit's 50 blocks a message, with room for the buttons and the cut notice
CUT_NOTICE = (
    "_The rest is longer than a Slack message takes; `aios why {record}` in a terminal prints all of it._"
)


def why_message(record: str, text: str, related: RelatedRecords) -> Message:
    """The why of ``record`` (mrkdwn lines, as `explain` writes them) and a button for each related record other
    than ``record`` itself."""
    sections = _sections(text)
    if len(sections) > WHY_SECTIONS_MAX:
        sections = [*sections[:WHY_SECTIONS_MAX], _section("aios_why_cut", CUT_NOTICE.format(record=record))]
    buttons = [
        ButtonElement(text=f"{label} {target}", action_id=WHY_OPEN_PREFIX + kind, value=target)
        for kind, label, target in (
            ("run", "Run", related.run),
            ("approval", "Approval", related.approval),
            ("execution", "Execution", related.execution),
        )
        if target is not None and target != record
    ]
    blocks: list[Block] = [*sections]
    if buttons:
        blocks.append(ActionsBlock(block_id="aios_why_open", elements=buttons))
    return truncate(text, MESSAGE_TEXT_MAX), _render(blocks)


def _sections(text: str) -> list[Block]:
    """Whole lines gathered into sections of at most Slack's 3,000 characters (a longer line is cut)."""
    chunks: list[str] = []
    for whole in text.splitlines():
        line = truncate(whole, SECTION_TEXT_MAX)
        if chunks and len(chunks[-1]) + 1 + len(line) <= SECTION_TEXT_MAX:
            chunks[-1] += "\n" + line
        else:
            chunks.append(line)
    return [_section(f"aios_why_{index}", chunk) for index, chunk in enumerate(chunks) if chunk.strip()]
