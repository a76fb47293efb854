"""The port the service layer talks through to people: Slack in production, the terminal in `aios chat`."""

from __future__ import annotations

from typing import Any, Protocol

from agents.context import ThreadEntry


class TransportError(Exception):
    """A message could not be delivered (the chat service refused it or could not be reached)."""


class Transport(Protocol):
    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Post a message (in a thread when ``thread_ts`` is given) and return its ``ts``."""
        ...

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None: ...

    async def post_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """A message only ``user`` sees: refusals, explanations."""
        ...

    async def thread_history(self, channel: str, thread_ts: str) -> list[ThreadEntry]:
        """The messages of a thread so far, for the agent's short-term context."""
        ...

    async def group_members(self, group_id: str) -> set[str]:
        """Members of a Slack user group (S…), for roles that name groups."""
        ...
