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


def slash_command(text: str, *, user: str, channel: str = "C0SHOP", team: str = "T0FAKE") -> tuple[str, str]:
    body = urlencode(
        {
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
            "response_url": "https://hooks.slack.test/commands/1",
            "trigger_id": uuid.uuid4().hex,
        }
    )
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
) -> tuple[str, str]:
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
        "response_url": "https://hooks.slack.test/actions/1",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "aios_decision",
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": "Approve"},
                "action_ts": str(time.time()),
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
