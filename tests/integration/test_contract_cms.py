"""One contract for every CMS connector: the sandbox must behave like WordPress (a real one, on PHP and MariaDB).

Each test reads the CMS's own state afterwards — the sandbox's table, or WordPress's posts through its REST
API — in the same words: ``draft`` (not visible to readers, whether never published or unpublished),
``scheduled`` or ``published``. A "crash between sent and recorded" is an action carried out by one connector
instance and asked about by a fresh one, which knows nothing but what the CMS itself keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlmodel import select

from connectors.actions import Action, CmsCreateDraft, CmsPublish, CmsUnpublish
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.wordpress_cms import WordPressCms
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import SandboxPost
from storage.unit_of_work import UnitOfWorkFactory
from tests.fakes.wordpress_server import WordPressServer

KEY = "3f1a9c"  # idempotency keys are hex digests in the bot


class Cms(Protocol):
    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]: ...
    async def refusal(self, action: Action) -> str | None: ...
    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None: ...


@dataclass
class CmsUnderTest:
    new: Callable[[], Cms]  # a fresh connector instance on the same CMS
    states: Callable[[str], Any]  # async: the states of the posts with this slug, as the CMS keeps them


@pytest.fixture(params=["sandbox", "wordpress"])
async def cms(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CmsUnderTest]:
    if request.param == "wordpress":
        site: WordPressServer = request.getfixturevalue("wordpress")
        context = ConnectorContext(
            units_of_work=None,  # type: ignore[arg-type]  # WordPress keeps everything itself
            settings={
                "WORDPRESS_URL": site.url,
                "WORDPRESS_USER": site.user,
                "WORDPRESS_APP_PASSWORD": site.app_password,
            },
        )
        built: list[WordPressCms] = []

        def wordpress_cms() -> Cms:
            connector = WordPressCms.configured(context)
            assert connector is not None
            built.append(connector)
            return connector

        async def wordpress_states(slug: str) -> list[str]:
            words = {"draft": "draft", "future": "scheduled", "publish": "published"}
            return [words[str(post["status"])] for post in site.posts(slug=slug)]

        yield CmsUnderTest(wordpress_cms, wordpress_states)
        for connector in built:
            await connector.close()
        return
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/cms.db")
    await upgrade_to_head(engine)
    units = UnitOfWorkFactory.for_engine(engine)

    async def sandbox_states(slug: str) -> list[str]:
        async with units() as uow:
            posts = (await uow.session.exec(select(SandboxPost).where(SandboxPost.slug == slug))).all()
        return ["draft" if post.status == "unpublished" else post.status for post in posts]

    yield CmsUnderTest(lambda: SandboxCms(ConnectorContext(units_of_work=units)), sandbox_states)
    await engine.dispose()


DRAFT = CmsCreateDraft(title="Spring lookbook", body="Linen, clay and morning light.")


async def test_a_draft_is_created_under_its_slug(cms: CmsUnderTest) -> None:
    result = await cms.new().execute(DRAFT, KEY)
    assert (result["slug"], result["status"], result["replayed"]) == ("spring-lookbook", "draft", False)
    assert result["post_id"]
    assert await cms.states("spring-lookbook") == ["draft"]


async def test_the_same_key_makes_one_post_and_returns_the_first(cms: CmsUnderTest) -> None:
    connector = cms.new()
    first = await connector.execute(DRAFT, KEY)
    again = [await connector.execute(DRAFT, KEY) for _ in range(2)]
    again += await asyncio.gather(*(connector.execute(DRAFT, KEY) for _ in range(3)))
    assert {r["post_id"] for r in again} == {first["post_id"]}
    assert all(r["replayed"] for r in again)
    assert await cms.states("spring-lookbook") == ["draft"]


async def test_lookup_finds_a_landed_key_and_nothing_for_an_unknown_one(cms: CmsUnderTest) -> None:
    made = await cms.new().execute(DRAFT, KEY)
    found = await cms.new().lookup(DRAFT, KEY)
    assert found is not None and (found["post_id"], found["replayed"]) == (made["post_id"], True)
    assert await cms.new().lookup(DRAFT, "other-key") is None
    assert await cms.new().lookup(CmsCreateDraft(title="Never written"), KEY) is None
    assert await cms.new().lookup(CmsPublish(slug="spring-lookbook"), "another-key") is None


async def test_a_crash_between_sent_and_recorded_is_found_and_not_repeated(cms: CmsUnderTest) -> None:
    """The first instance's answer is lost; a fresh one looks first, finds the work, and does not do it twice."""
    await cms.new().execute(DRAFT, KEY)
    publish = CmsPublish(slug="spring-lookbook")
    sent = await cms.new().execute(publish, "publish-key")
    after_restart = cms.new()
    found = await after_restart.lookup(publish, "publish-key")
    assert found is not None and (found["post_id"], found["status"]) == (sent["post_id"], "published")
    repeated = await after_restart.execute(publish, "publish-key")
    assert (repeated["post_id"], repeated["replayed"]) == (sent["post_id"], True)
    assert await cms.states("spring-lookbook") == ["published"]


