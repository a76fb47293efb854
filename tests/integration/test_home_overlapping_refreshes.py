"""Two refreshes of one person's App Home in one process overlap (an event's redraw and a click's answer, say):
both read the published hash before either publishes. They publish one after the other, so the second knows the
first's publish is what Slack shows: the stored hash stays, and a later refresh has nothing to publish."""

from __future__ import annotations

import asyncio

from bot.bootstrap import Aios
from storage.home_viewers import HomeViewers
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import ask

ALICE = "U0ALICE"


async def test_overlapping_refreshes_keep_the_published_hash(aios: Aios, slack_api: FakeSlackApi) -> None:
    await aios.home.opened(ALICE, "T0FAKE")
    await ask(aios, "refund $120 on order 1003, wrong size", user=ALICE, thread_ts="1.1")
    await aios.home.settle()
    async with aios.units() as uow:
        viewer = await HomeViewers(uow.session).get(ALICE)
    assert viewer is not None

    # Both drawn from the same read of the viewer, as two refreshes that started before either published.
    await asyncio.gather(aios.home._refresh([viewer], always=True), aios.home._refresh([viewer], always=True))
    async with aios.units() as uow:
        stored = await HomeViewers(uow.session).get(ALICE)
    assert stored is not None and stored.last_published_hash is not None

    published = len(slack_api.calls_to("views.publish"))
    await aios.home.refresh_all()
    assert len(slack_api.calls_to("views.publish")) == published
