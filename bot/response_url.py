"""A slash command answered after its ack through the command's ``response_url``: Slack's way to answer a
command later (for 30 minutes), which reaches the asker wherever they asked, also in a channel the bot is not in
and in a direct message between people, where ``chat.postEphemeral`` is refused."""

from __future__ import annotations

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.webhook.async_client import AsyncWebhookClient

from runtime.transport import TransportError


async def answer_privately(response_url: str, text: str) -> None:
    """Post ``text`` to the asker alone; TransportError when Slack refuses it or cannot be reached."""
    client = AsyncWebhookClient(
        response_url,
        timeout=10,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )
    try:
        response = await client.send(text=text, response_type="ephemeral")
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Not the URL itself: it is the credential to answer in the asker's conversation.
        raise TransportError(f"Slack could not be reached for the command's answer: {exc!r}") from exc
    if response.status_code != 200:
        raise TransportError(
            f"Slack refused the command's answer: {response.status_code} {response.body[:200]}"
        )
