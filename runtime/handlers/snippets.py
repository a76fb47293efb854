"""Once a post goes live, the content agent proposes its social snippets: when a ``cms.publish`` published it at
once, or, for a scheduled post, when its timer finds it live at its time (a post taken down or deleted before then
gets none).

The handler files a request for the content agent, in the publish's thread and for the person who asked for the
publish: one post per configured network, going out a while after the post does. The snippets are planned and
judged by the policy like any other proposal. The request, its run and a claim on the publish are stored in one
transaction, so a redelivered event files nothing twice, and a process that stops before planning leaves a run
that recovery plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlmodel import col, select

from agents.social_snippets import SnippetRequest, SocialSettings, excerpt_of
from connectors.actions import CmsCreateDraft, CmsPublish, WordpressUpdate
from runtime.handlers.base import Collaborators, HandlerBase
from runtime.messagebus import Message
from runtime.messages import ActionExecuted, ReplanRun, ScheduledPostLive
from storage.records import ActionStatus, Intent, IntentStatus, ProposedAction, Run, RunStatus
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

SOURCE = "social"  # the source of a snippet request's intent
AGENT = "content"
# How many of the newest drafts and edits are read to find a post's title and excerpt.
RECENT_WRITES = 200


class Snippets(HandlerBase):
    def __init__(self, collaborators: Collaborators, social: SocialSettings | None) -> None:
        super().__init__(collaborators)
        self.social = social

    async def propose_after_publish(self, event: ActionExecuted) -> Sequence[Message]:
        """A publish that put the post out at once; a scheduled one waits for its timer."""
        executed = event.action
        if (
            self.social is None
            or executed.name != CmsPublish.name
            or executed.result.get("status") != "published"
        ):
            return []
        return await self._propose(event.action_id, executed.finished_at)

    async def propose_when_live(self, event: ScheduledPostLive) -> Sequence[Message]:
        if self.social is None:
            return []
        return await self._propose(event.action_id, event.live_at)

    async def _propose(self, action_id: int, live_at: datetime) -> Sequence[Message]:
        assert self.social is not None
        async with self.units() as uow:
            proposed = await uow.get(ProposedAction, action_id)
            if proposed is None or proposed.name != CmsPublish.name:
                return []
            run = await uow.get(Run, proposed.run_id)
            publish = await uow.get(Intent, run.intent_id) if run else None
            if publish is None:
                return []
            action = CmsPublish.model_validate(proposed.params)
            title, excerpt = await _title_and_excerpt(uow, action.slug)
            request = SnippetRequest(
                slug=action.slug,
                post_at=(live_at + self.social.delay).replace(microsecond=0),
                networks=self.social.networks,
                title=title,
                excerpt=excerpt,
                link=self.social.link(action.slug),
            )
            if not await uow.first_time(f"social-snippets:{action_id}"):
                return []  # a redelivery, or another replica's
            intent = await uow.add(
                Intent(
                    source=SOURCE,
                    team_id=publish.team_id,
                    channel=publish.channel,
                    thread_ts=publish.thread_ts,
                    user=publish.user,
                    text=request.text(),
                    status=IntentStatus.DISPATCHED,
                    owner=self.lease.id,
                )
            )
            assert intent.id is not None
            snippets_run = await uow.add(
                Run(intent_id=intent.id, agent=AGENT, status=RunStatus.PLANNING, owner=self.lease.id)
            )
            await uow.commit()
        assert snippets_run.id is not None
        log.info("social_snippets_requested", action=action_id, run=snippets_run.id)
        return [ReplanRun(snippets_run.id)]


async def _title_and_excerpt(uow: UnitOfWork, slug: str) -> tuple[str, str]:
    """The post's title and excerpt as the bot last wrote them (a draft's title and body's opening words, or an
    edit's); a post the bot never wrote is named by its slug, with no excerpt."""
    writes = (
        await uow.session.exec(
            select(ProposedAction)
            .where(
                col(ProposedAction.name).in_([CmsCreateDraft.name, WordpressUpdate.name]),
                ProposedAction.status == ActionStatus.EXECUTED,
            )
            .order_by(col(ProposedAction.id).desc())
            .limit(RECENT_WRITES)
        )
    ).all()
    title: str | None = None
    excerpt: str | None = None
    for write in writes:  # newest first: the first value found for each field is the current one
        params = write.params
        if write.name == CmsCreateDraft.name:
            draft = CmsCreateDraft.model_validate(params)
            if draft.effective_slug() != slug:
                continue
            title = draft.title if title is None else title
            excerpt = excerpt_of(draft.body) if excerpt is None else excerpt
        elif params.get("slug") == slug:
            if title is None and isinstance(params.get("title"), str):
                title = params["title"]
            if excerpt is None and isinstance(params.get("excerpt"), str):
                excerpt = excerpt_of(params["excerpt"])
            elif excerpt is None and isinstance(params.get("body"), str):
                excerpt = excerpt_of(params["body"])
        if title is not None and excerpt is not None:
            break
    return title or slug.replace("-", " ").capitalize(), excerpt or ""
