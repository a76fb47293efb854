"""The secret-scrubbing net: which forms of a secret it finds, what it leaves alone, and which settings feed it."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.settings import Settings
from connectors.errors import PermanentConnectorError, TransientConnectorError
from connectors.redaction import RedactedError, Redactor, Secret, scrubbed
from runtime.mrkdwn import escape

WP_PASSWORD = "abcd EFGH ijkl MNOP qrst UVWX"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_each_form_of_a_secret_is_replaced_by_its_settings_name() -> None:
    redactor = Redactor(
        [
            Secret("STRIPE_API_KEY", "sk_test_51Hx/y+z"),
            Secret("WORDPRESS_APP_PASSWORD", WP_PASSWORD, user="editor"),
            Secret("AIOS_SMTP_URL", "pa55-w0rd", user="mailer"),
        ]
    )
    echoed = [
        "sk_test_51Hx/y+z",
        quote("sk_test_51Hx/y+z", safe=""),
        b64("sk_test_51Hx/y+z:"),  # Basic auth with the key as the user, as Stripe's API takes it
        WP_PASSWORD,
        WP_PASSWORD.replace(" ", ""),
        b64(f"editor:{WP_PASSWORD}"),
        b64(f"editor:{WP_PASSWORD.replace(' ', '')}"),
        b64("\0mailer\0pa55-w0rd"),  # SMTP AUTH PLAIN
        b64("pa55-w0rd"),  # SMTP AUTH LOGIN
    ]
    for form in echoed:
        said = redactor.text(f"the server said: {form}!")
        assert form not in said and said.startswith("the server said: [REDACTED:"), form
    assert redactor.text(f"Authorization: Basic {b64(f'editor:{WP_PASSWORD}')}") == (
        "Authorization: Basic [REDACTED:WORDPRESS_APP_PASSWORD]"
    )


def test_short_values_and_ordinary_text_are_left_alone() -> None:
    redactor = Redactor([Secret("AIOS_SHOP_API_KEY", "1003"), Secret("SLACK_BOT_TOKEN", "xoxb-1-abcdef")])
    assert redactor.text("refund order 1003, $40") == "refund order 1003, $40"
    assert not Redactor([Secret("AIOS_SHOP_API_KEY", "1003")])
    assert Redactor().text("xoxb-1-abcdef") == "xoxb-1-abcdef"


def test_a_secret_that_contains_another_is_replaced_whole() -> None:
    redactor = Redactor([Secret("A_SETTING", "token-abc"), Secret("B_SETTING", "token-abc-and-more")])
    assert (
        redactor.text("x token-abc-and-more y token-abc") == "x [REDACTED:B_SETTING] y [REDACTED:A_SETTING]"
    )


def test_nested_results_keys_included_are_scrubbed_and_other_values_kept() -> None:
    redactor = Redactor([Secret("SHOPIFY_ACCESS_TOKEN", "shpat_0123456789")])
    result = {
        "ok": True,
        "count": 2,
        "echo": ["fine", {"header": "X-Shopify-Access-Token: shpat_0123456789"}],
        "shpat_0123456789": ("a", None),
    }
    assert redactor.data(result) == {
        "ok": True,
        "count": 2,
        "echo": ["fine", {"header": "X-Shopify-Access-Token: [REDACTED:SHOPIFY_ACCESS_TOKEN]"}],
        "[REDACTED:SHOPIFY_ACCESS_TOKEN]": ("a", None),
    }


def test_a_number_whose_digits_are_a_secret_becomes_its_scrubbed_text() -> None:
    redactor = Redactor([Secret("AIOS_SHOP_API_KEY", "98765432")])
    assert redactor.data({"pin": 98765432, "amount": 98765432.0, "order": 1003, "ok": True, "of": 1.5}) == {
        "pin": "[REDACTED:AIOS_SHOP_API_KEY]",
        "amount": "[REDACTED:AIOS_SHOP_API_KEY].0",
        "order": 1003,
        "ok": True,
        "of": 1.5,
    }


def test_a_secret_is_found_as_the_runtime_escapes_it_for_mrkdwn() -> None:
    redactor = Redactor([Secret("AIOS_SMTP_URL", "a&b<c>d-9")])
    assert escape("a&b<c>d-9") == "a&amp;b&lt;c&gt;d-9"
    assert redactor.text(f"key={escape('a&b<c>d-9')}.") == "key=[REDACTED:AIOS_SMTP_URL]."


def test_an_error_keeps_its_class_and_retry_after_with_its_message_scrubbed() -> None:
    redactor = Redactor([Secret("STRIPE_API_KEY", "sk_live_abcdef123")])
    error = TransientConnectorError("429 for key sk_live_abcdef123", retry_after=7.0)
    assert scrubbed(error, redactor) is error
    assert (str(error), error.retry_after) == ("429 for key [REDACTED:STRIPE_API_KEY]", 7.0)
    permanent = scrubbed(PermanentConnectorError("refused sk_live_abcdef123"), redactor)
    assert type(permanent) is PermanentConnectorError and "sk_live" not in str(permanent)


def test_an_error_whose_text_is_not_its_arguments_is_replaced() -> None:
    redactor = Redactor([Secret("AIOS_SMTP_URL", "pa55-w0rd-xyz")])
    # OSError's text comes from its fields, not from args.
    error = OSError(13, "denied", "/run/pa55-w0rd-xyz")
    clean = scrubbed(error, redactor)
    assert isinstance(clean, RedactedError)
    assert str(clean).startswith("PermissionError: ") and "pa55-w0rd-xyz" not in str(clean)


def test_the_settings_list_every_secret_they_hold(tmp_path: Path) -> None:
    mcp = tmp_path / "mcp.json"
    mcp.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "git": {
                        "command": "mcp-server-git",
                        # A credential by its name; a plain setting is not one (and stays readable in logs).
                        "env": {"GIT_TOKEN": "ghp_mcp-env-value", "GIT_AUTHOR_NAME": "production-bot"},
                    },
                    "crm": {
                        "url": "https://crm:url-password@crm.example.com/mcp?key=url-query-key",
                        "headers": {"Authorization": "Bearer mcp-header-token", "Accept": "application/json"},
                    },
                }
            }
        )
    )
    settings = Settings(
        SLACK_BOT_TOKEN="xoxb-bot-token",
        SLACK_SIGNING_SECRET="signing-secret",
        SLACK_APP_TOKEN="xapp-app-token",
        ANTHROPIC_API_KEY="sk-ant-key",
        WEAVIATE_API_KEY="weaviate-key",
        AIOS_SHOP_API_KEY="shop-api-key",
        STRIPE_API_KEY="sk_test_stripe",
        SHOPIFY_ACCESS_TOKEN="shpat_token",
        WORDPRESS_USER="editor",
        WORDPRESS_APP_PASSWORD=WP_PASSWORD,
        AIOS_SMTP_URL="smtp://mailer:smtp%2Fpass@mail.example.com:587",
        AIOS_DATABASE_URL="postgresql+asyncpg://aios:db-password@db/aios",
        AIOS_WEBHOOKS=json.dumps({"crm": {"url": "https://hooks.example.com/T0/abc", "secret": "whsec-1"}}),
        AIOS_MCP_CONFIG=str(mcp),
    )
    found = {(s.setting, s.value, s.user) for s in settings.secrets()}
    assert found == {
        ("SLACK_BOT_TOKEN", "xoxb-bot-token", None),
        ("SLACK_SIGNING_SECRET", "signing-secret", None),
        ("SLACK_APP_TOKEN", "xapp-app-token", None),
        ("ANTHROPIC_API_KEY", "sk-ant-key", None),
        ("WEAVIATE_API_KEY", "weaviate-key", None),
        ("AIOS_SHOP_API_KEY", "shop-api-key", None),
        ("STRIPE_API_KEY", "sk_test_stripe", None),
        ("SHOPIFY_ACCESS_TOKEN", "shpat_token", None),
        ("WORDPRESS_APP_PASSWORD", WP_PASSWORD, "editor"),
        ("AIOS_SMTP_URL", "smtp/pass", "mailer"),
        ("AIOS_SMTP_URL", "smtp%2Fpass", None),
        ("AIOS_DATABASE_URL", "db-password", "aios"),
        ("AIOS_WEBHOOKS", "whsec-1", None),
        ("AIOS_WEBHOOKS", "https://hooks.example.com/T0/abc", None),
        ("AIOS_MCP_CONFIG", "ghp_mcp-env-value", None),
        ("AIOS_MCP_CONFIG", "url-password", None),
        ("AIOS_MCP_CONFIG", "url-query-key", None),
        ("AIOS_MCP_CONFIG", "Bearer mcp-header-token", None),
        ("AIOS_MCP_CONFIG", "mcp-header-token", None),
    }


def test_a_malformed_webhooks_setting_is_a_secret_whole() -> None:
    settings = Settings(AIOS_WEBHOOKS='{"crm": {"url": "https://x.example.com", "secret": "whsec-1"')
    [secret] = settings.secrets()
    assert secret.setting == "AIOS_WEBHOOKS" and "whsec-1" in secret.value


@pytest.mark.parametrize("json_logs", [True, False], ids=["json", "console"])
def test_log_lines_carry_no_secret_in_events_exceptions_or_library_records(json_logs: bool) -> None:
    script = f"""
import logging, structlog
from bot.logs import configure_logging, hide_secrets
from connectors.redaction import Redactor, Secret

configure_logging(json={json_logs})
hide_secrets(Redactor([Secret("STRIPE_API_KEY", "sk_live_never_logged")]))
log = structlog.get_logger("test")
log.info("refund_failed", error="401 for sk_live_never_logged", nested={{"k": ["sk_live_never_logged"]}})
try:
    raise ValueError("the key sk_live_never_logged was refused")
except ValueError:
    log.exception("connector_failed")
    logging.getLogger("httpx").exception("library says sk_live_never_logged")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "sk_live_never_logged" not in result.stderr
    assert result.stderr.count("[REDACTED:STRIPE_API_KEY]") >= 5
    if json_logs:
        assert len([json.loads(line) for line in result.stderr.splitlines()]) == 3
