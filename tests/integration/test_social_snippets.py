"""Social snippets after a post goes live, through the bus, the handlers and the sandbox connectors: the content
agent proposes one `social.post` per configured network, within its limit, after the post, in the publish's
thread; an editor approves each; a redelivered event proposes nothing twice; `/aios voice` and `/aios why` show
the brand-voice notes the agent was given."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import col, select

from agents.social_snippets import SocialSettings
from bot.bootstrap import Aios
from bot.console import ConsoleSession, ConsoleTransport
from bot.queries import why
from bot.slash import HELP
from bot.terminal import CONSOLE_TEAM
from connectors.actions import CmsUnpublish
from connectors.sandbox_state import sandbox_state
from connectors.social_limits import LIMITS
from runtime.handlers import Handlers
from runtime.handlers.execution import action_executed_event
from runtime.messages import (
    ActionExecuted,
    PublishDuePosts,
    Recover,
    ReplanRun,
    ScheduledPostLive,
    ShowVoice,
)
from storage.records import Approval, Execution, Intent, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, REQUESTER, ask, start_aios
from tests.integration.test_why import click

EDITOR = "U0EDITOR"
DEAD_LEASE = 999_999  # no process holds it
TEAM = "T0FAKE"
POLICY = """
version: 1
roles:
  manager: [U0MANAGER]
  editor: [U0EDITOR]
rules:
  - id: drafts-are-fine
    when: action.name == "cms.create_draft"
    verdict: allow
  - id: publishing-is-fine-here
    when: action.name == "cms.publish"
    verdict: allow
  - id: social-posts-need-an-editor
    when: action.name == "social.post"
    verdict: require_approval
    approvers: [editor]
    timeout: 24h
default: require_approval
default_approvers: [manager]
"""
BODY = " ".join(
    ["Ten looks for April, from linen shirts to the rain jacket that finally keeps the rain out."] * 8
)
SOCIAL = {
    "AIOS_SOCIAL_NETWORKS": "mastodon,sandbox",
    "AIOS_SOCIAL_POST_URL": "https://blog.example.com/posts/{slug}",
}


@pytest.fixture
async def aios(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    instance = await start_aios(database_url, slack_api, clock, tmp_path, policy=POLICY, **SOCIAL)
    yield instance
    await instance.close()


async def publish(aios: Aios, when: str = "") -> ProposedAction:
    await ask(aios, f'draft a post titled "Spring lookbook" with body "{BODY}"')
    await ask(aios, f"publish post spring-lookbook{when}", message_ts="1700000000.000200")
    [action] = await actions(aios, "cms.publish")
    assert action.status == "executed"
    return action


async def actions(aios: Aios, name: str) -> list[ProposedAction]:
    async with aios.units() as uow:
        query = select(ProposedAction).where(ProposedAction.name == name).order_by(col(ProposedAction.id))
        return list((await uow.session.exec(query)).all())


async def test_a_published_post_gets_one_snippet_per_network_for_an_editor_to_approve(
    aios: Aios, clock: Clock, slack_api: FakeSlackApi
) -> None:
    voice_id, _ = await aios.memory.remember(TEAM, "Plain, warm, specific; no hype", kind="brand_voice")
    published_at = clock()
    await publish(aios)

    snippets = await actions(aios, "social.post")
    assert [(s.params["network"], s.status) for s in snippets] == [
        ("mastodon", "awaiting_approval"),
        ("sandbox", "awaiting_approval"),
    ]
    for snippet in snippets:
        text = snippet.params["text"]
        assert LIMITS[snippet.params["network"]].fits(text)
        assert text.startswith("Spring lookbook: Ten looks for April")
        assert text.endswith("…\n\nhttps://blog.example.com/posts/spring-lookbook")  # the body did not fit
        assert snippet.params["post"] == "spring-lookbook"
        assert datetime.fromisoformat(snippet.params["publish_at"]) == published_at + timedelta(minutes=30)
    async with aios.units() as uow:
        run = await uow.get(Run, snippets[0].run_id)
        assert run is not None and run.agent == "content"
        intent = await uow.get(Intent, run.intent_id)
        approvals = (await uow.session.exec(select(Approval).order_by(col(Approval.id)))).all()
    assert intent is not None
    # In the publish's thread, for the person who asked for the publish.
    assert (intent.source, intent.channel, intent.thread_ts, intent.user) == (
        "social",
        CHANNEL,
        "1700000000.000100",
        REQUESTER,
    )
    assert voice_id in run.memories_used
    assert f"M-{voice_id}" in await why(aios.units, f"A-{snippets[1].id}")
    assert [a.approver_roles for a in approvals] == [["editor"], ["editor"]]

    assert approvals[0].id is not None
    await click(aios, approvals[0].id, EDITOR, approve=True)
    [posted] = (await sandbox_state(aios.units))["social"]
    assert (posted["network"], posted["status"], posted["post"]) == (
        "mastodon",
        "scheduled",
        "spring-lookbook",
    )
    assert posted["text"] == snippets[0].params["text"]


async def executed(aios: Aios, published: ProposedAction) -> ActionExecuted:
    """The publish's ActionExecuted as its booking told it, from the records."""
    async with aios.units() as uow:
        [execution_id] = (
            await uow.session.exec(select(Execution.id).where(Execution.action_id == published.id))
        ).all()
        assert execution_id is not None
        found = await uow.executions.execution_in_hand(execution_id)
    assert found is not None
    execution, in_hand = found
    assert execution.finished_at is not None
    return action_executed_event(in_hand, execution.status, execution.result, execution.finished_at)


