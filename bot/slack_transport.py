"""The Slack transport: the Web API through ``slack_sdk``'s async client."""

from __future__ import annotations

import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

GROUP_CACHE_SECONDS = 300.0


class SlackTransport:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._groups: dict[str, tuple[float, set[str]]] = {}

    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        response = await self._client.chat_postMessage(
            channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, unfurl_links=False
        )
        return str(response["ts"])

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])

    async def post_ephemeral(
        self, channel: str, user: str, text: str, *, thread_ts: str | None = None
    ) -> None:
        await self._client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)

    async def group_members(self, group_id: str) -> set[str]:
        cached = self._groups.get(group_id)
        if cached is not None and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            response = await self._client.usergroups_users_list(usergroup=group_id)
        except SlackApiError:
            # Fail closed: an unreadable group grants nobody the role.
            return set()
        members: set[str] = set(response.get("users", []))
        self._groups[group_id] = (time.monotonic(), members)
        return members
