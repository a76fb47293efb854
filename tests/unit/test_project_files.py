"""The Slack app manifest and Procfile say what the deployment needs."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_declares_the_slack_surface() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/aios" and command["url"].endswith("/slack/events")
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_home_opened",
        "app_mention",
        "message.im",
    }
    assert manifest["features"]["app_home"] == {
        "home_tab_enabled": True,
        "messages_tab_enabled": True,
        "messages_tab_read_only_enabled": False,
    }
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "im:history", "usergroups:read"} <= scopes


def test_procfile_runs_the_web_server_and_migrates_on_release() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert "web: aios serve --port $PORT" in lines
    assert "release: aios db upgrade" in lines


def test_manifest_offers_explain_this_on_messages() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    [shortcut] = manifest["features"]["shortcuts"]
    assert shortcut["type"] == "message" and shortcut["callback_id"] == "aios_explain"
    assert shortcut["name"] == "Explain this" and 0 < len(shortcut["description"]) <= 150
