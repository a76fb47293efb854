"""`aios serve` publishes a scheduled post by itself: a schedule asked in words and approved by an editor goes out
when it falls due, by the process's own timer, and the thread is told."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from agents.dates import describe
from tests.fakes.aios_process import aios_env, running_aios_serve
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