async def test_a_redelivered_publish_event_proposes_no_second_set(aios: Aios) -> None:
    published = await publish(aios)
    event = await executed(aios, published)
    await aios.process(event)
    await aios.process(event)
    assert len(await actions(aios, "social.post")) == 2
    async with aios.units() as uow:
        social = (await uow.session.exec(select(Intent).where(Intent.source == "social"))).all()
    assert len(social) == 1


async def test_snippets_of_a_scheduled_post_are_proposed_once_when_it_goes_live(
    aios: Aios, clock: Clock
) -> None:
    later = (clock() + timedelta(days=2)).replace(hour=9, minute=0, second=0)
    published = await publish(aios, f" at {later.isoformat()}")
    assert await actions(aios, "social.post") == []  # scheduled, not live: nothing to promote yet
    clock.now = later
    await aios.process(PublishDuePosts())
    snippets = await actions(aios, "social.post")
    assert {datetime.fromisoformat(s.params["publish_at"]) for s in snippets} == {
        later + timedelta(minutes=30)
    }
    assert published.id is not None
    await aios.process(PublishDuePosts())
    await aios.process(ScheduledPostLive(published.id, later))  # redelivered
    assert len(await actions(aios, "social.post")) == len(snippets) == 2


async def test_a_scheduled_post_taken_down_before_its_time_gets_no_snippets(aios: Aios, clock: Clock) -> None:
    later = (clock() + timedelta(days=2)).replace(hour=9, minute=0, second=0)
    await publish(aios, f" at {later.isoformat()}")
    await aios.registry.execute(CmsUnpublish(slug="spring-lookbook"), "taken-down-in-the-cms")
    clock.now = later
    await aios.process(PublishDuePosts())
    assert await actions(aios, "social.post") == []


async def test_without_networks_nothing_is_proposed_after_a_publish(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=POLICY)
    try:
        await publish(aios)
        assert await actions(aios, "social.post") == []
    finally:
        await aios.close()


def last_whisper(slack_api: FakeSlackApi) -> str:
    text = [c.params["text"] for c in slack_api.calls if c.method == "chat.postEphemeral"][-1]
    assert isinstance(text, str)
    return text


async def test_voice_lists_the_brand_voice_notes_newest_first(aios: Aios, slack_api: FakeSlackApi) -> None:
    await aios.process(ShowVoice(TEAM, REQUESTER, CHANNEL))
    assert "no brand-voice notes yet" in last_whisper(slack_api)
    first, _ = await aios.memory.remember(TEAM, "Plain, warm, specific; no hype", kind="brand_voice")
    second, _ = await aios.memory.remember(TEAM, "We say 'you', never 'customers'", kind="brand_voice")
    await aios.memory.remember(TEAM, "Ana prefers email", kind="note")
    await aios.memory.remember("T0OTHER", "Shout a lot", kind="brand_voice")

    await aios.process(ShowVoice(TEAM, REQUESTER, CHANNEL))
    said = last_whisper(slack_api)
    assert said.index(f"M-{second}") < said.index(f"M-{first}")
    assert "Ana prefers email" not in said and "Shout a lot" not in said
    assert "/aios remember --kind brand_voice" in said


