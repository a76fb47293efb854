"""`/aios replay` in Slack: signed slash commands into the real `aios serve`, the private Block Kit answer out
through the fake Slack Web API."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from policies.engine import DEFAULT_POLICY
from tests.e2e.conftest import Server
from tests.e2e.test_serve import send
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import slash_command

ASKER = "U0ALICE"
CANDIDATE = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: every-refund-needs-a-manager
    when: action.name == "shop.refund"
    verdict: require_approval
    approvers: [manager]
default: require_approval
default_approvers: [manager]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("replay-serve")
    candidate = folder / "candidate.yaml"
    candidate.write_text(CANDIDATE)
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{folder / 'aios.db'}", slack.url)
        env["AIOS_CANDIDATE_POLICY_FILE"] = str(candidate)
        with running_aios_serve(env) as serve:
            yield Server(serve.url, env, slack, serve.log)


def private_answers(slack: FakeSlackApi, user: str) -> list[tuple[str, list[dict[str, Any]]]]:
    answers = []
    for call in slack.calls_to("chat.postEphemeral"):
        if call.params["user"] != user:
            continue
        blocks = call.params.get("blocks") or []
        answers.append((call.params["text"], json.loads(blocks) if isinstance(blocks, str) else blocks))
    return answers


async def ask_privately(server: Server, text: str, user: str) -> tuple[str, list[dict[str, Any]]]:
    seen = len(private_answers(server.slack, user))
    await send(server, *slash_command(text, user=user))
    return server.slack.wait_for(lambda s: private_answers(s, user)[seen:])[0]  # type: ignore[no-any-return]


async def test_replay_of_a_run_is_a_private_block_kit_diff(server: Server) -> None:
    await send(server, *slash_command("refund order 1004 $50 scratched", user=ASKER))
    server.slack.wait_for(
        lambda s: [c for c in s.calls_to("chat.postMessage") if "Allowed" in c.params["text"]]
    )

    text, blocks = await ask_privately(server, "replay R-1", "U0REPLAY1")
    assert [block["type"] for block in blocks] == ["header", "section", "section"]
    assert blocks[0]["text"]["text"].startswith("Replay of R-1 under ")
    assert "1 × shop.refund totalling $50.00 would have needed approval by manager (stricter)" in str(blocks)
    assert "small-refunds-are-fine" in blocks[2]["text"]["text"]
    assert "every-refund-needs-a-manager" in text

    # Against the recorded version itself (named by a hash prefix): nothing changes.
    packaged = hashlib.sha256(DEFAULT_POLICY.read_bytes()).hexdigest()
    _, blocks = await ask_privately(server, f"replay R-1 {packaged[:10]}", "U0REPLAY2")
    assert "0 would change" in blocks[1]["text"]["text"]
    assert "unchanged" in blocks[2]["text"]["text"]


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("replay", "Which run, against which policy?"),
        ("replay A-1", "is not a run id; run ids look like R-17"),
        ("replay R-999", "There is no run R-999."),
        ("replay R-1 xyz!", "is not a policy hash prefix"),
        ("replay R-1 0000000000", "No stored policy version has a hash starting with 0000000000."),
    ],
)
async def test_bad_replay_requests_get_one_clear_sentence(server: Server, command: str, answer: str) -> None:
    await send(server, *slash_command("refund order 1003 $1 scratched", user=ASKER))  # so that R-1 exists
    server.slack.wait_for(
        lambda s: [c for c in s.calls_to("chat.postMessage") if "Allowed" in c.params["text"]]
    )
    user = f"U0BAD{abs(hash(command)) % 10_000}"
    text, blocks = await ask_privately(server, command, user)
    assert answer in text and blocks == []
