"""Random bodies, signed and unsigned, of the three kinds Slack sends (JSON events, form slash commands, form
`payload=` interactivity) into the real `aios serve`: none gets a 5xx, and the server stays healthy.

Run with `pytest -s` to see how many bodies were sent and which statuses came back."""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import sign

BODIES = 2000

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
ids = st.sampled_from(["C0SHOP", "U0ALICE", "U0MANAGER", "T0FAKE", "1700000000.000100", ""]) | scalars
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
# Either a plausible value for the field or anything at all, so both the checks and what lies past them run.
loose = ids | json_values


def objects(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with any subset of ``fields`` (each with its strategy) and sometimes a stray extra key."""
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(
            lambda extra: {**extra, **d}
        )
    )


events = objects(
    {
        "type": st.sampled_from(["app_mention", "message", "reaction_added", "app_home_opened"]) | scalars,
        "channel": loose,
        "channel_type": st.sampled_from(["im", "channel"]) | scalars,
        "user": loose,
        "text": st.text(max_size=40) | scalars,
        "ts": loose,
        "thread_ts": loose,
        "subtype": st.sampled_from(["bot_message", "message_changed"]) | scalars,
        "bot_id": loose,
        "team": loose,
    }
)
envelopes = objects(
    {
        "type": st.sampled_from(["event_callback", "url_verification", "app_rate_limited"]) | scalars,
        "event": events | json_values,
        "event_id": st.text(max_size=12) | scalars,
        "team_id": loose,
        "enterprise_id": loose,
        "is_enterprise_install": scalars,
        "challenge": scalars,
        "authorizations": st.lists(
            objects({"team_id": loose, "user_id": loose, "is_bot": scalars}), max_size=2
        )
        | json_values,
    }
)
actions = objects(
    {
        "action_id": st.sampled_from(["aios_approve", "aios_reject", "aios_request_budget", "other"])
        | scalars,
        "value": st.sampled_from(["AP-1", "AP-2", "R-1", "AP-99999999999", "D-1"]) | scalars,
        "block_id": loose,
    }
)
interactive = objects(
    {
        "type": st.sampled_from(["block_actions", "view_submission", "shortcut", "message_action"]) | scalars,
        "user": objects({"id": loose, "team_id": loose}) | scalars,
        "team": objects({"id": loose}) | scalars,
        "channel": objects({"id": loose}) | scalars,
        "container": objects({"channel_id": loose, "message_ts": loose}) | scalars,
        "actions": st.lists(actions | json_values, max_size=2) | scalars,
        "trigger_id": st.text(max_size=10),
        "view": json_values,
    }
)
form_text = st.text(max_size=30)
slash = objects(
    {
        "command": st.sampled_from(["/aios", "/other"]) | form_text,
        "text": st.sampled_from(
            ["help", "status", "why AP-1", "pending", "cost today", "refund $5 on order 1002"]
        )
        | form_text,
        "user_id": st.sampled_from(["U0ALICE", ""]) | form_text,
        "channel_id": st.sampled_from(["C0SHOP", ""]) | form_text,
        "team_id": form_text,
    }
).map(lambda d: {str(k): str(v) for k, v in d.items()})

bodies = st.one_of(
    st.tuples(st.just("event"), envelopes.map(json.dumps), st.just("application/json")),
    st.tuples(st.just("event"), json_values.map(json.dumps), st.just("application/json")),
    st.tuples(st.just("slash"), slash.map(urlencode), st.just("application/x-www-form-urlencoded")),
    st.tuples(
        st.just("interactivity"),
        (interactive | json_values).map(lambda p: urlencode({"payload": json.dumps(p)})),
        st.just("application/x-www-form-urlencoded"),
    ),
)
signings = st.sampled_from(["signed", "signed", "signed", "unsigned", "wrong secret", "garbled headers"])
garbled = st.fixed_dictionaries(
    {
        "X-Slack-Request-Timestamp": st.text(max_size=20) | st.just("9" * 400),
        "X-Slack-Signature": st.text(max_size=70),
    }
)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    database = tmp_path_factory.mktemp("fuzz") / "aios.db"
    with (
        FakeSlackApi() as slack,
        running_aios_serve(aios_env(f"sqlite+aiosqlite:///{database}", slack.url)) as s,
    ):
        yield s.url, s.log


def _latin1(headers: dict[str, str]) -> dict[str, str]:
    """http.client sends header values as Latin-1; what cannot be sent that way is dropped by the fake client."""
    return {k: v for k, v in headers.items() if all(ord(c) < 256 and c not in "\r\n\0" for c in v)}


def test_random_bodies_never_get_a_5xx_and_the_server_stays_healthy(serve: tuple[str, Path]) -> None:
    url, log = serve
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=10)
    statuses: Counter[int] = Counter()
    sent: Counter[str] = Counter()

    @settings(
        max_examples=BODIES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(body=bodies, signing=signings, headers=garbled, not_utf8=st.booleans())
    def post_one(body: tuple[str, str, str], signing: str, headers: dict[str, str], not_utf8: bool) -> None:
        kind, text, content_type = body
        raw = text.encode() + (b"\xff\xfe" if not_utf8 and kind == "event" else b"")
        if signing == "signed":
            headers = sign(raw)
        elif signing == "wrong secret":
            headers = sign(raw, secret="not-the-secret")
        elif signing == "unsigned":
            headers = {}
        connection.request(
            "POST", "/slack/events", body=raw, headers={"Content-Type": content_type, **_latin1(headers)}
        )
        response = connection.getresponse()
        response.read()
        statuses[response.status] += 1
        sent[f"{kind}, {signing}"] += 1
        assert response.status < 500, (response.status, kind, signing, raw[:300])

    post_one()
    connection.close()
    print(f"\nbodies sent: {sum(sent.values())}: {dict(sorted(sent.items()))}")
    print(f"statuses seen: {dict(sorted(statuses.items()))}")
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        assert response.status == 200
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert not [line for line in lines if "Traceback" in line]
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert sum(sent.values()) >= BODIES * 0.9 and statuses[200] > 0 and statuses[401] > 0
