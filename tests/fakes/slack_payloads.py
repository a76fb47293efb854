"""Slack-shaped request bodies, signed with the real v0 scheme."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

SIGNING_SECRET = "test-signing-secret"


def sign(body: str | bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_callback(
    event: Any, *, event_id: str | None = None, team: str | None = "T0FAKE", **envelope: Any
) -> tuple[str, str]:
    """An Events API delivery of ``event`` (any shape); ``envelope`` adds or overrides top-level fields."""
    body = {
        "token": "legacy",
        "team_id": team,
        "api_app_id": "A0AIOS",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        **envelope,
    }
    return json.dumps(body), "application/json"


def interactivity(payload: Any) -> tuple[str, str]:
    """An interactivity delivery: the payload as JSON in the ``payload`` form field, as Slack sends it."""
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


def slash_command(
    text: str,
    *,
    user: str,
    channel: str = "C0SHOP",
    team: str = "T0FAKE",
    response_url: str | None = "https://hooks.slack.test/commands/1",
) -> tuple[str, str]:
    """``response_url``: where answers after the ack may be posted (the fake Slack API's, to see them); None:
    a payload without one."""
    fields = {
        "token": "legacy",
        "team_id": team,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": "shop",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/aios",
        "text": text,
        "api_app_id": "A0AIOS",
        "response_url": response_url,
        "trigger_id": uuid.uuid4().hex,
    }
    body = urlencode({key: value for key, value in fields.items() if value is not None})
    return body, "application/x-www-form-urlencoded"


def app_mention(
    text: str,
    *,
    user: str,
    channel: str = "C0SHOP",
    ts: str,
    thread_ts: str | None = None,
    event_id: str | None = None,
    team: str = "T0FAKE",
) -> tuple[str, str]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": f"<@UAIOSBOT> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    body = {
        "token": "legacy",
        "team_id": team,
        "api_app_id": "A0AIOS",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team, "user_id": "UAIOSBOT", "is_bot": True}],
    }
    return json.dumps(body), "application/json"


def block_action(
    action_id: str,
    value: str,
    *,
    user: str,
    channel: str = "C0SHOP",
    message_ts: str,
    team: str = "T0FAKE",
    block_id: str = "aios_decision",
    response_url: str = "https://hooks.slack.test/actions/1",
) -> tuple[str, str]:
    """``response_url``: where answers after the ack may be posted (the fake Slack API's ``actions_url``, to see
    them; the default is no address of Slack's, so they are posted ephemeral)."""
    payload = {
        "type": "block_actions",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A0AIOS",
        "token": "legacy",
        "trigger_id": uuid.uuid4().hex,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel, "name": "shop"},
        "message": {"type": "message", "ts": message_ts, "text": "Approval needed"},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_ts": str(time.time()),
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


# Shapes as Slack documents them (api.slack.com/reference/interaction-payloads/views,
# …/block-actions-payload, …/shortcuts-payload, events/app_home_opened), with the fields Slack always sends.


def view_submission(
    callback_id: str,
    values: dict[str, dict[str, dict[str, Any]]],
    *,
    user: str,
    private_metadata: str = "",
    view_id: str = "V00000001",
    team: str = "T0FAKE",
    blocks: list[dict[str, Any]] | None = None,
) -> tuple[str, str]:
    """A modal's submit: ``values`` is ``view.state.values`` ({block_id: {action_id: element state}}), e.g.
    ``{"amount": {"value": {"type": "number_input", "value": "40"}}}``."""
    payload = {
        "type": "view_submission",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A0AIOS",
        "token": "legacy",
        "trigger_id": uuid.uuid4().hex,
        "view": {
            "id": view_id,
            "team_id": team,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": values},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": {"type": "plain_text", "text": "AIOS", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": "A0AIOS",
            "external_id": "",
            "app_installed_team_id": team,
            "bot_id": "B0AIOS",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return interactivity(payload)


def view_block_action(
    action_id: str,
    value: str,
    *,
    user: str,
    view_type: str = "home",
    view_id: str = "V00000002",
    team: str = "T0FAKE",
    block_id: str = "aios_decision",
) -> tuple[str, str]:
    """A button pressed inside a view (the App Home or a modal): no channel and no message, the view instead."""
    payload = {
        "type": "block_actions",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A0AIOS",
        "token": "legacy",
        "trigger_id": uuid.uuid4().hex,
        "container": {"type": "view", "view_id": view_id},
        "view": {
            "id": view_id,
            "team_id": team,
            "type": view_type,
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "app_id": "A0AIOS",
            "bot_id": "B0AIOS",
        },
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_ts": str(time.time()),
            }
        ],
        "is_enterprise_install": False,
    }
    return interactivity(payload)


def message_shortcut(
    callback_id: str,
    message: dict[str, Any],
    *,
    user: str,
    channel: str = "C0SHOP",
    team: str = "T0FAKE",
    response_url: str = "https://hooks.slack.test/app/1",
) -> tuple[str, str]:
    """A message shortcut chosen on ``message`` (as Slack holds it: ``ts``, ``text``, ``blocks``, ``bot_id``…)."""
    payload = {
        "type": "message_action",
        "token": "legacy",
        "action_ts": str(time.time()),
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "name": user.lower(), "username": user.lower(), "team_id": team},
        "channel": {"id": channel, "name": "shop"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": uuid.uuid4().hex,
        "response_url": response_url,
        "message_ts": message.get("ts", ""),
        "message": {"type": "message", **message},
    }
    return interactivity(payload)


def app_home_opened(user: str, *, tab: str = "home", team: str = "T0FAKE") -> tuple[str, str]:
    """The event Slack sends when someone opens the app's Home (or Messages) tab."""
    event = {
        "type": "app_home_opened",
        "user": user,
        "channel": f"D{user[1:]}",
        "tab": tab,
        "event_ts": str(time.time()),
    }
    return event_callback(event, team=team)
