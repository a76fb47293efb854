"""Social snippets for a post that went live: the request the bot files for the content agent, and the
deterministic snippet the offline grammar writes from it.

The request is plain text (it is what `/aios why` shows as the run's request) with one fact a line, so that the
offline grammar and a model read the same thing: the post's slug, when the snippets go out, the networks, and the
post's title, excerpt and link (title and excerpt as JSON strings, which no title can break out of).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.social_limits import LIMITS, Limit, cut_to_fit

_FIRST = re.compile(
    r"^Promote the post ([a-z0-9]+(?:-[a-z0-9]+)*): one social post per network, each to go out at (\S+)\.$"
)
_FIELD = re.compile(r"^(networks|title|excerpt|link): (.*)$")
_TAG = re.compile(r"<[^>]*>")
# A body's opening words are its excerpt, cut at a word: more would be cut from every snippet anyway.
_EXCERPT = Limit(400, "characters", len)


@dataclass(frozen=True)
class SnippetRequest:
    slug: str
    post_at: datetime
    networks: tuple[str, ...]
    title: str
    excerpt: str
    link: str

    def text(self) -> str:
        return "\n".join(
            [
                f"Promote the post {self.slug}: one social post per network, each to go out at "
                f"{self.post_at.isoformat()}.",
                f"networks: {', '.join(self.networks)}",
                f"title: {json.dumps(self.title, ensure_ascii=False)}",
                f"excerpt: {json.dumps(self.excerpt, ensure_ascii=False)}",
                f"link: {self.link}",
            ]
        )


def parse_request(text: str) -> SnippetRequest | None:
    """The request ``text`` is, or None when it is another kind of request (or garbled)."""
    first, _, rest = text.strip().partition("\n")
    head = _FIRST.match(first.strip())
    if head is None:
        return None
    fields = {m.group(1): m.group(2) for line in rest.splitlines() if (m := _FIELD.match(line.strip()))}
    try:
        post_at = datetime.fromisoformat(head.group(2))
        title, excerpt = json.loads(fields["title"]), json.loads(fields["excerpt"])
        networks = tuple(n.strip() for n in fields["networks"].split(",") if n.strip())
        link = fields["link"].strip()
    except (KeyError, ValueError):
        return None
    if not isinstance(title, str) or not isinstance(excerpt, str) or not networks:
        return None
    if post_at.tzinfo is None or any(network not in LIMITS for network in networks):
        return None
    return SnippetRequest(head.group(1), post_at, networks, title, excerpt, link)


def excerpt_of(body: str) -> str:
    """A body's opening words as an excerpt: tags and comments out, white space collapsed, cut at a word."""
    text = _TAG.sub(" ", re.sub(r"<!--.*?-->", " ", body, flags=re.DOTALL))
    return cut_to_fit(text, _EXCERPT)


def snippet(request: SnippetRequest, network: str) -> str:
    """The title and the excerpt, cut at a word boundary to leave room for the link, within the network's
    limit; the link always whole (unless it alone is past the limit)."""
    head = request.title.strip()
    excerpt = request.excerpt.strip()
    if excerpt and not excerpt.lower().startswith(head.lower()):
        head = f"{head}: {excerpt}" if head else excerpt
    elif excerpt:
        head = excerpt
    return cut_to_fit(head or request.slug, LIMITS[network], suffix=f"\n\n{request.link}")


@dataclass(frozen=True)
class SocialSettings:
    """Where snippets go after a post goes live, how long after, and the post's address (``{slug}`` in it)."""

    networks: tuple[str, ...]
    delay: timedelta
    post_url: str

    def link(self, slug: str) -> str:
        return self.post_url.replace("{slug}", slug)
