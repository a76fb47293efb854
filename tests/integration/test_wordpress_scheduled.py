"""A post scheduled in a real WordPress (WP-Cron off, so WordPress never publishes it by itself) goes out when
the bot's timer finds it due: `future` becomes `publish` through REST, once, and the thread is told."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import select

from agents.dates import describe
from bot.messages import DecideApproval, PublishDuePosts
from storage.records import Approval, ScheduledPublish
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.wordpress_server import WordPressServer
from tests.integration.conftest import CHANNEL, ask
from tests.integration.test_wordpress import EDITOR, SPRING, wordpress_aios

BERLIN = ZoneInfo("Europe/Berlin")


async def test_a_future_post_is_published_by_the_timer_once_it_is_due(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(
        database_url, slack_api, clock, tmp_path, wordpress, AIOS_TIMEZONE="Europe/Berlin"
    )
    try:
        await aios.registry.execute(SPRING, "seed-spring")
        # A few seconds ahead: WordPress, on its own clock, publishes only what is due by that clock.
        soon = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
        await ask(aios, f"schedule post spring-lookbook for {soon.astimezone(BERLIN):%Y-%m-%d %H:%M:%S}")
        async with aios.units() as uow:
            [approval] = (await uow.repo.session.exec(select(Approval))).all()
        assert approval.id is not None
        await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        [post] = wordpress.posts(slug="spring-lookbook")
        assert (post["status"], post["date_gmt"]) == ("future", soon.replace(tzinfo=None).isoformat())

        await aios.process(PublishDuePosts())  # not due yet by the bot's clock
        assert wordpress.posts(slug="spring-lookbook")[0]["status"] == "future"

        await asyncio.sleep((soon - datetime.now(UTC)).total_seconds() + 1)  # due by WordPress's clock too
        clock.now = soon
        await aios.process(PublishDuePosts())
        await aios.process(PublishDuePosts())
        [post] = wordpress.posts(slug="spring-lookbook")
        assert (post["status"], post["date_gmt"]) == ("publish", soon.replace(tzinfo=None).isoformat())
        async with aios.units() as uow:
            [timer] = (await uow.repo.session.exec(select(ScheduledPublish))).all()
        assert (timer.connector, timer.outcome, timer.attempts) == ("WordPressCms", "published", 0)
        told = [
            c.params["text"]
            for c in slack_api.calls_to("chat.postMessage")
            if "is live since" in c.params["text"]
        ]
        assert told == [f":rocket: spring-lookbook is live since {describe(soon, BERLIN)}."]
    finally:
        await aios.close()
