"""The scheduling agent: plans a month of posts, as one planned draft per slot (``cms.create_draft`` with
``planned_for``), on the days asked, at the opening of the publishing windows, in the team's time zone.

Before planning it gathers what must not be planned again: titles of posts the team remembers (``post``
memories and their summaries), the team's planned drafts (waiting for approval, approved or made), and posts the
CMS holds on the topic. They reach the planner as ``Used before: "…"`` lines, and the times the planned drafts
hold as ``Slot taken: "…"`` lines, which the offline grammar reads back as a model would. A slug another planned
draft of the team holds is refused before anyone is asked, so two plans waiting at once cannot both book it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.base import Agent, Context, PlanRequest
from agents.content import PostReader, topic
from agents.dates import describe
from agents.llm import LLM
from agents.publishing_calendar import PublishingCalendar
from connectors.actions import Action, CmsCreateDraft
from connectors.errors import ConnectorError
from connectors.redaction import scrubbing
from connectors.registry import ConnectorRegistry
from policies.windows import is_open
from storage.brand_voice import BrandVoice
from storage.memory import MemoryHit, MemoryStore

USED_LINE = "Used before: "
TAKEN_LINE = "Slot taken: "  # a time another planned draft of the team holds (ISO 8601 with its offset)
ANGLE_PREFIX = "Angle: "  # a planned draft's body opens with its angle
USED_MEMORIES = 12
USED_POSTS = 10
_WRITTEN_TITLE = re.compile(r'Title given by [^:]*: ("(?:\\.|[^"\\])*")')

# The parameters of the team's cms.create_draft actions waiting for approval, approved or made.
HoldingDrafts = Callable[[str], Awaitable[Sequence[Mapping[str, Any]]]]
_holding_slugs: ContextVar[frozenset[str]] = ContextVar("holding_slugs", default=frozenset())


@dataclass(frozen=True)
class PlannedDraft:
    title: str
    slug: str
    planned_for: datetime


class SchedulingAgent(Agent):
    name = "scheduling"
    action_names = ("cms.create_draft",)

    def __init__(
        self,
        llm: LLM,
        registry: ConnectorRegistry,
        memory: MemoryStore,
        calendar: PublishingCalendar,
        holding_drafts: HoldingDrafts | None = None,
        voice: BrandVoice | None = None,
    ) -> None:
        super().__init__(llm, registry, memory)
        self.calendar = calendar
        self._holding_drafts = holding_drafts
        self.voice = voice
        reader = registry.connector_for("cms.create_draft")
        self._posts = reader if isinstance(reader, PostReader) else None

    async def context(self, request: PlanRequest) -> Context:
        """The zone, the clock and the windows; the brand-voice notes; then every headline or topic used before,
        as one line each, from remembered posts, their summaries, planned slots and the CMS."""
        context = Context(lines=[self.calendar.context_line()])
        team = request.call.team_id
        if self.voice is not None:
            context.add_memories(await self.voice.notes(team))
        about = topic(request.text) or request.text
        hits = [
            hit
            for hit in await self._memory.search(team, about, limit=USED_MEMORIES, kinds=["post", "summary"])
            if _about_a_post(hit)
        ]
        context.add_memories(hits)
        used = [title for hit in hits for title in used_titles(hit.text)]
        drafts = await self._planned(team)
        _holding_slugs.set(frozenset(draft.slug for draft in drafts))
        used += [draft.title for draft in drafts]
        now = self.calendar.clock()
        taken = sorted({draft.planned_for for draft in drafts if draft.planned_for > now})
        if self._posts is not None:
            try:
                with scrubbing(self._registry.redactor):
                    used += [post.title for post in await self._posts.search_posts(about, USED_POSTS)]
            except ConnectorError as exc:
                context.lines.append(f"Posts could not be looked up just now ({exc})")
        seen: set[str] = set()
        for text in used:
            line = " ".join(text.split())[:200]
            if line and line.lower() not in seen:
                seen.add(line.lower())
                context.lines.append(USED_LINE + json.dumps(line, ensure_ascii=False))
        context.lines.extend(TAKEN_LINE + json.dumps(moment.isoformat()) for moment in taken)
        return context

    async def _planned(self, team: str) -> list[PlannedDraft]:
        if self._holding_drafts is None:
            return []
        drafts: list[PlannedDraft] = []
        for params in await self._holding_drafts(team):
            draft = CmsCreateDraft.model_validate(params)
            if draft.planned_for is not None:
                drafts.append(PlannedDraft(draft.title, draft.effective_slug(), draft.planned_for))
        return drafts

    async def refusal(
        self, action: Action, planned: Sequence[Action] = (), context: Context | None = None
    ) -> str | None:
        """A planned slot goes out at a time to come, inside the windows, under a slug no other slot has."""
        if isinstance(action, CmsCreateDraft) and action.planned_for is not None:
            when = action.planned_for
            if when <= self.calendar.clock():
                return f"{describe(when, self.calendar.zone)} is in the past; plan only days to come"
            if not is_open(self.calendar.windows, when.astimezone(self.calendar.zone)):
                return (
                    f"{describe(when, self.calendar.zone)} is outside the publishing windows "
                    f"{self.calendar.windows_text()}"
                )
            slugs = [a.effective_slug() for a in planned if isinstance(a, CmsCreateDraft)]
            if action.effective_slug() in slugs:
                return f"this calendar already plans a post with the slug {action.effective_slug()!r}"
            if action.effective_slug() in _holding_slugs.get():
                return (
                    f"another planned draft of the team (waiting, approved or made) has the slug "
                    f"{action.effective_slug()!r}; give this one another title"
                )
        return await super().refusal(action, planned, context)


def used_titles(memory: str) -> list[str]:
    """The titles a ``post`` memory quotes (a summary of several quotes each of theirs); the memory itself when
    it quotes none."""
    titles: list[str] = []
    for quoted in _WRITTEN_TITLE.findall(memory):
        try:
            title = json.loads(quoted)
        except ValueError:
            continue
        if isinstance(title, str) and title not in titles:
            titles.append(title)
    return titles or [memory]


def _about_a_post(hit: MemoryHit) -> bool:
    """Post memories, and the summaries retention folded them into (kept under the post's key)."""
    return hit.kind == "post" or (hit.key or "").startswith("post:")


def angle_of(body: str) -> str:
    """A planned draft's angle: its body's first line, after ``Angle: ``; empty for any other draft."""
    first = body.split("\n", 1)[0]
    return first.removeprefix(ANGLE_PREFIX).strip() if first.startswith(ANGLE_PREFIX) else ""


def taken_lines(system: str) -> list[datetime]:
    """The times a context says other planned drafts hold (the planner's side of ``TAKEN_LINE``)."""
    found: list[datetime] = []
    for line in system.splitlines():
        if line.startswith(TAKEN_LINE):
            try:
                moment = datetime.fromisoformat(json.loads(line.removeprefix(TAKEN_LINE)))
            except (ValueError, TypeError):
                continue
            if moment.tzinfo is not None:
                found.append(moment)
    return found


def used_lines(system: str) -> list[str]:
    """What a context says was used before (the planner's side of ``USED_LINE``)."""
    found: list[str] = []
    for line in system.splitlines():
        if line.startswith(USED_LINE):
            try:
                text = json.loads(line.removeprefix(USED_LINE))
            except ValueError:
                continue
            if isinstance(text, str):
                found.append(text)
    return found
