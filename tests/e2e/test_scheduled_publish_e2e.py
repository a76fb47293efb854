"""`aios serve` publishes a scheduled post by itself: a schedule asked in words and approved by an editor goes out
when it falls due, by the process's own timer, and the thread is told."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from agents.dates import describe
from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, sign

BERLIN = ZoneInfo("Europe/Berlin")


async def deliver(url: str, body: str, content_type: str) -> None:
    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": content_type, **sign(body)}
        async with session.post(f"{url}/slack/events", data=body, headers=headers) as response:
            assert response.status == 200


def rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def live_since(slack: FakeSlackApi) -> list[str]:
    return [
        c.params["text"] for c in slack.calls_to("chat.postMessage") if "is live since" in c.params["text"]
    ]


def test_aios_serve_publishes_a_scheduled_post_when_it_falls_due(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url) | {"AIOS_TIMEZONE": "Europe/Berlin"}
        with running_aios_serve(env) as serve:
            asyncio.run(
                deliver(
                    serve.url, *app_mention('draft a post titled "Spring lookbook"', user="U0ALICE", ts="1.1")
                )
            )
            slack.wait_for(lambda _: rows(database, "SELECT status FROM sandbox_post") == [("draft",)])

            due = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
            words = f"schedule post spring-lookbook for {due.astimezone(BERLIN):%Y-%m-%d %H:%M:%S}"
            asyncio.run(deliver(serve.url, *app_mention(words, user="U0ALICE", ts="1.2")))
            slack.wait_for(lambda _: rows(database, "SELECT id FROM approval WHERE status = 'pending'"))
            [(approval,)] = rows(database, "SELECT id FROM approval WHERE status = 'pending'")
            click = block_action("aios_approve", f"AP-{approval}", user="U0EDITOR", message_ts="1.3")
            asyncio.run(deliver(serve.url, *click))
            slack.wait_for(lambda _: rows(database, "SELECT status FROM sandbox_post") == [("scheduled",)])

            # The sweep runs every 15 s: the post goes out within one sweep of falling due.
            slack.wait_for(live_since, timeout=40)
            assert rows(database, "SELECT status FROM sandbox_post") == [("published",)]
            assert rows(database, "SELECT outcome, attempts FROM scheduled_publish") == [("published", 0)]
            assert live_since(slack) == [f":rocket: spring-lookbook is live since {describe(due, BERLIN)}."]


def test_aios_chat_publishes_what_fell_due_while_no_process_ran(tmp_path: Path) -> None:
    """A post scheduled in `aios chat`, whose time passes while nothing runs, goes out when the next chat starts,
    once, and says so; the chat after that publishes nothing more."""
    database = tmp_path / "aios.db"
    env = aios_env(f"sqlite+aiosqlite:///{database}", "http://127.0.0.1:9/api/") | {
        "AIOS_TIMEZONE": "Europe/Berlin"
    }
    script = 'draft a post titled "Spring lookbook"\nschedule post spring-lookbook for tomorrow 9am\n'
    first = chat(env, script + "approve as U0EDITOR\nquit\n")
    assert first.returncode == 0 and "I'll say here when it is live" in first.stdout, first.stdout
    assert rows(database, "SELECT status FROM sandbox_post") == [("scheduled",)]

    # Time passes with no process running: the post's time (as the CMS and the timer hold it) is now behind us.
    due = f"{datetime.now(UTC) - timedelta(minutes=5):%Y-%m-%d %H:%M:%S}.000000"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE scheduled_publish SET publish_at = ?", (due,))
        connection.execute("UPDATE sandbox_post SET publish_at = ?", (due,))

    second = chat(env, "quit\n")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("spring-lookbook is live since") == 1, second.stdout
    assert rows(database, "SELECT status FROM sandbox_post") == [("published",)]
    assert rows(database, "SELECT outcome FROM scheduled_publish") == [("published",)]
    assert "is live since" not in chat(env, "quit\n").stdout


def chat(env: dict[str, str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIOS, "chat", "--as", "U0CAROL"], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