async def test_voice_in_the_console_and_in_help(aios: Aios, slack_api: FakeSlackApi) -> None:
    await aios.memory.remember(CONSOLE_TEAM, "Plain, warm, specific; no hype", kind="brand_voice")
    session = ConsoleSession(aios, ConsoleTransport(Console(file=io.StringIO())))
    await session.slash(REQUESTER, "voice")
    assert "Plain, warm, specific; no hype" in last_whisper(slack_api)
    assert "`/aios voice`" in HELP


async def test_with_claude_the_snippets_are_written_with_the_voice_notes_and_limits_in_the_prompt(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=POLICY,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
        **SOCIAL,
    )
    try:
        voice_id, _ = await aios.memory.remember(TEAM, "We say 'you', never 'customers'", kind="brand_voice")
        link = "https://blog.example.com/posts/spring-lookbook"
        anthropic_api.script(
            Reply("A draft.", (ToolUse("cms_create_draft", {"title": "Spring lookbook", "body": BODY}),)),
            Reply("Publishing.", (ToolUse("cms_publish", {"slug": "spring-lookbook"}),)),
            Reply(
                "One for each network, in your voice.",
                tuple(
                    ToolUse(
                        "social_post",
                        {
                            "network": network,
                            "text": f"Ten looks for you this April. {link}",
                            "post": "spring-lookbook",
                            "publish_at": (clock() + timedelta(minutes=30)).isoformat(),
                        },
                    )
                    for network in ("mastodon", "sandbox")
                ),
            ),
        )
        await publish(aios)
        request = anthropic_api.requests[-1]
        system = json.dumps(request["system"])
        assert "We say 'you', never 'customers'" in system
        assert "social network sandbox: at most 500 characters" in system
        assert "social_post" in {tool["name"] for tool in request["tools"]}
        snippets = await actions(aios, "social.post")
        assert [(s.params["network"], s.status) for s in snippets] == [
            ("mastodon", "awaiting_approval"),
            ("sandbox", "awaiting_approval"),
        ]
        async with aios.units() as uow:
            run = await uow.get(Run, snippets[0].run_id)
        assert run is not None and voice_id in run.memories_used
    finally:
        await aios.close()


async def test_a_snippet_request_its_process_never_planned_is_planned_by_recovery(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    """The request and its run are stored before planning: a process that dies between the two leaves a run
    that recovery plans, once; the event delivered again files nothing."""
    aios = await start_aios(
        database_url, slack_api, clock, tmp_path, policy=POLICY
    )  # no networks: no snippets
    try:
        published = await publish(aios)
        event = await executed(aios, published)
        base = aios.handlers
        dying = Handlers(
            units=aios.units,
            dispatcher=base.dispatcher,
            policy=aios.policy,
            registry=aios.registry,
            transport=base.transport,
            clock=base.clock,
            offline=True,
            memory=aios.memory,
            lease=aios.lease,
            social=SocialSettings(("sandbox",), timedelta(minutes=30), "https://blog.example.com/{slug}"),
        )
        [replan] = await dying.snippets.propose_after_publish(
            event
        )  # ...and the process dies before planning
        assert isinstance(replan, ReplanRun)
        async with aios.units() as uow:
            run = await uow.get(Run, replan.run_id)
            assert run is not None
            run.owner = DEAD_LEASE
            uow.session.add(run)
            await uow.commit()
        assert await actions(aios, "social.post") == []

        await aios.process(Recover(grace_seconds=0))
        await aios.process(Recover(grace_seconds=0))
        assert await dying.snippets.propose_after_publish(event) == []
        [snippet] = await actions(aios, "social.post")
        assert (snippet.run_id, snippet.params["network"], snippet.status) == (
            replan.run_id,
            "sandbox",
            "awaiting_approval",
        )
    finally:
        await aios.close()
