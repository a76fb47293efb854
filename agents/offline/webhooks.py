"""Offline grammar for webhooks (tool ``webhook_post``): a JSON object, and the configured webhook it goes to."""

from __future__ import annotations

import json
import re
from typing import Any

from agents.llm import LLMReply, ToolCall
from agents.offline.grammar import Grammar
from agents.patterns import POLITE

TOOL = "webhook_post"
_ASKS = re.compile(rf"{POLITE}(?:post|send|notify)\b|\bwebhooks?\b", re.IGNORECASE)
# Written by the tools agent: ``configured webhooks (…): audit, crm``.
_CONFIGURED = re.compile(r"^configured webhooks\b[^:\n]*: (.+)$", re.MULTILINE)
# A name, not one of the words around it (``to the webhook``, ``the crm webhook with …``).
_NAME = r"(?!(?:webhooks?|the|a|an|with|that|and)\b)(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})"
# Where a request names its webhook, best first: ``webhook crm``, ``to (the) crm``, ``notify (the) crm``.
_NAMED = (
    re.compile(rf"\bwebhook\s+(?:named\s+|called\s+)?{_NAME}", re.IGNORECASE),
    re.compile(rf"\bto\s+(?:the\s+)?(?:webhook\s+)?{_NAME}", re.IGNORECASE),
    re.compile(rf"\bnotify\s+(?:the\s+)?(?:webhook\s+)?{_NAME}", re.IGNORECASE),
)
_CURLY_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"'})
EXAMPLE = '`post {"event": "refund", "order": 1001} to webhook crm`'


def plan(text: str, system: str, offered: set[str]) -> LLMReply | None:
    if TOOL not in offered or not _ASKS.search(text):
        return None
    configured = _configured(system)
    # Slack escapes &, < and > in what people write.
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    body = _find_body(text)
    if isinstance(body, str):
        return LLMReply(body)
    parsed, span = body
    webhook = _find_webhook(text[: span[0]] + " " + text[span[1] :], configured)
    if webhook is None or webhook not in configured:
        which = f"There is no webhook named “{webhook}”" if webhook else "Which webhook should it go to?"
        return LLMReply(f"{which}; {_listing(configured)}, so I proposed nothing.")
    return LLMReply(
        f"Post the JSON object to webhook {webhook} as asked.",
        [ToolCall("", TOOL, {"webhook": webhook, "body": parsed})],
    )


def examples(offered: set[str]) -> list[str]:
    if TOOL not in offered:
        return []
    return [EXAMPLE, '`notify crm {"event": "restock", "sku": "MUG-1"}`']


def _configured(system: str) -> list[str]:
    found = _CONFIGURED.search(system)
    return [name.strip() for name in found.group(1).split(",")] if found else []


def _listing(configured: list[str]) -> str:
    if not configured:
        return "no webhooks are configured (AIOS_WEBHOOKS)"
    return f"the configured ones are {', '.join(configured)}"


def _find_body(text: str) -> tuple[dict[str, Any], tuple[int, int]] | str:
    """The first JSON value in ``text`` and where it is, or what is wrong with it, said with an example."""
    start = next((i for i, char in enumerate(text) if char in "{["), None)
    if start is None:
        return f"I need the body as a JSON object, like {EXAMPLE}, so I proposed nothing."
    decoder = json.JSONDecoder()
    try:
        value, end = decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        try:  # some keyboards curl the quotes; the translation keeps every position
            value, end = decoder.raw_decode(text.translate(_CURLY_QUOTES), start)
        except json.JSONDecodeError:
            where = exc.pos - start + 1
            return f"The body is not valid JSON ({exc.msg} at character {where}); write it like {EXAMPLE}."
    if not isinstance(value, dict):
        return f"The body must be a JSON object ({{…}}), not a list; write it like {EXAMPLE}."
    return value, (start, end)


def _find_webhook(text: str, configured: list[str]) -> str | None:
    """The configured webhook the request names (in any letter case), else the first name it gives."""
    by_folded = {name.casefold(): name for name in configured}
    said: list[str] = []
    for pattern in _NAMED:
        for match in pattern.finditer(text):
            name = match.group("name").rstrip(".-")
            if name.casefold() in by_folded:
                return by_folded[name.casefold()]
            said.append(name)
    return said[0] if said else None


GRAMMAR = Grammar(plan, examples)
