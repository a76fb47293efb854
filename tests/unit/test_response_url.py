"""Which response URLs the bot answers a command through: Slack's, never an address a payload makes up."""

from __future__ import annotations

import pytest

from bot.response_url import is_slacks

SLACK_API = "https://slack.com/api/"


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/commands/T0001/1234/abcd",
        "https://hooks.slack-gov.com/commands/T0001/1234/abcd",
        "https://hooks.slack.com:443/commands/T0001/1234/abcd",
    ],
)
def test_slacks_own_response_urls_are_answered_through(url: str) -> None:
    assert is_slacks(url, SLACK_API)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.slack.com/commands/T0001/1234/abcd",  # not over TLS
        "https://hooks.slack.com.evil.example/commands/x",
        "https://hooks.slack.com:8443/commands/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:5432/",
        "https://slack.com/api/chat.postMessage",  # Slack, but not where answers go: the API is set elsewhere
        "file:///etc/passwd",
        "https://[::1/",
        "https://hooks.slack.com:port/x",
        "",
    ],
)
def test_any_other_address_is_not(url: str) -> None:
    assert not is_slacks(url, "https://slack.example/api/")


def test_the_slack_api_server_the_bot_is_set_to_use_is_trusted_too() -> None:
    local = "http://127.0.0.1:8123/api/"
    assert is_slacks("http://127.0.0.1:8123/commands/T1/1/x", local)
    assert not is_slacks("http://127.0.0.1:8124/commands/T1/1/x", local)
    assert not is_slacks("https://127.0.0.1:8123/commands/T1/1/x", local)
