"""Which record one of our Slack messages is about, read from the message as Slack hands it back (a message
shortcut carries it: ``ts``, ``text``, ``blocks``, ``bot_id``…).

Only the parts we compose carry ids we can trust: the small print under a card or a reply (`A-3` · `D-4`) and
the value of one of our buttons. Sections and the other context blocks are skipped: they quote what people and
models wrote (an intent, an edit's values), and an intent that says "`E-9`" must not make its thread's first
message about E-9. A message is ours only when our bot
posted it; anything else, whatever it says, is about no record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from storage.ids import MAX_KEY

# The most specific first: an execution or an approval is about one action, a run about several, an intent
# about the whole thread. A message with several ids of one kind (the review card lists each approval) is
# about none of them in particular, so the next kind decides.
SPECIFICITY = ("E", "AP", "D", "A", "R", "I")
# The context blocks (by the block ids bot.blocks gives them) whose every id we wrote.
SMALL_PRINT = frozenset(
    {"aios_policy", "aios_notice_context", "aios_budget_context", "aios_escalation_context"}
)
_BACKTICKED_ID = re.compile(r"`(AP|[IRADE])-(\d{1,10})`")
_BUTTON_ID = re.compile(r"^(AP|[IRADE])-(\d{1,10})$")


def is_ours(message: Mapping[str, Any], bot_id: str | None) -> bool:
    """Whether our bot posted ``message`` (Slack marks a bot's message with its ``bot_id``). Without our own bot
    id nothing counts as ours."""
    return bool(bot_id) and message.get("bot_id") == bot_id


def ids_in_message(message: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The record ids in the message's small print and on its ``aios_`` buttons, distinct, as they appear."""
    found: list[tuple[str, int]] = []
    blocks = message.get("blocks")
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, Mapping):
            continue
        block_id = block.get("block_id")
        if block.get("type") == "context" and isinstance(block_id, str) and block_id in SMALL_PRINT:
            for element in _elements(block):
                text = element.get("text")
                if element.get("type") == "mrkdwn" and isinstance(text, str):
                    found += [(m.group(1), int(m.group(2))) for m in _BACKTICKED_ID.finditer(text)]
        elif block.get("type") == "actions":
            found += [found_id for element in _elements(block) if (found_id := _button_id(element))]
    return list(dict.fromkeys((prefix, key) for prefix, key in found if 0 < key <= MAX_KEY))


def most_specific(ids: list[tuple[str, int]]) -> str | None:
    """The id of the most specific kind that the message names exactly one of (``AP-2``), or None."""
    for prefix in SPECIFICITY:
        keys = [key for kind, key in ids if kind == prefix]
        if len(keys) == 1:
            return f"{prefix}-{keys[0]}"
    return None


def record_of_message(message: Mapping[str, Any], bot_id: str | None) -> str | None:
    """The record our message is about, by the ids it carries; None for a message that is not ours or that
    names no single record."""
    if not is_ours(message, bot_id):
        return None
    return most_specific(ids_in_message(message))


def _button_id(element: Mapping[str, Any]) -> tuple[str, int] | None:
    """The record id one of our buttons carries as its whole value (Approve: `AP-2`, Undo: `A-3`)."""
    action_id, value = element.get("action_id"), element.get("value")
    if not (isinstance(action_id, str) and action_id.startswith("aios_") and isinstance(value, str)):
        return None
    match = _BUTTON_ID.match(value)
    return (match.group(1), int(match.group(2))) if match else None


def _elements(block: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    elements = block.get("elements")
    return [e for e in elements if isinstance(e, Mapping)] if isinstance(elements, list) else []
