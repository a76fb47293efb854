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

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        """Open a modal for the person whose click or shortcut carried ``trigger_id`` (valid for 3 s); its view id."""
        ...

    async def update_view(self, view_id: str, view: dict[str, Any]) -> None:
        """Replace an open modal's content."""
        ...

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """Show ``view`` as ``user``'s App Home tab."""
        ...
