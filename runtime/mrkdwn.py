"""Slack mrkdwn from text that people, other apps and models wrote: escaped, so it is shown and never acted on.

In Slack's mrkdwn `<!channel>`, `<!here>`, `<!subteam^S…>` and `<@U…>` notify people and `<https://…|label>`
disguises a link. Slack's rule is to escape `&`, `<` and `>` as entities in such text; the mentions we add
ourselves are written around the escaped text, so they still work. Text is escaped once, where it enters a
message, and shortened afterwards (the Block Kit builders shorten what they are given to Slack's limits).
"""

from __future__ import annotations

from collections.abc import Iterable

ELLIPSIS = "…"


def escape(text: str) -> str:
    """Someone else's text as mrkdwn that shows it as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(mrkdwn: str) -> str:
    """What a person reads, for places that print mrkdwn as plain text (the terminal)."""
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def truncate(mrkdwn: str, limit: int) -> str:
    """At most ``limit`` characters, ending with … when shortened. The cut never splits an entity (`&amp;`)
    or a `<…>` sequence, which would show as garbage or swallow the rest of the message."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    kept = mrkdwn[: limit - len(ELLIPSIS)]
    entity = kept.rfind("&")
    if entity != -1 and ";" not in kept[entity:]:
        kept = kept[:entity]
    bracket = kept.rfind("<")
    if bracket != -1 and ">" not in kept[bracket:]:
        kept = kept[:bracket]
    return kept + ELLIPSIS


def quote(text: str, limit: int) -> str:
    """Someone else's text, escaped and shortened to ``limit`` characters, for a message we compose."""
    return truncate(escape(text), limit)


def mentions(members: Iterable[str], separator: str = " ") -> str:
    """Mentions that notify these people: users as <@U…>, user groups (their ids start with S) as
    <!subteam^S…>."""
    return separator.join(f"<!subteam^{m}>" if m.startswith("S") else f"<@{m}>" for m in members)
