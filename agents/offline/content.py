"""Offline grammar for posts (tools ``cms_create_draft``, ``cms_publish``, and ``wordpress_update`` when offered),
and the social snippets the bot asks for once a post is live (``social_post``)."""

from __future__ import annotations

import re

from agents.dates import UnreadableTime, describe, read_time
from agents.llm import LLMReply, ToolCall
from agents.offline.grammar import Grammar
from agents.publishing_calendar import read_context
from agents.social_snippets import SnippetRequest, parse_request, snippet

_TITLE = re.compile(
    r"\bdraft\b.*?\b(?:titled|called|named|:)\s*[\"“']?(.+?)[\"”']?(?:\s+with body\s+[\"“'](.+?)[\"”'])?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_PUBLISH = re.compile(
    r"\bpublish\s+(?:the\s+)?(?:post\s+)?([a-z0-9]+(?:-[a-z0-9]+)*)\b(?:\s+(?:at|on)\s+(.+?)[\s.!]*$)?",
    re.IGNORECASE | re.DOTALL,
)
_UPDATE = re.compile(
    r"\bupdate\s+(?:the\s+)?(?:post\s+)?([a-z0-9]+(?:-[a-z0-9]+)*)\s+((?:title|body|excerpt)\b.*)$",
    re.IGNORECASE | re.DOTALL,
)
_FIELD = re.compile(
    r"\b(title|body|excerpt)\s+[\"“](.*?)[\"”](?=\s+(?:title|body|excerpt)\b|\s*$)", re.IGNORECASE | re.DOTALL
)
_SCHEDULE = re.compile(
    r"\bschedule\s+(?:the\s+)?(?:post\s+)?([a-z0-9]+(?:-[a-z0-9]+)*)\s+(?:for|at|on)\s+(.+?)[\s.!]*$",
    re.IGNORECASE | re.DOTALL,
)


def plan(text: str, system: str, offered: set[str]) -> LLMReply | None:
    if "social_post" in offered and (request := parse_request(text)) is not None:
        return _snippets(request)
    # First: a new body or title may well say "publish" or "draft".
    if "wordpress_update" in offered and (match := _UPDATE.search(text.strip())):
        return _update(match.group(1).lower(), match.group(2))
    if "cms_publish" in offered and (match := _SCHEDULE.search(text) or _PUBLISH.search(text)):
        slug, when = match.group(1).lower(), match.group(2)
        if when is None:
            return LLMReply(f"Publish {slug} as asked.", [ToolCall("", "cms_publish", {"slug": slug})])
        return _schedule(slug, when, system)
    if "cms_create_draft" in offered and (match := _TITLE.search(text)):
        params = {"title": match.group(1).strip()}
        if match.group(2):
            params["body"] = match.group(2)
        return LLMReply(
            f"Create a draft titled “{params['title']}”.", [ToolCall("", "cms_create_draft", params)]
        )
    return None


def _schedule(slug: str, when: str, system: str) -> LLMReply:
    """Read the time in the team's zone and say what was understood, exactly; an unreadable one proposes
    nothing, and the reply says what is accepted."""
    zone, now = read_context(system)
    try:
        moment = read_time(when, zone, now)
    except UnreadableTime as exc:
        return LLMReply(f"I didn't schedule {slug}: {exc}.")
    return LLMReply(
        f"Schedule {slug} to go out {describe(moment, zone)}.",
        [ToolCall("", "cms_publish", {"slug": slug, "publish_at": moment.isoformat()})],
    )


def _snippets(request: SnippetRequest) -> LLMReply:
    """One post per network: the title and excerpt as written (a grammar cannot rewrite them in a voice; the
    notes are a model's to follow), cut at a word boundary to leave room for the link."""
    calls = [
        ToolCall(
            "",
            "social_post",
            {
                "network": network,
                "text": snippet(request, network),
                "post": request.slug,
                "publish_at": request.post_at.isoformat(),
            },
        )
        for network in request.networks
    ]
    return LLMReply(
        f"Promote {request.slug} on {', '.join(request.networks)} with its title, excerpt and link, "
        f"at {request.post_at.isoformat()}.",
        calls,
    )


def _update(slug: str, changes: str) -> LLMReply:
    """``title "…"``, ``body "…"`` and ``excerpt "…"``, in any order; anything else says how to write it."""
    fields = {name.lower(): value for name, value in _FIELD.findall(changes)}
    if not fields or _FIELD.sub("", changes).strip():
        return LLMReply(
            f"I didn't change {slug}: say what to change, each in quotes, like "
            f'`update post {slug} title "New title"` (or body "…", excerpt "…").'
        )
    changed = ", ".join(fields)
    return LLMReply(
        f"Update the {changed} of {slug} as asked.",
        [ToolCall("", "wordpress_update", {"slug": slug, **fields})],
    )


def examples(offered: set[str]) -> list[str]:
    found = []
    if "cms_create_draft" in offered:
        found += [
            '`draft a post titled "Spring lookbook"`',
            "`publish post spring-lookbook`",
            "`schedule post spring-lookbook for next Monday 9am`",
        ]
    if "wordpress_update" in offered:
        found += ['`update post spring-lookbook title "Spring lookbook 2027"` (or body "…", excerpt "…")']
    return found


GRAMMAR = Grammar(plan, examples)
