"""The Slack transport: the Web API through ``slack_sdk``'s async client; the runtime's notices are drawn as
Block Kit (``bot.block_kit_notices``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from agents.context import ThreadEntry
from bot.block_kit_notices import BlockKitNotices
from runtime.transport import TransportError

GROUP_CACHE_SECONDS = 300.0

T = TypeVar("T")


def build_slack_client(token: str | None, base_url: str) -> AsyncWebClient:
    """A Web API client that retries what Slack asks to be retried: 429 (honouring Retry-After), 5xx, resets."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=10,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


class SlackTransport(BlockKitNotices):
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._groups: dict[str, tuple[float, set[str]]] = {}
        self._own_ids: tuple[str, str] | None = None  # our bot id and bot user id, from auth.test

    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        response = await _call(
            "chat.postMessage",
            self._client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, unfurl_links=False
            ),
        )
        return str(response["ts"])

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        await _call(
            "chat.update", self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])
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
        await _call(
            "chat.postEphemeral",
            self._client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts, blocks=blocks
            ),
        )

    async def thread_history(self, channel: str, thread_ts: str) -> list[ThreadEntry]:
        response = await _call(
            "conversations.replies",
            self._client.conversations_replies(channel=channel, ts=thread_ts, limit=50),
        )
        messages: list[dict[str, Any]] = response.get("messages", [])
        bot_id, bot_user = await self._own()
        entries = []
        for m in messages:
            app, user = str(m.get("bot_id") or ""), str(m.get("user", ""))
            # Only our own messages are the bot's turns; another app's are quoted like a person's.
            ours = (bool(app) and app == bot_id) or (bool(user) and user == bot_user)
            entries.append(
                ThreadEntry(
                    ts=str(m.get("ts", "0")),
                    user=user,
                    text=str(m.get("text", "")),
                    from_bot=ours,
                    app="" if ours else app,
                )
            )
        return entries

    async def _own(self) -> tuple[str, str]:
        """Which bot and bot user we are (asked once): tells our messages from other apps' in a thread."""
        if self._own_ids is None:
            response = await _call("auth.test", self._client.auth_test())
            self._own_ids = (str(response.get("bot_id") or ""), str(response.get("user_id") or ""))
        return self._own_ids

    async def group_members(self, group_id: str) -> set[str]:
        cached = self._groups.get(group_id)
        if cached is not None and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            response = await _call(
                "usergroups.users.list", self._client.usergroups_users_list(usergroup=group_id)
            )
        except TransportError:
            # Fail closed: an unreadable group grants nobody the role.
            return set()
        members: set[str] = set(response.get("users", []))
        self._groups[group_id] = (time.monotonic(), members)
        return members

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        response = await _call("views.open", self._client.views_open(trigger_id=trigger_id, view=view))
        opened: dict[str, Any] = response.get("view") or {}
        return str(opened.get("id", ""))

    async def update_view(self, view_id: str, view: dict[str, Any]) -> None:
        await _call("views.update", self._client.views_update(view_id=view_id, view=view))

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        await _call("views.publish", self._client.views_publish(user_id=user, view=view))


async def _call(method: str, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    try:
        return await call
    except SlackApiError as exc:
        raise TransportError(f"Slack refused {method}: {exc.response.get('error', 'unknown error')}") from exc
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise TransportError(f"Slack could not be reached for {method}: {exc!r}") from exc
