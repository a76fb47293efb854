"""The content agent: drafts, publishing and edits of posts, in the team's brand voice.

With WordPress configured, the posts a request names by slug, and a few posts on its topic, are looked up first
and put in the prompt, so that the model neither writes a post that exists already nor edits the wrong one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from agents.base import Agent, AgentPlan, Context, PlanRequest
from agents.dates import describe
from agents.llm import LLM
from agents.publishing_calendar import PublishingCalendar
from agents.social_snippets import parse_request
from connectors.actions import Action, CmsCreateDraft, CmsPublish, CmsUnpublish, WordpressUpdate
from connectors.errors import ConnectorError
from connectors.redaction import scrubbing
from connectors.registry import ConnectorRegistry
from connectors.social_limits import LIMITS
from connectors.wordpress_cms import PostSummary
from storage.brand_voice import BrandVoice
from storage.memory import MemoryStore

# Hyphenated words, or a word named as a post's slug: other single words are too common to look up as slugs.
_HYPHENATED = re.compile(r"\b[a-z0-9]+(?:-[a-z0-9]+)+\b")
_AFTER_POST = re.compile(
    r"\b(?:(?:publish|schedule|unpublish|update|edit|change|rename)\s+(?:the\s+)?post|slug(?:\s+is|:)?)\s+"
    r"([a-z0-9]+(?:-[a-z0-9]+)*)\b",
    re.IGNORECASE,
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_QUOTED = re.compile(r"[\"“]([^\"“”]{2,120})[\"”]")
_TOPIC = re.compile(r"\b(?:about|titled|called|named)\s+([^.,;:!?\"“”]{2,120})", re.IGNORECASE)
MAX_SLUGS = 5
MAX_MATCHES = 5
TOPIC_WORDS = 6  # WordPress finds posts having every word: a longer topic finds nothing


@runtime_checkable
class PostReader(Protocol):
    async def posts_by_slug(self, slugs: Sequence[str]) -> list[PostSummary]: ...

    async def search_posts(self, text: str, limit: int = 5) -> list[PostSummary]: ...


class ContentAgent(Agent):
    name = "content"
    action_names = ("cms.create_draft", "cms.publish")
    optional_action_names = ("wordpress.update", "social.post")

    def __init__(
        self,
        llm: LLM,
        registry: ConnectorRegistry,
        memory: MemoryStore,
        calendar: PublishingCalendar | None = None,
        voice: BrandVoice | None = None,
    ) -> None:
        super().__init__(llm, registry, memory)
        self.calendar = calendar or PublishingCalendar()
        # Every brand-voice note, not only those sharing words with a query (without it: a search).
        self.voice = voice
        reader = (
            registry.connector_for("wordpress.update") if "wordpress.update" in self.action_names else None
        )
        self._posts = reader if isinstance(reader, PostReader) else None

    async def plan(self, request: PlanRequest) -> AgentPlan:
        """The plan, whose rationale says exactly when each scheduled post goes out, whoever planned it."""
        plan = await super().plan(request)
        told = [
            f"{action.slug} goes out {when}."
            for action in plan.actions
            if isinstance(action, CmsPublish)
            and action.publish_at is not None
            and (when := describe(action.publish_at, self.calendar.zone)) not in plan.rationale
        ]
        return replace(plan, rationale="\n".join([plan.rationale, *told]).strip()) if told else plan

    async def context(self, request: PlanRequest) -> Context:
        """The team's brand-voice notes, remembered posts that match the request, and the posts it names."""
        context = Context(lines=[self.calendar.context_line()])
        team = request.call.team_id
        if self.voice is not None:
            context.add_memories(await self.voice.notes(team))
        else:
            context.add_memories(
                await self._memory.search(team, "brand voice style tone", kinds=["brand_voice"])
            )
        if (snippets := parse_request(request.text)) is not None:
            context.lines.extend(
                f"social network {network}: {LIMITS[network].describe()}" for network in snippets.networks
            )
        context.add_memories(await self._memory.search(team, request.text, limit=3, kinds=["post"]))
        if self._posts is not None:
            texts = [request.text, *(m.text for m in reversed(request.history))]
            try:
                # Read past the registry, so its redaction is applied here: no configured secret reaches a model.
                with scrubbing(self._registry.redactor):
                    lines = await _post_lines(self._posts, named_slugs(texts), topic(request.text))
            except ConnectorError as exc:
                lines = [f"WordPress posts could not be looked up just now ({exc})"]
            context.lines.extend(lines)
        return context

    async def refusal(
        self, action: Action, planned: Sequence[Action] = (), context: Context | None = None
    ) -> str | None:
        """A post drafted earlier in the same plan is not in the CMS yet, and still may be published or edited;
        a second draft under the same slug is certain to be refused. A publish must go out at a time to come,
        inside the publishing windows."""
        if isinstance(action, CmsPublish) and (late := self.calendar.refusal(action)):
            return late
        slug = _changed_slug(action)
        drafted = [a.effective_slug() for a in planned if isinstance(a, CmsCreateDraft)]
        if isinstance(action, CmsCreateDraft) and slug in drafted:
            return (
                f"this plan already drafts a post with the slug {slug!r}; give this one another title or slug"
            )
        if slug in drafted:
            return None
        return await super().refusal(action, planned, context)


def named_slugs(texts: Sequence[str]) -> list[str]:
    """Slugs the texts name (the first text's first), at most MAX_SLUGS."""
    found: list[str] = []
    for text in texts:
        candidates = [*_HYPHENATED.findall(text.lower()), *(m.lower() for m in _AFTER_POST.findall(text))]
        for slug in candidates:
            if not _DATE.match(slug) and slug not in found:
                found.append(slug)
    return found[:MAX_SLUGS]


def topic(text: str) -> str | None:
    """What to search posts for: a quoted title, or what the request is about; None when it names neither."""
    match = _QUOTED.search(text) or _TOPIC.search(text)
    if match is None:
        return None
    words = match.group(1).split()[:TOPIC_WORDS]
    return " ".join(words) or None


async def _post_lines(posts: PostReader, slugs: list[str], about: str | None) -> list[str]:
    """One line per post named or found (two requests at most: one by slug, one search)."""
    lines: list[str] = []
    seen: set[str] = set()
    if slugs:
        found = {post.slug: post for post in await posts.posts_by_slug(slugs)}
        for slug in slugs:
            post = found.get(slug)
            lines.append(
                _line(post) if post is not None else f"post {slug}: WordPress has no post with this slug"
            )
            seen.add(slug)
    if about is not None:
        matches = [post for post in await posts.search_posts(about, MAX_MATCHES) if post.slug not in seen]
        lines.append(
            f"WordPress posts matching {json.dumps(about, ensure_ascii=False)}:"
            if matches
            else f"No other WordPress post matches {json.dumps(about, ensure_ascii=False)}."
        )
        lines += [_line(post) for post in matches]
    return lines


def _line(post: PostSummary) -> str:
    """The post on one line; its title as a JSON string, so that no title can pass for another line."""
    when = {
        "published": f"published {post.date} UTC",
        "scheduled": f"scheduled for {post.date} UTC",
    }.get(post.status, f"{post.status}, last changed {post.date} UTC")
    return f"post {post.slug}: {when}, title {json.dumps(post.title, ensure_ascii=False)}"


def _changed_slug(action: Action) -> str | None:
    if isinstance(action, CmsCreateDraft):
        return action.effective_slug()
    if isinstance(action, CmsPublish | CmsUnpublish | WordpressUpdate):
        return action.slug
    return None
