"""What `POST /slack/events` reads of a request before Bolt sees it."""

from __future__ import annotations

import time

from bot.slack_signature import SlackSignature
from tests.fakes.slack_payloads import SIGNING_SECRET, sign, slash_command


def test_one_signature_check_answers_request_after_request() -> None:
    """The HMAC keyed with the secret is made once: each request's check must start from it, not from what the
    previous request's body left in it."""
    check = SlackSignature(SIGNING_SECRET)
    now = time.time()
    for text in ("status", "pending", "status"):
        body, _ = slash_command(text, user="U0ANA")
        headers = sign(body)
        raw = body.encode()
        timestamp, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
        assert check.problem(raw, timestamp, signature, now=now) is None
        assert "does not match" in str(check.problem(raw + b"&x=1", timestamp, signature, now=now))
        assert check.problem(raw, timestamp, signature, now=now) is None


def test_a_signature_made_with_another_secret_is_refused() -> None:
    body, _ = slash_command("status", user="U0ANA")
    headers = sign(body, secret="another-secret")
    problem = SlackSignature(SIGNING_SECRET).problem(
        body.encode(), headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"], now=time.time()
    )
    assert problem is not None and "does not match" in problem
