"""What `POST /slack/events` reads of a request before Bolt sees it."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

from bot.slack_signature import SlackSignature
from bot.web import parse_form
from tests.fakes.slack_payloads import SIGNING_SECRET, interactivity, sign, slash_command

# What a form body's decoding turns on, and the characters around it: separators, escapes (valid, cut short,
# not hex, of bytes that are not UTF-8), non-ASCII text.
_FORM_TEXT = st.text(
    alphabet=st.sampled_from([*"&=+%;", *"aZ09", *"2Ffe", " ", "é", "☃", "\x00"]), max_size=40
)


@given(_FORM_TEXT)
def test_a_form_body_reads_as_parse_qsl_reads_it(text: str) -> None:
    expected = dict(parse_qsl(text, keep_blank_values=True))
    parsed = parse_form(text)
    assert parsed == expected
    assert list(parsed) == list(expected)  # the same order too, a repeated field where it first appeared


def test_the_bodies_slack_sends_read_as_parse_qsl_reads_them() -> None:
    for body, _ in (
        slash_command("remember --kind note 50% off+free shipping & more = yes ☃", user="U0ANA"),
        slash_command("", user="U0ANA", response_url=None),
        interactivity({"type": "block_actions", "actions": [{"action_id": "approve", "value": "AP-1"}]}),
    ):
        assert parse_form(body) == dict(parse_qsl(body, keep_blank_values=True))
    assert parse_form("a=1&a=2&flag&&b=%E2%98%83+x&c=%ZZ%e9") == {
        "a": "2",
        "flag": "",
        "b": "☃ x",
        "c": "%ZZ\ufffd",
    }


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
