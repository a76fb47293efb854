"""Offline grammar for posts (tools ``cms_create_draft``, ``cms_publish``)."""

from __future__ import annotations

import re

from agents.llm import LLMReply, ToolCall
from agents.offline.grammar import Grammar

_TITLE = re.compile(
    r"\bdraft\b.*?\b(?:titled|called|named|:)\s*[\"“']?(.+?)[\"”']?(?:\s+with body\s+[\"“'](.+?)[\"”'])?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_PUBLISH = re.compile(
    r"\bpublish\s+(?:the\s+)?(?:post\s+)?([a-z0-9]+(?:-[a-z0-9]+)*)\b(?:\s+(?:at|on)\s+(\S+))?", re.IGNORECASE
)
_SCHEDULE = re.compile(
    r"\bschedule\s+(?:the\s+)?(?:post\s+)?([a-z0-9]+(?:-[a-z0-9]+)*)\s+(?:for|at|on)\s+(\S+)", re.IGNORECASE
)


def plan(text: str, system: str, offered: set[str]) -> LLMReply | None:
    if "cms_publish" in offered:
        if match := _SCHEDULE.search(text):
            return LLMReply(
                f"Schedule {match.group(1)} for {match.group(2)} as asked.",
                [ToolCall("", "cms_publish", {"slug": match.group(1).lower(), "publish_at": match.group(2)})],
            )
        if match := _PUBLISH.search(text):
            params: dict[str, object] = {"slug": match.group(1).lower()}
            if match.group(2):
                params["publish_at"] = match.group(2)
            return LLMReply(f"Publish {params['slug']} as asked.", [ToolCall("", "cms_publish", params)])
    if "cms_create_draft" in offered and (match := _TITLE.search(text)):
        params = {"title": match.group(1).strip()}
        if match.group(2):
            params["body"] = match.group(2)
        return LLMReply(
            f"Create a draft titled “{params['title']}”.", [ToolCall("", "cms_create_draft", params)]
        )
    return None


def examples(offered: set[str]) -> list[str]:
    if "cms_create_draft" not in offered:
        return []
    return [
        '`draft a post titled "Spring lookbook"`',
        "`publish post spring-lookbook`",
        "`schedule post spring-lookbook for 2026-12-01T09:00:00Z`",
    ]


GRAMMAR = Grammar(plan, examples)