async def test_another_key_for_a_taken_slug_is_refused(cms: CmsUnderTest) -> None:
    await cms.new().execute(DRAFT, KEY)
    with pytest.raises(PermanentConnectorError, match="spring-lookbook"):
        await cms.new().execute(CmsCreateDraft(title="Spring lookbook", body="A second one"), "other-key")
    assert await cms.states("spring-lookbook") == ["draft"]


async def test_publish_now_schedule_later_and_unpublish(cms: CmsUnderTest) -> None:
    connector = cms.new()
    await connector.execute(DRAFT, KEY)
    await connector.execute(CmsCreateDraft(title="Summer lookbook"), "summer-key")

    published = await connector.execute(CmsPublish(slug="spring-lookbook"), "publish-key")
    later = datetime.now(UTC) + timedelta(days=3)
    scheduled = await connector.execute(CmsPublish(slug="summer-lookbook", publish_at=later), "schedule-key")
    assert (published["status"], scheduled["status"]) == ("published", "scheduled")
    assert (await cms.states("spring-lookbook"), await cms.states("summer-lookbook")) == (
        ["published"],
        ["scheduled"],
    )

    for slug in ("spring-lookbook", "summer-lookbook"):
        undone = await connector.execute(CmsUnpublish(slug=slug), f"unpublish-{slug}")
        assert (undone["status"], undone["replayed"]) == ("unpublished", False)
        assert await cms.states(slug) == ["draft"]


async def test_a_publish_time_without_a_zone_is_utc(cms: CmsUnderTest) -> None:
    connector = cms.new()
    await connector.execute(DRAFT, KEY)
    later = (datetime.now(UTC) + timedelta(days=3)).replace(tzinfo=None, microsecond=0)
    action = CmsPublish.model_validate({"slug": "spring-lookbook", "publish_at": later.isoformat()})
    assert action.publish_at == later.replace(tzinfo=UTC)
    assert (await connector.execute(action, "schedule-key"))["status"] == "scheduled"
    assert await cms.states("spring-lookbook") == ["scheduled"]


async def test_a_repeated_publish_after_an_unpublish_changes_nothing(cms: CmsUnderTest) -> None:
    """The key, not the post's state, says whether an action landed: a late retry of the publish does not
    put back a post that was taken down since."""
    connector = cms.new()
    await connector.execute(DRAFT, KEY)
    await connector.execute(CmsPublish(slug="spring-lookbook"), "publish-key")
    await connector.execute(CmsUnpublish(slug="spring-lookbook"), "unpublish-key")

    retried = await cms.new().execute(CmsPublish(slug="spring-lookbook"), "publish-key")
    assert retried["replayed"] is True
    assert await cms.states("spring-lookbook") == ["draft"]


@pytest.mark.parametrize("action", [CmsPublish(slug="no-such-post"), CmsUnpublish(slug="no-such-post")])
async def test_changing_a_post_that_does_not_exist_is_refused(cms: CmsUnderTest, action: Action) -> None:
    with pytest.raises(PermanentConnectorError, match="no post with the slug 'no-such-post'"):
        await cms.new().execute(action, KEY)
    assert await cms.new().lookup(action, KEY) is None
    assert await cms.states("no-such-post") == []


@pytest.mark.parametrize(
    "action",
    [
        CmsPublish(slug="no-such-post"),
        CmsPublish(slug="no-such-post", publish_at=datetime(2031, 1, 6, 9, 0, tzinfo=UTC)),
        CmsUnpublish(slug="no-such-post"),
    ],
)
async def test_approving_a_change_of_a_post_that_does_not_exist_is_never_asked(
    cms: CmsUnderTest, action: Action
) -> None:
    refusal = await cms.new().refusal(action)
    assert refusal is not None and "no post with the slug 'no-such-post'" in refusal


async def test_a_post_that_exists_may_be_published_or_scheduled_but_a_live_one_not_scheduled(
    cms: CmsUnderTest,
) -> None:
    connector = cms.new()
    await connector.execute(DRAFT, KEY)
    later = datetime(2031, 1, 6, 9, 0, tzinfo=UTC)
    assert await connector.refusal(CmsPublish(slug="spring-lookbook", publish_at=later)) is None
    await connector.execute(CmsPublish(slug="spring-lookbook"), "publish-key")
    refusal = await connector.refusal(CmsPublish(slug="spring-lookbook", publish_at=later))
    assert refusal is not None and "is already live" in refusal
