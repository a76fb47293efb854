"""Patterns of request text that more than one agent or grammar reads."""

from __future__ import annotations

import re

# Slack writes an email address as <mailto:a@b.com|a@b.com>; the address itself is what is meant.
MAILTO = re.compile(r"<mailto:([^|>]+)(?:\|[^>]*)?>")
# A polite opening before the verb of a request ("please", "can you"), anchored at the start of the text.
POLITE = r"^\W*(?:(?:please|pls|can\s+you|could\s+you)\s+)?"
# The first name an agent's context gives a customer the shop holds no name for.
UNNAMED = "(unnamed)"
