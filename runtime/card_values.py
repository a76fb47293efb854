"""How an action's parameters are told to people, on its card and in the thread: what each is called, and each
value as mrkdwn (money as dollars, times in the team's zone, text escaped)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from agents.dates import UTC_ZONE, describe
from connectors.mcp_tools import McpToolAction
from runtime.mrkdwn import escape, quote
from runtime.notices import CardEdit

SHORT_VALUE_MAX = 200  # a longer value gets a section of its own on a card
# Amounts of money are floats named like this in the action models (whole cents, in the shop's currency).
MONEY_FIELDS = frozenset({"amount", "shipping", "price", "total"})
_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def field_labels(action: type[BaseModel]) -> dict[str, str]:
    """What a card calls each parameter of an action: the field's title (an MCP tool's from its schema), else
    its name in words."""
    if issubclass(action, McpToolAction):
        properties = action.input_schema.get("properties") or {}
        return {
            name: str(schema.get("title") or humanise(name)) if isinstance(schema, dict) else humanise(name)
            for name, schema in properties.items()
        }
    return {name: info.title or humanise(name) for name, info in action.model_fields.items()}


def humanise(name: str) -> str:
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def edit_changes(edit: CardEdit, labels: Mapping[str, str], zone: ZoneInfo = UTC_ZONE) -> str:
    """What an edit changed, as mrkdwn: each parameter's label with its value before and after; a value too long
    for a line is only said to have changed."""
    parts = []
    for name, before, after in edit.changes:
        label = quote(labels.get(name) or humanise(name), 100)
        was, now = told_value(name, before, zone), told_value(name, after, zone)
        if was is None or now is None or len(was) + len(now) > SHORT_VALUE_MAX:
            parts.append(f"{label} changed")
        else:
            parts.append(f"{label} {was} → {now}")
    return "; ".join(parts)


def told_value(name: str, value: Any, zone: ZoneInfo) -> str | None:
    """A short value as mrkdwn, or None when it needs a block of its own (several lines, nested values)."""
    if value is None:
        return "_none_"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"${value:,.2f}" if name in MONEY_FIELDS else str(value)
    if isinstance(value, str):
        if "\n" in value:
            return None
        if _ISO_TIME.match(value):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                return escape(value)  # looked like a time and is not one: shown as written
            # The action models read a time without a zone as UTC; the card tells it the same way.
            return describe(moment if moment.tzinfo else moment.replace(tzinfo=UTC), zone)
        return escape(value)
    return None
