"""Payloads in the shapes Slack documents, through the real `aios serve`: Enterprise Grid, org-wide installs
(`team_id` null), shared channels, bot messages, edits and retried deliveries all get a 2xx; each mention
becomes one intent, and bot messages and edits none."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tests.e2e.conftest import Server
from tests.fakes.slack_payloads import event_callback, interactivity, sign

GRID, TEAM, OTHER_TEAM = "E0GRID", "T0FAKE", "T0PARTNER"


def mention(ts: str, text: str, **extra: Any) -> dict[str, Any]:
    """An app_mention as the Events API reference shows it."""
    return {
        "type": "app_mention",
        "user": "U0ALICE",
        "text": f"<@UAIOSBOT> {text}",
        "ts": ts,
        "channel": "C0SHOP",
        "event_ts": ts,
        **extra,
    }


def direct_message(ts: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel": "D0ALICE", "channel_type": "im", "ts": ts, "event_ts": ts, **extra}


def authorization(
    team: str | None, *, enterprise: str | None = None, org_wide: bool = False
) -> dict[str, Any]:
    return {
        "enterprise_id": enterprise,
        "team_id": team,
        "user_id": "UAIOSBOT",
        "is_bot": True,
        "is_enterprise_install": org_wide,
    }


DELIVERIES: list[tuple[str, tuple[str, str], dict[str, str]]] = [
    (
        "documented app_mention",
        event_callback(mention("1700000100.000100", "status"), authorizations=[authorization(TEAM)]),
        {},
    ),
    (
        "Enterprise Grid workspace install",
        event_callback(
            mention("1700000100.000200", "status", team=TEAM, user_team=TEAM, source_team=TEAM),
            enterprise_id=GRID,
            context_team_id=TEAM,
            context_enterprise_id=GRID,
            authorizations=[authorization(TEAM, enterprise=GRID)],
        ),
        {},
    ),
    (
        "org-wide install, team_id null",
        event_callback(
            mention("1700000100.000300", "status", team=TEAM, user_team=TEAM),
            team=None,
            enterprise_id=GRID,
            is_enterprise_install=True,
            authorizations=[authorization(None, enterprise=GRID, org_wide=True)],
        ),
        {},
    ),
    (
        "shared channel, someone from another organisation",
        event_callback(
            mention("1700000100.000400", "status", user="U0PARTNER", team=OTHER_TEAM, user_team=OTHER_TEAM),
            is_ext_shared_channel=True,
            context_team_id=TEAM,
            authorizations=[authorization(TEAM)],
        ),
        {},
    ),
    (
        "bot message in a direct message",
        event_callback(
            direct_message(
                "1700000100.000500",
                subtype="bot_message",
                bot_id="B0OTHER",
                username="other",
                text="refund $5",
            )
        ),
        {},
    ),
    (
        "another app's message in a direct message, with a user",
        event_callback(
            direct_message("1700000100.000600", user="U0OTHERBOT", bot_id="B0OTHER", text="refund $5")
        ),
        {},
    ),
    (
        "message_changed in a direct message",
        event_callback(
            direct_message(
                "1700000100.000700",
                subtype="message_changed",
                hidden=True,
                message={
                    "type": "message",
                    "user": "U0ALICE",
                    "text": "refund $6",
                    "ts": "1700000099.000100",
                },
                previous_message={
                    "type": "message",
                    "user": "U0ALICE",
                    "text": "refund $5",
                    "ts": "1700000099.000100",
                },
            )
        ),
        {},
    ),
]
RETRIED = event_callback(mention("1700000100.000800", "status"), event_id="Ev0RETRIED")


async def post(server: Server, body: str, content_type: str, headers: dict[str, str]) -> int:
    all_headers = {"Content-Type": content_type, **sign(body), **headers}
    url = f"{server.url}/slack/events"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=all_headers) as response,
    ):
        return response.status


def intents_for(server: Server, message_ts: str) -> list[tuple[Any, ...]]:
    database = server.env["AIOS_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(
            "SELECT source, team_id, user FROM intent WHERE message_ts = ?", (message_ts,)
        ).fetchall()


async def test_documented_event_shapes_are_acked_and_only_mentions_become_intents(server: Server) -> None:
    for name, (body, content_type), headers in DELIVERIES:
        assert await post(server, body, content_type, headers) == 200, name
    for attempt in range(3):  # Slack's retries: the same event id, with the retry headers
        headers = (
            {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"} if attempt else {}
        )
        assert await post(server, *RETRIED, headers) == 200

    # Intents are stored before the ack, so every one is there by now.
    assert intents_for(server, "1700000100.000100") == [("mention", TEAM, "U0ALICE")]
    assert intents_for(server, "1700000100.000200") == [("mention", TEAM, "U0ALICE")]
    assert intents_for(server, "1700000100.000300") == [("mention", "default", "U0ALICE")]
    assert intents_for(server, "1700000100.000400") == [("mention", TEAM, "U0PARTNER")]
    for ts in ("1700000100.000500", "1700000100.000600", "1700000100.000700", "1700000099.000100"):
        assert intents_for(server, ts) == []
    assert intents_for(server, "1700000100.000800") == [("mention", TEAM, "U0ALICE")]


async def test_org_wide_interactivity_and_slash_commands_are_handled(server: Server) -> None:
    click = {
        "type": "block_actions",
        "team": None,  # org-wide installs: the workspace is only on the user
        "enterprise": {"id": GRID, "name": "Grid"},
        "is_enterprise_install": True,
        "user": {"id": "U0MANAGER", "username": "manager", "team_id": TEAM},
        "api_app_id": "A0AIOS",
        "trigger_id": "1.2.3",
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0SHOP", "is_ephemeral": False},
        "channel": {"id": "C0SHOP", "name": "shop"},
        "actions": [{"action_id": "aios_approve", "block_id": "b", "value": "AP-424242", "type": "button"}],
    }
    assert await post(server, *interactivity(click), {}) == 200
    command = {
        "team_id": TEAM,
        "enterprise_id": GRID,
        "enterprise_name": "Grid",
        "is_enterprise_install": "true",
        "channel_id": "C0SHOP",
        "user_id": "U0GRIDUSER",
        "command": "/aios",
        "text": "help",
        "api_app_id": "A0AIOS",
        "trigger_id": "4.5.6",
    }
    assert await post(server, urlencode(command), "application/x-www-form-urlencoded", {}) == 200
    server.slack.wait_for(
        lambda s: [
            c
            for c in s.calls_to("chat.postEphemeral")
            if c.params["text"] == "There is no approval AP-424242."
        ]
    )
