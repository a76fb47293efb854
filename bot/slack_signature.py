"""Slack's v0 request signature, checked over the raw bytes before anything parses the body.

slack_sdk's verifier decodes the body as UTF-8 and converts the timestamp to a float, so a forged request
with a non-UTF-8 body, a 400-digit timestamp or a non-ASCII signature makes it raise instead of refuse.
"""

from __future__ import annotations

import hashlib
import hmac
import re

MAX_AGE_SECONDS = 5 * 60  # Slack's own advice: older requests may be replays
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class SlackSignature:
    """The check of every request signed with one signing secret. The HMAC keyed with the secret is made once
    and copied for each request: keying it again each time cost more than hashing the body."""

    def __init__(self, secret: str) -> None:
        self._keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def problem(
        self, raw_body: bytes, timestamp: str | None, signature: str | None, *, now: float
    ) -> str | None:
        """Why the request is not authentically from Slack, or None when it is."""
        if not timestamp or not signature:
            return "missing X-Slack-Request-Timestamp or X-Slack-Signature header"
        if not _TIMESTAMP.fullmatch(timestamp):
            return "X-Slack-Request-Timestamp is not a Unix time in seconds"
        if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
            return (
                "X-Slack-Request-Timestamp is more than 5 minutes away from now (a replay, or a wrong clock)"
            )
        if not _SIGNATURE.fullmatch(signature):
            return "X-Slack-Signature is not of the form v0=<64 hex digits>"
        expected = self._keyed.copy()
        expected.update(b"v0:" + timestamp.encode() + b":" + raw_body)
        if not hmac.compare_digest(f"v0={expected.hexdigest()}".encode(), signature.encode()):
            return "X-Slack-Signature does not match the body (wrong signing secret, or the body was altered)"
        return None
