"""The one way out to people: every message the bot posts, updates or shows to one user goes through here, with
the configured secrets replaced, whatever text (an error, a model's words, a tool's result) it was built from."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents.context import ThreadEntry
from connectors.redaction import Redactor
from runtime.transport import Transport


class RedactingTransport:
    def __init__(self, transport: Transport, redactor: Redactor) -> None:
        self._transport = transport
        self._redactor = redactor

    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        return await self._transport.post(
            channel, self._redactor.text(text), blocks=self._redactor.data(blocks), thread_ts=thread_ts
        )

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await self._transport.update(
            channel, ts, self._redactor.text(text), blocks=self._redactor.data(blocks)
        )

    async def post_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        await self._transport.post_ephemeral(
            channel, user, self._redactor.text(text), thread_ts=thread_ts, blocks=self._redactor.data(blocks)
        )

    async def thread_history(self, channel: str, thread_ts: str) -> list[ThreadEntry]:
        # A secret someone pasted into the thread is not carried into the planner's prompt and its records.
        entries = await self._transport.thread_history(channel, thread_ts)
        return [replace(entry, text=self._redactor.text(entry.text)) for entry in entries]

    async def group_members(self, group_id: str) -> set[str]:
        return await self._transport.group_members(group_id)

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        return await self._transport.open_view(trigger_id, self._redactor.data(view))

    async def update_view(self, view_id: str, view: dict[str, Any]) -> None:
        await self._transport.update_view(view_id, self._redactor.data(view))

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        await self._transport.publish_home(user, self._redactor.data(view))
