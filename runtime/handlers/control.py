"""`/aios pause <agent>` and `/aios resume <agent>`: a brake on one agent that loses nothing.

While an agent is paused its new runs wait before planning and its approved actions wait before executing;
resuming carries all of them on. Anyone with a role in the policy (directly or through a user group) may pull or
release the brake."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from runtime.handlers.base import HandlerBase
from runtime.messagebus import Message
from runtime.messages import AgentResumed, PauseAgent, ResumeAgent
from runtime.notices import Thread
from storage.records import AgentPause

log = structlog.get_logger(__name__)


class Control(HandlerBase):
    async def pause(self, command: PauseAgent) -> Sequence[Message]:
        if not await self._may_steer(command.agent, command.user, command.channel):
            return []
        async with self.units() as uow:
            existing = await uow.runs.is_paused(command.agent)
            if existing is None:
                await uow.add(AgentPause(agent=command.agent, paused_by=command.user))
                await uow.commit()
        if existing is not None:
            await self._whisper(
                command.channel,
                command.user,
                f"The {command.agent} agent is already paused (by <@{existing.paused_by}>).",
            )
            return []
        log.info("agent_paused", agent=command.agent, user=command.user)
        await self._announce(
            command.channel,
            f":double_vertical_bar: <@{command.user}> paused the {command.agent} agent: new requests wait before "
            f"planning and approved actions wait before running, until `/aios resume {command.agent}`.",
        )
        return []

    async def resume(self, command: ResumeAgent) -> Sequence[Message]:
        if not await self._may_steer(command.agent, command.user, command.channel):
            return []
        async with self.units() as uow:
            existing = await uow.runs.is_paused(command.agent)
            if existing is not None:
                await uow.session.delete(existing)
                await uow.commit()
        if existing is None:
            await self._whisper(command.channel, command.user, f"The {command.agent} agent is not paused.")
            return []
        log.info("agent_resumed", agent=command.agent, user=command.user)
        await self._announce(
            command.channel,
            f":arrow_forward: <@{command.user}> resumed the {command.agent} agent; what waited goes on.",
        )
        return [AgentResumed(command.agent)]

    async def _may_steer(self, agent: str, user: str, channel: str) -> bool:
        if agent not in self.dispatcher.agents:
            known = ", ".join(sorted(self.dispatcher.agents))
            await self._whisper(channel, user, f"There is no agent {agent!r}; the agents are {known}.")
            return False
        if not self.policy.roles_of(user, await self._group_members()):
            await self._whisper(
                channel, user, "Only people with a role in the policy can pause or resume agents."
            )
            return False
        return True

    async def _announce(self, channel: str, text: str) -> None:
        await self._say(Thread(channel, None), text)
