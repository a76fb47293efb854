"""A month planned in words: slots on the days asked, at the windows' opening in the team's zone, at most as many
as asked, avoiding titles used before; each planned draft judged by the policy, and an approval (clicked twice)
makes its draft and its slot once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from slack_sdk.models.blocks import Block
from sqlmodel import col, select

from bot.bootstrap import Aios
from bot.console import render
from bot.content_calendar import calendar_answer
from bot.explain import explain
from connectors.actions import CmsCreateDraft, CmsPublish
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval, PauseAgent, ResumeAgent
from storage.records import Approval, PlannedSlot, ProposedAction, SandboxPost
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.wordpress_server import WordPressServer
from tests.integration.conftest import CHANNEL, ask, start_aios
from tests.integration.test_wordpress import wordpress_aios

BERLIN = ZoneInfo("Europe/Berlin")
EDITOR = "U0EDITOR"
POLICY = """
version: 1
roles: {editor: [U0EDITOR], manager: [U0MANAGER]}
rules:
  - id: planned-drafts-need-an-editor
    when: action.name == "cms.create_draft" && action.params.planned_for != null
    verdict: require_approval
    approvers: [editor]
  - id: drafts-are-fine
    when: action.name == "cms.create_draft"
    verdict: allow
default: require_approval
default_approvers: [manager]
publishing:
  windows: ["tue 09:00-12:00", "fri 10:00-12:00"]
memory:
  summarise_after: 30d
