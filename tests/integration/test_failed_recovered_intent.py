"""An intent taken over from a process that died, whose planning then fails, is told failed in its thread and
left so — not `received` under the live process that took it, which no sweep of that process hands back."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from runtime.intake import IncomingIntent
from runtime.messages import Recover
from storage.records import Intent
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, REQUESTER, start_aios


async def test_a_taken_over_intent_whose_planning_fails_is_told_failed(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    # A slash command stored and acked, and its process gone before planning it.
    intent_id = await first.accept(
        IncomingIntent(
            source="slash", team_id="T0FAKE", channel=CHANNEL, thread_ts=None, user=REQUESTER, text="status?"
        )
    )
    assert intent_id is not None
    await first.close()

    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        slack_api.fail_next("chat.postMessage", "internal_error")  # the thread cannot be opened, this once
        await second.process(Recover(grace_seconds=0))
        async with second.units() as uow:
            intent = (await uow.session.exec(select(Intent))).one()
        assert intent.status == "failed"
        told = [c.params["text"] for c in slack_api.calls_to("chat.postMessage")]
        assert any(f"something went wrong while handling I-{intent_id}" in text for text in told)
    finally:
        await second.close()
