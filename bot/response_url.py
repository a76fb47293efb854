"""A slash command answered after its ack through the command's ``response_url``: Slack's way to answer a
command later (for 30 minutes), which reaches the asker wherever they asked, also in a channel the bot is not in
and in a direct message between people, where ``chat.postEphemeral`` is refused."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.webhook.async_client import AsyncWebhookClient

from runtime.transport import TransportError

# Where Slack's response URLs point (commercial and GovSlack workspaces).
SLACK_HOOK_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})


def is_slacks(response_url: str, slack_api_url: str) -> bool:
    """Whether ``response_url`` points at Slack: its hooks over HTTPS, or the Slack API server this bot is set to
    use (``SLACK_API_URL``: a proxy, a test server). The signature proves a payload came from Slack, but whoever
    holds the signing secret could name any address here, and the bot would post to it from inside its network."""
    try:
        url, api = urlsplit(response_url), urlsplit(slack_api_url)
        if url.scheme == "https" and url.hostname in SLACK_HOOK_HOSTS and url.port in (None, 443):
            return True
        return (url.scheme, url.hostname, url.port) == (api.scheme, api.hostname, api.port) and bool(
            api.hostname
        )
    except ValueError:  # a port that is no number, brackets that do not close
        return False


async def answer_privately(response_url: str, text: str) -> None:
    """Post ``text`` to the asker alone; TransportError when Slack refuses it or cannot be reached."""
    client = AsyncWebhookClient(
        response_url,
        timeout=10,
        # Only a refusal for the rate is sure not to have been posted: a dropped connection or a 5xx may come
        # after Slack took the answer, and a retry would show it twice (and use up one of the URL's five uses).
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
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
