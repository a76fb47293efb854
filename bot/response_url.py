"""Answers after the ack, to the person who asked alone: through the payload's ``response_url`` when it is
Slack's — Slack's way to answer a command, a click or a shortcut later (for 30 minutes), which reaches the asker
wherever they asked, also in a channel the bot is not in and in a direct message between people, where
``chat.postEphemeral`` is refused — and by ``chat.postEphemeral`` otherwise (a payload without one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.bootstrap import Aios
from bot.slack_payloads import ButtonClick, SlashCommandPayload
from runtime.transport import TransportError

log = structlog.get_logger(__name__)

# Where Slack's response URLs point (commercial and GovSlack workspaces).
SLACK_HOOK_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})


@dataclass(frozen=True)
class Asker:
    """Who asked, where, and the payload's ``response_url`` (None when it carried none)."""

    channel: str
    user: str
    response_url: str | None = None
    thread_ts: str | None = (
        None  # the thread asked in: chat.postEphemeral answers there, a response URL cannot
    )

    @classmethod
    def of_command(cls, command: SlashCommandPayload) -> Asker:
        return cls(command.channel_id, command.user_id, command.response_url)

    @classmethod
    def of_click(cls, click: ButtonClick, *, thread_ts: str | None = None) -> Asker:
        return cls(click.channel_id, click.user.id, click.response_url, thread_ts)


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


async def answer_late(
    aios: Aios, asker: Asker, text: str, blocks: list[dict[str, Any]] | None = None
) -> None:
    """Show ``text`` (and ``blocks``) to the asker alone. Called after the ack, in the background: an answer
    Slack refuses or cannot take is logged, not raised.

    Asked in a thread, the answer is posted in that thread with chat.postEphemeral (an answer through the
    response URL lands in the channel, not the thread), through the response URL only when Slack refuses that
    (a conversation the bot is not in). Otherwise the response URL first — it reaches the asker anywhere — and
    chat.postEphemeral when that fails (an expired or used-up URL, Slack unreachable)."""
    url = asker.response_url

    async def ephemerally() -> None:
        await aios.handlers.transport.post_ephemeral(
            asker.channel, asker.user, text, thread_ts=asker.thread_ts, blocks=blocks
        )

    async def through_url() -> None:
        assert url is not None
        # The transport's redactor, as every other way out to people has it (bot/redacting_transport.py).
        redactor = aios.registry.redactor
        await _post(url, redactor.text(text), redactor.data(blocks))

    ways = [ephemerally]
    if url and is_slacks(url, aios.settings.slack_api_url):
        ways = [ephemerally, through_url] if asker.thread_ts else [through_url, ephemerally]
    problems = []
    for way in ways:
        try:
            await way()
            return
        except TransportError as exc:
            problems.append(str(exc))
    log.error("answer_not_delivered", channel=asker.channel, user=asker.user, error="; ".join(problems))


async def _post(response_url: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
    """Post ``text`` to the asker alone; TransportError when Slack refuses it or cannot be reached."""
    client = AsyncWebhookClient(
        response_url,
        timeout=10,
        # Only a refusal for the rate is sure not to have been posted: a dropped connection or a 5xx may come
        # after Slack took the answer, and a retry would show it twice (and use up one of the URL's five uses).
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    try:
        # A new message beside the one clicked or the command, never in its place.
        response = await client.send(
            text=text, blocks=blocks, response_type="ephemeral", replace_original=False
        )
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        # Named by its kind alone: the URL, which some errors repeat, is the credential to answer in the
        # asker's conversation.
        raise TransportError(f"Slack could not be reached for the answer: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise TransportError(f"Slack refused the answer: {response.status_code} {response.body[:200]}")