"""
# The clocks go back on 25 October 2026 in Berlin: November plans in winter time, from a clock still in summer.
NOW = datetime(2026, 10, 20, 8, 0, tzinfo=UTC)


async def calendar_aios(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, **settings: str
) -> Aios:
    clock.now = NOW
    return await start_aios(
        database_url, slack_api, clock, tmp_path, policy=POLICY, AIOS_TIMEZONE="Europe/Berlin", **settings
    )


async def approvals(aios: Aios) -> list[Approval]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(Approval).order_by(col(Approval.id)))).all())


async def slots(aios: Aios) -> list[PlannedSlot]:
    async with aios.units() as uow:
        query = select(PlannedSlot).order_by(col(PlannedSlot.planned_for))
        return list((await uow.session.exec(query)).all())


async def test_a_planned_month_is_approved_into_drafts_and_slots_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        # Two old memories of one post, folded by retention into one summary: planning reads the summary.
        clock.now = NOW - timedelta(days=60)
        for fact in (
            "drafted the post winter-care-on-a-budget. Title given by the requester/model (unverified): "
            '"Winter care on a budget"',
            "published the post winter-care-on-a-budget; it was read 4,000 times.",
        ):
            await aios.memory.remember("T0FAKE", fact, kind="post", key="post:winter-care-on-a-budget")
        clock.now = NOW
        assert (await aios.memory.maintain())["summarised"] == 2
        await aios.memory.remember("T0FAKE", "Plain, warm, specific; no hype.", kind="brand_voice")
        await ask(aios, "plan November: two posts a week about winter care, Tuesdays and Fridays")
        asked = await approvals(aios)
        assert await slots(aios) == []  # nothing is planned before an editor approves
        # November 2026 has four Tuesdays and four Fridays: eight slots, never more than two a week.
        assert len(asked) == 8
        for approval in asked:
            assert approval.id is not None
            await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        first = asked[0].id
        assert first is not None
        await aios.process(DecideApproval(first, EDITOR, True, CHANNEL))  # the click delivered again
        planned = await slots(aios)
        assert len(planned) == 8
        local = [slot.planned_for.astimezone(BERLIN) for slot in planned]
        assert {(t.weekday(), t.hour, t.minute) for t in local} == {(1, 9, 0), (4, 10, 0)}
        assert all(t.month == 11 for t in local)
        assert planned[0].planned_for.astimezone(UTC).hour == 8  # winter time: 09:00 in Berlin is 08:00 UTC
        titles = [slot.title for slot in planned]
        assert "Winter care on a budget" not in titles
        assert len(set(titles)) == 8 and all(slot.angle for slot in planned)
        why = await explain(aios.units, "R-1")
        assert "(summary, key `post:winter-care-on-a-budget`) Summary of 2 post memories" in why
        assert "(brand_voice, no key) Plain, warm, specific; no hype." in why
        posts = {post["slug"]: post["status"] for post in (await sandbox_state(aios.units))["posts"]}
        assert {slot.slug: "draft" for slot in planned}.items() <= posts.items()
        assert len(posts) == 8
    finally:
        await aios.close()


async def test_the_calendar_shows_each_week_of_the_month_from_the_slots_and_the_cms(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "plan November: one post a week about pricing, on Fridays")
        for approval in await approvals(aios):
            assert approval.id is not None
            await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        first, second, third, fourth = await slots(aios)
        # The first slot's post went out early, the second's is written; and a draft outside the calendar.
        await aios.registry.execute(CmsPublish(slug=first.slug), "publish-first")
        await aios.registry.execute(CmsCreateDraft(title="Holiday opening hours"), "outside")
        async with aios.units() as uow:
            session = uow.session
            written = (await session.exec(select(SandboxPost).where(SandboxPost.slug == second.slug))).one()
            written.body = "<p>Prices, plainly.</p>"
            published = (await session.exec(select(SandboxPost).where(SandboxPost.slug == first.slug))).one()
            published.publish_at = first.planned_for
            outside = (
                await session.exec(select(SandboxPost).where(SandboxPost.slug == "holiday-opening-hours"))
            ).one()
            outside.updated_at = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
            session.add_all([written, published, outside])
            await uow.commit()

        text, blocks = await calendar_answer(aios.units, aios.registry, BERLIN, clock(), "T0FAKE", "november")
        assert blocks is not None
        for block in blocks:
            Block.parse(block).validate_json()  # type: ignore[union-attr]
        assert text == (
            "Content calendar: November 2026 (Europe/Berlin): :white_circle: 2 planned · :pencil2: 2 drafted · "
            ":calendar: 0 scheduled · :rocket: 1 published"
        )
        assert render(text, blocks).splitlines() == [
            "Content calendar: November 2026",
            "  Times in Europe/Berlin · :white_circle: 2 planned · :pencil2: 2 drafted · :calendar: 0 scheduled · "
            ":rocket: 1 published",
            "Week of Mon 26 Oct",
            "nothing planned",
            "Week of Mon 2 Nov",
            ":pencil2: Tue 3 Nov 10:00 · drafted · “Holiday opening hours”",
            f":rocket: Fri 6 Nov 10:00 · published · “{first.title}” · `A-{first.action_id}`",
            "Week of Mon 9 Nov",
            f":pencil2: Fri 13 Nov 10:00 · drafted · “{second.title}” · `A-{second.action_id}`",
            "Week of Mon 16 Nov",
            f":white_circle: Fri 20 Nov 10:00 · planned · “Pricing on a budget” · `A-{third.action_id}`",
            "Week of Mon 23 Nov",
            f":white_circle: Fri 27 Nov 10:00 · planned · “Pricing: your questions, answered” · `A-{fourth.action_id}`",
            "Week of Mon 30 Nov",
            "nothing planned",
        ]
        other_team, _ = await calendar_answer(
            aios.units, aios.registry, BERLIN, clock(), "T0OTHER", "2026-11"
        )
        assert ":white_circle: 0 planned" in other_team
        unreadable, none = await calendar_answer(aios.units, aios.registry, BERLIN, clock(), "T0FAKE", "soon")
        assert none is None and unreadable.startswith("I can't read “soon” as a month; try `/aios calendar`")
    finally:
        await aios.close()


async def test_a_slot_approval_expires_at_its_time_and_a_slot_whose_time_passed_is_not_drafted(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        clock.now = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)  # the Thursday before the first Friday
        await ask(aios, "plan November: one post a week about pricing, on Fridays")
        asked = await approvals(aios)
        async with aios.units() as uow:
            proposed = [await uow.get(ProposedAction, approval.action_id) for approval in asked]
        planned_for = [CmsCreateDraft.model_validate(p.params).planned_for for p in proposed if p is not None]
        assert [a.expires_at for a in asked] == planned_for  # the rule has no timeout: the slot's time is it
        await aios.process(PauseAgent("scheduling", EDITOR, CHANNEL))
        for approval in asked:
            assert approval.id is not None
            await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        first = planned_for[0]
        assert first is not None
        clock.now = first + timedelta(minutes=5)
        await aios.process(ResumeAgent("scheduling", EDITOR, CHANNEL))
        assert len(await slots(aios)) == 3
        posts = [post["slug"] for post in (await sandbox_state(aios.units))["posts"]]
        assert len(posts) == 3
        failed = [
            str(c.params["text"])
            for c in slack_api.calls_to("chat.postMessage")
            if "cms.create_draft failed" in str(c.params["text"])
        ]
        assert len(failed) == 1 and "its slot was Fri 6 Nov 2026 10:00 Europe/Berlin" in failed[0]
        assert "the time passed before it could run" in failed[0]
    finally:
        await aios.close()


async def test_a_draft_written_under_its_angle_is_drafted(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "plan November: one post a week about pricing, on Fridays")
        for approval in await approvals(aios):
            assert approval.id is not None
            await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        first, *_ = await slots(aios)
        async with aios.units() as uow:
            query = select(SandboxPost).where(SandboxPost.slug == first.slug)
            post = (await uow.session.exec(query)).one()
            post.body += "\n\nPrices, plainly: what we charge and why."  # the angle stays on top
            uow.session.add(post)
            await uow.commit()
        text, _ = await calendar_answer(aios.units, aios.registry, BERLIN, clock(), "T0FAKE", "november")
        assert ":white_circle: 3 planned · :pencil2: 1 drafted" in text
    finally:
        await aios.close()


async def test_with_wordpress_every_status_has_its_place_on_the_calendar(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    clock.now = NOW
    aios = await wordpress_aios(
        database_url, slack_api, clock, tmp_path, wordpress, policy=POLICY, AIOS_TIMEZONE="Europe/Berlin"
    )
    try:
        await ask(aios, "plan November: one post a week about pricing, on Fridays")
        for approval in await approvals(aios):
            assert approval.id is not None
            await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        # private, pending (a draft to the connector), trashed, and written under its angle
        first, second, third, fourth = await slots(aios)
        auth = (wordpress.user, wordpress.app_password)
        async with httpx.AsyncClient(base_url=wordpress.url, auth=auth, timeout=10) as site:
            for slot, status in ((first, "private"), (second, "pending"), (third, "trash")):
                [post] = wordpress.posts(slug=slot.slug)
                route = {"rest_route": f"/wp/v2/posts/{post['id']}"}
                changed = await (
                    site.delete("/", params=route)  # to the trash
                    if status == "trash"
                    else site.post("/", params=route, json={"status": status})
                )
                assert changed.status_code == 200, changed.text
            [post] = wordpress.posts(slug=fourth.slug)
            written = f"Angle: {fourth.angle}\n\nPrices, plainly: what we charge and why."
            route = {"rest_route": f"/wp/v2/posts/{post['id']}"}
            assert (await site.post("/", params=route, json={"content": written})).status_code == 200
        text, blocks = await calendar_answer(aios.units, aios.registry, BERLIN, clock(), "T0FAKE", "november")
        assert blocks is not None
        assert text.endswith(
            ":white_circle: 2 planned · :pencil2: 1 drafted · :calendar: 0 scheduled · :rocket: 1 published"
        )
    finally:
        await aios.close()


async def test_a_month_planned_again_books_no_day_title_or_slug_a_waiting_plan_holds(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "plan November: one post a week about pricing, on Fridays")
        await ask(aios, "plan November: one post a week about pricing, on Fridays")  # nothing is left to book
        assert len(await approvals(aios)) == 4
        said = [str(c.params["text"]) for c in slack_api.calls_to("chat.postMessage")]
        assert any("4 of the Fridays already have a post planned" in text for text in said)
        await ask(aios, "plan November: two posts a week about pricing, Tuesdays and Fridays")
        asked = await approvals(aios)
        assert len(asked) == 8
        for approval in asked:
            assert approval.id is not None
            await aios.process(DecideApproval(approval.id, EDITOR, True, CHANNEL))
        planned = await slots(aios)
        assert len(planned) == 8 and len({slot.slug for slot in planned}) == 8
        assert len({slot.planned_for for slot in planned}) == 8
        assert not [c for c in slack_api.calls_to("chat.postMessage") if ":x:" in str(c.params["text"])]
    finally:
        await aios.close()


async def test_claude_plans_with_the_used_titles_and_a_slot_outside_the_windows_goes_back_to_it(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        await aios.memory.remember(
            "T0FAKE",
            'drafted the post a. Title given by the requester/model (unverified): "Winter care on a budget"',
            kind="post",
            key="post:winter-care-on-a-budget",
        )
        tuesday = {
            "title": "Winter care: the first frost",
            "slug": "winter-care-the-first-frost",
            "body": "Angle: what to do the night before the first frost",
            "planned_for": "2026-11-03T09:00:00+01:00",
        }
        wednesday = {**tuesday, "slug": "winter-care-mulch", "planned_for": "2026-11-04T09:00:00+01:00"}
        friday = {**wednesday, "planned_for": "2026-11-06T10:00:00+01:00"}
        anthropic_api.script(
            Reply(
                "Understood: November, one post on Tuesday 3 and one on Wednesday 4.",
                (
                    ToolUse("cms_create_draft", tuesday),
                    ToolUse("cms_create_draft", wednesday),
                ),
            ),
            Reply(
                "Wednesday has no window: Friday 6 at 10:00 instead.", (ToolUse("cms_create_draft", friday),)
            ),
        )
        await ask(aios, "plan November: two posts about winter care, Tuesdays and Wednesdays")

        first, second = anthropic_api.requests
        system = first["system"][0]["text"]
        assert 'Used before: "Winter care on a budget"' in system
        assert "publishing windows tue 09:00-12:00, fri 10:00-12:00 (Europe/Berlin)" in system
        [tool] = [t for t in first["tools"] if t["name"] == "cms_create_draft"]
        assert "planned_for" in tool["input_schema"]["properties"]
        refused = second["messages"][-1]["content"][1]
        assert refused["is_error"] is True
        assert (
            "Wed 4 Nov 2026 09:00 Europe/Berlin (08:00 UTC) is outside the publishing windows"
            in refused["content"]
        )
        assert len(await approvals(aios)) == 2
    finally:
        await aios.close()


async def test_claude_is_told_the_slots_taken_and_a_slug_a_waiting_plan_holds_is_refused(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await calendar_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        tuesday = {
            "title": "Pricing, plainly",
            "body": "Angle: what a price says",
            "planned_for": "2026-11-03T09:00:00+01:00",
        }
        again = {**tuesday, "planned_for": "2026-11-10T09:00:00+01:00"}
        anthropic_api.script(
            Reply("One post on Tuesday 3.", (ToolUse("cms_create_draft", tuesday),)),
            Reply("One post on Tuesday 10.", (ToolUse("cms_create_draft", again),)),
            Reply("Nothing else to plan."),
        )
        await ask(aios, "plan November: one post about pricing, on Tuesdays")
        await ask(aios, "plan November: one more post about pricing, on Tuesdays")
        system = anthropic_api.requests[1]["system"][0]["text"]
        assert 'Used before: "Pricing, plainly"' in system
        assert 'Slot taken: "2026-11-03T09:00:00+01:00"' in system
        refused = anthropic_api.requests[2]["messages"][-1]["content"][0]
        assert refused["is_error"] is True
        assert (
            "another planned draft of the team (waiting, approved or made) has the slug 'pricing-plainly'"
            in (refused["content"])
        )
        assert len(await approvals(aios)) == 1  # the waiting one; the second plan proposed nothing
    finally:
        await aios.close()
