"""Scheduled posts go out: a schedule asked in words, approved, survives a restart, and at its time is published
once (across replicas too) with the thread told; refusals come before anyone is asked to approve."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from agents.dates import describe
from bot.bootstrap import Aios
from connectors.actions import Action, CmsCreateDraft, CmsPublish, CmsUnpublish, slugify
from connectors.base import ConnectorContext
from connectors.due_publishing import DueOutcome, DuePublish
from connectors.errors import PermanentConnectorError, TransientConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval, PauseAgent, PublishDuePosts, ResumeAgent
from storage.records import Approval, ProposedAction, ScheduledPublish
from storage.scheduled_publishes import ScheduledPublishes
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, ask, bus_with_connectors, start_aios

BERLIN = ZoneInfo("Europe/Berlin")
EDITOR = "U0EDITOR"
POLICY = """
version: 1
roles: {editor: [U0EDITOR], manager: [U0MANAGER]}
rules:
  - id: drafts-are-fine
    when: action.name == "cms.create_draft"
    verdict: allow
  - id: publishing-needs-an-editor
    when: action.name == "cms.publish"
    verdict: require_approval
    approvers: [editor]
    forbid_self_approval: true
default: require_approval
default_approvers: [manager]
"""


async def berlin_aios(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, policy: str = POLICY
) -> Aios:
    return await start_aios(
        database_url, slack_api, clock, tmp_path, policy=policy, AIOS_TIMEZONE="Europe/Berlin"
    )


def said(slack: FakeSlackApi, text: str) -> list[str]:
    return [c.params["text"] for c in slack.calls_to("chat.postMessage") if text in c.params["text"]]


async def posts(aios: Aios) -> dict[str, str]:
    return {post["slug"]: post["status"] for post in (await sandbox_state(aios.units))["posts"]}


async def timers(aios: Aios) -> list[ScheduledPublish]:
    async with aios.units() as uow:
        query = select(ScheduledPublish).order_by(col(ScheduledPublish.id))
        return list((await uow.session.exec(query)).all())


async def newest_approval(aios: Aios) -> Approval:
    async with aios.units() as uow:
        approvals = (await uow.session.exec(select(Approval).order_by(col(Approval.id)))).all()
    return approvals[-1]


async def schedule_and_approve(aios: Aios, slack_api: FakeSlackApi, words: str) -> ScheduledPublish:
    await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "seed-spring")
    await ask(aios, f"schedule post spring-lookbook for {words}")
    approval = await newest_approval(aios)
    assert approval.id is not None
    assert await timers(aios) == []  # nothing is timed before the approval
    await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
    [timer] = await timers(aios)
    assert said(slack_api, ":calendar: spring-lookbook goes out ") == [
        f":calendar: spring-lookbook goes out {_told(timer.publish_at)}; I'll say here when it is live."
    ]
    return timer


async def test_a_schedule_asked_in_words_is_approved_survives_a_restart_and_goes_out_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        timer = await schedule_and_approve(aios, slack_api, "next Monday 9am")
        local = timer.publish_at.astimezone(BERLIN)
        assert (local.weekday(), local.hour, local.minute, timer.zone) == (0, 9, 0, "Europe/Berlin")
        card = str(slack_api.approval_requests()[-1].params["blocks"])
        assert f"Schedule spring-lookbook to go out {_told(timer.publish_at)}." in card
        assert (await posts(aios))["spring-lookbook"] == "scheduled"
        await aios.process(PublishDuePosts())  # not yet due
        assert (await posts(aios))["spring-lookbook"] == "scheduled"
    finally:
        await aios.close()

    clock.now = timer.publish_at + timedelta(minutes=1)
    restarted = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        await restarted.process(PublishDuePosts())
        await restarted.process(PublishDuePosts())  # a second firing does nothing more
        assert (await posts(restarted))["spring-lookbook"] == "published"
        [settled] = await timers(restarted)
        assert (settled.outcome, settled.done_at) == ("published", clock.now)
        told = said(slack_api, "spring-lookbook is live since")
        assert told == [f":rocket: spring-lookbook is live since {_told(timer.publish_at)}."]
        assert "09:00 Europe/Berlin" in told[0]
    finally:
        await restarted.close()


def _told(moment: datetime) -> str:
    return describe(moment, BERLIN)


async def test_two_replicas_sweeping_at_once_publish_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await berlin_aios(database_url, slack_api, clock, tmp_path)
    second = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        timer = await schedule_and_approve(first, slack_api, "tomorrow 14:00")
        clock.now = timer.publish_at
        await asyncio.gather(*(replica.process(PublishDuePosts()) for replica in (first, second) * 3))
        assert (await posts(second))["spring-lookbook"] == "published"
        [settled] = await timers(second)
        assert settled.outcome == "published" and settled.claimed_by in (first.lease.id, second.lease.id)
        assert len(said(slack_api, "spring-lookbook is live since")) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_rejected_schedule_leaves_no_timer(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "seed-spring")
        await ask(aios, "schedule post spring-lookbook for tomorrow 14:00")
        approval = await newest_approval(aios)
        assert approval.id is not None
        await aios.process(DecideApproval(approval.id, EDITOR, False, CHANNEL))
        clock.advance(days=2)
        await aios.process(PublishDuePosts())
        assert await timers(aios) == [] and (await posts(aios))["spring-lookbook"] == "draft"
    finally:
        await aios.close()


async def refused(aios: Aios, slack_api: FakeSlackApi, words: str, thread_ts: str) -> str:
    before = len(await _approvals(aios))
    await ask(aios, words, thread_ts=thread_ts)
    assert len(await _approvals(aios)) == before, "nobody is asked to approve what is refused"
    replies: list[str] = [
        c.params["text"]
        for c in slack_api.calls_to("chat.postMessage")
        if c.params.get("thread_ts") == thread_ts
    ]
    return replies[-1]


async def _approvals(aios: Aios) -> Sequence[Approval]:
    async with aios.units() as uow:
        return (await uow.session.exec(select(Approval))).all()


async def test_times_that_cannot_go_out_are_refused_with_the_reason_before_any_approval(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    windows = POLICY + 'publishing:\n  windows: ["tue 09:00-12:00", "fri 09:00-12:00"]\n'
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path, windows)
    try:
        await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "seed-spring")
        await aios.registry.execute(CmsCreateDraft(title="Summer lookbook"), "seed-summer")
        await aios.registry.execute(CmsPublish(slug="summer-lookbook"), "publish-summer")

        unreadable = await refused(aios, slack_api, "schedule post spring-lookbook for someday soon", "1.1")
        assert "can't read “someday soon”" in unreadable and "`next Monday 9am`" in unreadable
        past = await refused(aios, slack_api, "schedule post spring-lookbook for 2020-01-07 10:00", "1.2")
        assert "Tue 7 Jan 2020 10:00 Europe/Berlin (09:00 UTC) is in the past" in past
        outside = await refused(aios, slack_api, "schedule post spring-lookbook for next Monday 9am", "1.3")
        assert "outside the publishing windows tue 09:00-12:00, fri 09:00-12:00 (Europe/Berlin)" in outside
        assert "the next one opens Tue " in outside
        live = await refused(aios, slack_api, "schedule post summer-lookbook for next Tuesday 10am", "1.4")
        assert "the post 'summer-lookbook' is already live" in live

        await ask(aios, "schedule post spring-lookbook for next Tuesday 10am", thread_ts="1.5")
        assert len(await _approvals(aios)) == 1  # inside a window: an editor is asked
    finally:
        await aios.close()


class FlakyCms(SandboxCms):
    """The sandbox CMS, whose first due publish fails as a CMS that is down would."""

    actions: ClassVar[tuple[type[Action], ...]] = SandboxCms.actions

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        self.failures = 1

    async def publish_due(self, slug: str, publish_at: datetime) -> DuePublish:
        if self.failures:
            self.failures -= 1
            raise TransientConnectorError("the CMS answered 503")
        return await super().publish_due(slug, publish_at)


async def test_a_cms_that_fails_is_tried_again_later_and_the_thread_is_told(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        timer = await schedule_and_approve(aios, slack_api, "tomorrow 14:00")
        bus = bus_with_connectors(aios, [FlakyCms(ConnectorContext(units_of_work=aios.units))])
        clock.now = timer.publish_at
        await bus.handle(PublishDuePosts())
        [waiting] = await timers(aios)
        assert (waiting.done_at, waiting.attempts, waiting.last_error) == (None, 1, "the CMS answered 503")
        assert said(slack_api, "could not publish it yet (the CMS answered 503). I'll keep trying, next at")
        await bus.handle(PublishDuePosts())  # before the next try: nothing
        assert (await posts(aios))["spring-lookbook"] == "scheduled"
        clock.advance(minutes=2)  # the CMS is back only later: the post is told as live since then
        await bus.handle(PublishDuePosts())
        assert (await posts(aios))["spring-lookbook"] == "published"
        assert said(slack_api, "spring-lookbook is live since") == [
            f":rocket: spring-lookbook is live since {_told(clock.now)}; it was due {_told(timer.publish_at)} "
            "(after 2 tries)."
        ]
    finally:
        await aios.close()


async def test_the_sandbox_publishes_what_is_due_and_leaves_what_people_changed(
    units: UnitOfWorkFactory,
) -> None:
    cms = SandboxCms(ConnectorContext(units_of_work=units))
    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    for title in ("Spring lookbook", "Summer lookbook", "Autumn lookbook"):
        await cms.execute(CmsCreateDraft(title=title), f"draft-{title}")
        await cms.execute(CmsPublish(slug=slugify(title), publish_at=later), f"schedule-{title}")
    await cms.execute(CmsPublish(slug="summer-lookbook", publish_at=later + timedelta(days=1)), "reschedule")
    await cms.execute(CmsUnpublish(slug="autumn-lookbook"), "take-down")

    assert await cms.publish_due("spring-lookbook", later) == DuePublish(DueOutcome.PUBLISHED)
    assert await cms.publish_due("spring-lookbook", later) == DuePublish(DueOutcome.ALREADY_LIVE)
    assert await cms.publish_due("summer-lookbook", later) == DuePublish(
        DueOutcome.LEFT_ALONE, "it was rescheduled", rescheduled_to=later + timedelta(days=1)
    )
    assert await cms.publish_due("autumn-lookbook", later) == DuePublish(
        DueOutcome.LEFT_ALONE, "it is unpublished now"
    )
    assert (await cms.publish_due("winter-lookbook", later)).outcome == DueOutcome.LEFT_ALONE

    live = CmsPublish(slug="spring-lookbook", publish_at=later + timedelta(days=7))
    says = "the post 'spring-lookbook' is already live; unpublish it first if it should go out again later"
    assert await cms.refusal(live) == says
    with pytest.raises(PermanentConnectorError, match="already live"):
        await cms.execute(live, "back-to-scheduled")
    assert await cms.refusal(CmsPublish(slug="summer-lookbook", publish_at=later)) is None  # rescheduling


async def test_a_row_held_by_a_live_replica_is_left_to_it_and_one_held_by_a_dead_process_is_taken_over(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await berlin_aios(database_url, slack_api, clock, tmp_path)
    second = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        timer = await schedule_and_approve(first, slack_api, "tomorrow 14:00")
        clock.now = timer.publish_at
        for owner, published in (
            (second.lease.id, "scheduled"),
            (first.lease.id + second.lease.id + 99, "published"),
        ):
            async with first.units() as uow:
                row = await uow.get(ScheduledPublish, timer.id)
                assert row is not None
                row.claimed_by, row.claimed_at = owner, clock.now
                uow.session.add(row)
                await uow.commit()
            await first.process(PublishDuePosts())
            assert (await posts(first))["spring-lookbook"] == published
        [settled] = await timers(first)
        assert (settled.outcome, settled.claimed_by) == ("published", first.lease.id)
    finally:
        await first.close()
        await second.close()


async def test_a_sweep_that_read_the_row_before_a_failed_attempt_neither_skips_the_wait_nor_warns_again(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        timer = await schedule_and_approve(aios, slack_api, "tomorrow 14:00")
        bus = bus_with_connectors(aios, [FlakyCms(ConnectorContext(units_of_work=aios.units))])
        clock.now = timer.publish_at
        async with aios.units() as uow:
            [stale] = await ScheduledPublishes(uow.session).due(clock.now)
        await bus.handle(PublishDuePosts())  # fails once: the next try is set a minute on
        async with aios.units() as uow:
            taken = await ScheduledPublishes(uow.session).claim(stale, aios.lease.id, clock.now)
            await uow.commit()
        assert taken is None
        [waiting] = await timers(aios)
        assert (waiting.attempts, waiting.claimed_by) == (1, None)
        assert len(said(slack_api, "could not publish it yet")) == 1
        async with aios.units() as uow:
            [fresh] = await ScheduledPublishes(uow.session).due(waiting.next_try_at or clock.now)
            claimed = await ScheduledPublishes(uow.session).claim(fresh, aios.lease.id, clock.now)
            await uow.commit()
        assert claimed is not None and (claimed.attempts, claimed.claimed_by) == (1, aios.lease.id)
    finally:
        await aios.close()


async def test_a_row_whose_settling_failed_is_taken_again_later_and_the_sweep_goes_on_meanwhile(
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        first = await schedule_and_approve(aios, slack_api, "tomorrow 14:00")
        await aios.registry.execute(CmsCreateDraft(title="Summer lookbook"), "seed-summer")
        await ask(aios, "schedule post summer-lookbook for tomorrow 14:00", message_ts="1700000000.000300")
        approval = await newest_approval(aios)
        assert approval.id is not None
        await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        settle = ScheduledPublishes.settle
        failures = [1]

        async def settle_failing_once(
            self: ScheduledPublishes,
            publish_id: int,
            owner: int,
            now: datetime,
            outcome: str,
            detail: str | None,
        ) -> bool:
            if failures:
                failures.pop()
                raise ConnectionError("the store went away")
            return await settle(self, publish_id, owner, now, outcome, detail)

        monkeypatch.setattr(ScheduledPublishes, "settle", settle_failing_once)
        clock.now = first.publish_at
        await aios.process(PublishDuePosts())
        stuck, settled = await timers(aios)
        assert (stuck.slug, stuck.done_at, stuck.claimed_by) == ("spring-lookbook", None, aios.lease.id)
        assert (settled.slug, settled.outcome) == ("summer-lookbook", "published")
        clock.advance(seconds=30)
        await aios.process(PublishDuePosts())  # still in hand, as far as anyone can tell
        assert (await timers(aios))[0].done_at is None
        clock.advance(seconds=60)  # longer than any attempt takes: the claim is free
        await aios.process(PublishDuePosts())
        assert (await timers(aios))[0].outcome == "already_live"
    finally:
        await aios.close()


DAYTIME = POLICY + 'publishing:\n  windows: ["mon-sun 09:00-17:00"]\n'


async def test_a_publish_approved_once_now_is_outside_the_windows_fails_with_the_reason(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # Tue 10:00 in Berlin
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path, DAYTIME)
    try:
        await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "seed-spring")
        await ask(aios, "publish post spring-lookbook")
        approval = await newest_approval(aios)
        assert approval.id is not None
        clock.now = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)  # 18:30 in Berlin: the window has closed
        await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        assert (await posts(aios))["spring-lookbook"] == "draft"
        [failed] = said(slack_api, ":x: cms.publish failed")
        assert "now is outside the publishing windows mon-sun 09:00-17:00 (Europe/Berlin)" in failed
        assert "so it was not published; ask again" in failed and "Nothing was changed." in failed
    finally:
        await aios.close()


async def test_a_schedule_that_could_not_run_before_its_time_fails_saying_so_and_expires_with_it(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "seed-spring")
        await ask(aios, "schedule post spring-lookbook for tomorrow 14:00")
        approval = await newest_approval(aios)
        [proposed] = await _publishes(aios)
        going_out = CmsPublish.model_validate(proposed.params).publish_at
        assert approval.id is not None and going_out is not None
        assert approval.expires_at == going_out  # nobody can approve it after its time
        await aios.process(PauseAgent("content", EDITOR, CHANNEL))
        await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        clock.now = going_out + timedelta(minutes=5)
        await aios.process(ResumeAgent("content", EDITOR, CHANNEL))
        assert (await posts(aios))["spring-lookbook"] == "draft" and await timers(aios) == []
        [failed] = said(slack_api, ":x: cms.publish failed")
        assert f"it was to go out {_told(going_out)}, and the time passed before it could run" in failed
    finally:
        await aios.close()


async def test_a_retry_that_lands_outside_the_windows_waits_for_the_next_opening_and_says_so_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # Tue 10:00 in Berlin
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path, DAYTIME)
    try:
        timer = await schedule_and_approve(aios, slack_api, "today 16:59")
        bus = bus_with_connectors(aios, [FlakyCms(ConnectorContext(units_of_work=aios.units))])
        clock.now = timer.publish_at
        await bus.handle(PublishDuePosts())  # the CMS is down; the next try, a minute on, is after 17:00
        assert said(slack_api, "but the sandbox CMS could not publish it yet")
        clock.advance(minutes=2)
        await bus.handle(PublishDuePosts())
        await bus.handle(PublishDuePosts())
        clock.advance(hours=2)
        await bus.handle(PublishDuePosts())
        assert (await posts(aios))["spring-lookbook"] == "scheduled"
        opening = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # Wed 09:00 in Berlin
        assert said(slack_api, ":hourglass:") == [
            f":hourglass: spring-lookbook was due {_told(timer.publish_at)} and is not live yet; now is outside "
            f"the publishing windows, so it goes out when the next one opens, {_told(opening)}."
        ]
        [waiting] = await timers(aios)
        assert (waiting.next_try_at, waiting.attempts) == (opening, 1)
        clock.now = opening
        await bus.handle(PublishDuePosts())
        assert (await posts(aios))["spring-lookbook"] == "published"
    finally:
        await aios.close()


async def test_the_thread_hears_done_then_when_the_post_goes_out_with_times_in_the_team_zone(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await berlin_aios(database_url, slack_api, clock, tmp_path)
    try:
        timer = await schedule_and_approve(aios, slack_api, "tomorrow 14:00")
        card = str(slack_api.approval_requests()[-1].params["blocks"])
        assert f"Publish post spring-lookbook at {_told(timer.publish_at)}" in card
        assert timer.publish_at.isoformat() not in card.split("params")[0]
        texts = [str(c.params["text"]) for c in slack_api.calls_to("chat.postMessage")]
        done = next(i for i, text in enumerate(texts) if text.startswith(":white_check_mark: Done"))
        calendar = next(i for i, text in enumerate(texts) if text.startswith(":calendar:"))
        assert done < calendar
        assert f"Done: Publish post spring-lookbook at {_told(timer.publish_at)}." in texts[done]
        assert not [text for text in texts if "SandboxCms" in text]
    finally:
        await aios.close()


async def _publishes(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        query = select(ProposedAction).where(ProposedAction.name == "cms.publish")
        return list((await uow.session.exec(query)).all())


async def test_the_sandbox_cms_decides_by_the_clock_it_is_given(units: UnitOfWorkFactory) -> None:
    behind = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)  # years before the real clock
    cms = SandboxCms(ConnectorContext(units_of_work=units, clock=lambda: behind))
    await cms.execute(CmsCreateDraft(title="Spring lookbook"), "draft")
    result = await cms.execute(
        CmsPublish(slug="spring-lookbook", publish_at=behind + timedelta(hours=1)), "schedule"
    )
    assert result["status"] == "scheduled"  # ahead of the bot's clock, though long past by the real one
    [post] = (await sandbox_state(units))["posts"]
    assert datetime.fromisoformat(post["updated_at"]) == behind
