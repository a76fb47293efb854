"""The content calendar from a terminal: a month planned and approved in `aios chat`, then shown by `/aios
calendar` there and by `aios calendar`; a month it cannot read is one line and a failing exit. And in Slack: the
calendar as Block Kit, for the asker's eyes only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import aiohttp
from slack_sdk.models.blocks import Block

from tests.e2e.conftest import Server
from tests.fakes.aios_process import AIOS, aios_env
from tests.fakes.slack_api import ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import sign, slash_command

WRITER = "U0CAROL"


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_a_month_planned_in_chat_is_shown_in_chat_and_by_the_calendar_command(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/calendar.db", "http://127.0.0.1:9/api/")
    script = "\n".join(
        [
            "/aios plan next month: 2 posts about winter care, on Tuesdays",
            "approve all as U0EDITOR",
            "/aios calendar next month",
            "quit",
        ]
    )
    chat = run("chat", "--as", "U0CAROL", env=env, stdin=script + "\n")
    assert chat.returncode == 0, chat.stderr
    assert "Review: 2 actions" in chat.stdout and "Approvers: editor" in chat.stdout  # one card, one click
    assert "Reviewed: 2 actions" in chat.stdout and chat.stdout.count("approved by @U0EDITOR") == 2
    assert "2 planned" in chat.stdout and "· planned · “Winter care: the beginner's checklist”" in chat.stdout

    table = run("calendar", "next", "month", env=env)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "○ planned" in line]
    assert len(rows) == 2 and "Winter care: the" in rows[0]  # the title wraps in an 80-column table
    assert "A-" in rows[0]

    unreadable = run("calendar", "someday", env=env)
    assert unreadable.returncode == 2
    assert unreadable.stderr.strip().startswith(
        "error: I can't read “someday” as a month; try `aios calendar`"
    )
    assert "Traceback" not in unreadable.stderr


async def test_slash_calendar_answers_the_asker_with_block_kit(server: Server) -> None:
    for words in ("calendar 2026-12", "calendar someday"):
        body, content_type = slash_command(words, user=WRITER)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{server.url}/slack/events", data=body, headers={"Content-Type": content_type, **sign(body)}
            ) as response,
        ):
            assert response.status == 200
    calls = server.slack.wait_for(lambda s: answers if len(answers := _ephemerals(s)) == 2 else [])
    by_text = {call.params["text"]: call.params for call in calls}
    month = next(
        params for text, params in by_text.items() if text.startswith("Content calendar: December 2026")
    )
    blocks = month["blocks"] if isinstance(month["blocks"], list) else json.loads(month["blocks"])
    for block in blocks:
        Block.parse(block).validate_json()  # type: ignore[union-attr]
    assert blocks[0] == {"type": "header", "block_id": "aios_calendar_header", "text": {
        "type": "plain_text", "text": "Content calendar: December 2026", "emoji": True
    }}  # fmt: skip
    assert [b["block_id"] for b in blocks[2:]] == [f"aios_calendar_week_{n}" for n in range(1, 6)]
    assert any(text.startswith("I can't read “someday” as a month") for text in by_text)


def _ephemerals(slack: FakeSlackApi) -> list[ApiCall]:
    return [call for call in slack.calls_to("chat.postEphemeral") if call.params["user"] == WRITER]
