"""A post scheduled in a real WordPress (WP-Cron off, so WordPress never publishes it by itself) goes out when
the bot's timer finds it due: `future` becomes `publish` through REST, once, and the thread is told. The bot's
clock is moved to the post's time rather than the test waiting for it, so WordPress's clock is behind the bot's
then, as a site's clock may be."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import select

from agents.dates import describe
from runtime.messages import DecideApproval, PublishDuePosts
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
        # WordPress publishes at once a `future` post less than a minute ahead of its own clock: this one is
        # three minutes ahead, and the bot's clock, not WordPress's, is moved to its time.
        soon = (datetime.now(UTC) + timedelta(minutes=3)).replace(microsecond=0)
        await ask(aios, f"schedule post spring-lookbook for {soon.astimezone(BERLIN):%Y-%m-%d %H:%M:%S}")
        async with aios.units() as uow:
            [approval] = (await uow.session.exec(select(Approval))).all()
        assert approval.id is not None
        await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        [post] = wordpress.posts(slug="spring-lookbook")
        assert (post["status"], post["date_gmt"]) == ("future", soon.replace(tzinfo=None).isoformat())

        await aios.process(PublishDuePosts())  # not due yet by the bot's clock
        assert wordpress.posts(slug="spring-lookbook")[0]["status"] == "future"

        clock.now = soon
        await aios.process(PublishDuePosts())
        await aios.process(PublishDuePosts())
        # Due by the bot's clock, three minutes ahead of WordPress's: published, dated by WordPress's clock.
        [post] = wordpress.posts(slug="spring-lookbook")
        dated = datetime.fromisoformat(str(post["date_gmt"])).replace(tzinfo=UTC)
        assert post["status"] == "publish"
        assert soon - timedelta(minutes=4) < dated < soon - timedelta(minutes=1)
        async with aios.units() as uow:
            [timer] = (await uow.session.exec(select(ScheduledPublish))).all()
        assert (timer.connector, timer.outcome, timer.attempts) == ("WordPressCms", "published", 0)
        told = [
            c.params["text"]
            for c in slack_api.calls_to("chat.postMessage")
            if "is live since" in c.params["text"]
        ]
        assert told == [f":rocket: spring-lookbook is live since {describe(soon, BERLIN)}."]
    finally:
        await aios.close()
