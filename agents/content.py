"""The content agent: drafts and publishing, in the team's brand voice."""

from __future__ import annotations

from agents.base import Agent, Context, PlanRequest


class ContentAgent(Agent):
    name = "content"
    action_names = ("cms.create_draft", "cms.publish")

    async def context(self, request: PlanRequest) -> Context:
        """The team's brand-voice notes, and remembered posts that match the request."""
        context = Context()
        team = request.call.team_id
        context.add_memories(await self._memory.search(team, "brand voice style tone", kinds=["brand_voice"]))
        context.add_memories(await self._memory.search(team, request.text, limit=3, kinds=["post"]))
        return context
