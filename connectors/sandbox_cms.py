"""A sandbox CMS on the SQL store: drafts, scheduled and published posts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlmodel import col, select

from connectors.actions import Action, CmsCreateDraft, CmsPublish, CmsUnpublish
from connectors.base import ConnectorContext
from connectors.due_publishing import DueOutcome, DuePublish, already_live
from connectors.errors import PermanentConnectorError
from connectors.wordpress_cms import WORDPRESS_SETTINGS, PostSummary, body_digest
from storage.records import SandboxPost


class SandboxCms:
    actions: ClassVar[tuple[type[Action], ...]] = (CmsCreateDraft, CmsPublish, CmsUnpublish)

    @classmethod
    def configured(cls, context: ConnectorContext) -> SandboxCms | None:
        """Used unless WordPress is configured (any of its settings: WordPress then says what is missing)."""
        return None if any(name in context.settings for name in WORDPRESS_SETTINGS) else cls(context)

    def __init__(self, context: ConnectorContext) -> None:
        self._units = context.units_of_work
        self._clock = context.clock

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        slug = (
            action.effective_slug() if isinstance(action, CmsCreateDraft) else getattr(action, "slug", None)
        )
        async with self._units() as uow:
            post = (await uow.session.exec(select(SandboxPost).where(SandboxPost.slug == slug))).first()
        if post is None or idempotency_key not in post.idempotency_keys:
            return None
        return _post_result(post, replayed=True)

    async def posts_by_slug(self, slugs: Sequence[str]) -> list[PostSummary]:
        """The posts with these slugs, as the content calendar reads them (with their bodies' digests)."""
        async with self._units() as uow:
            query = select(SandboxPost).where(col(SandboxPost.slug).in_(list(slugs)))
            return [_summary(post, with_body=True) for post in (await uow.session.exec(query)).all()]

    async def posts_dated(self, start: datetime, end: datetime) -> list[PostSummary]:
        """The posts dated from ``start`` up to ``end``: when they go (or went) out, or a draft's last change."""
        async with self._units() as uow:
            posts = (await uow.session.exec(select(SandboxPost))).all()
        return [
            _summary(post) for post in posts if (moment := _dated(post)) is not None and start <= moment < end
        ]

    async def refusal(self, action: Action) -> str | None:
        """Nobody is asked to approve a change of a post that is not there, nor moving a live post back to
        scheduled (readers would lose it until then)."""
        if not isinstance(action, CmsPublish | CmsUnpublish):
            return None
        async with self._units() as uow:
            post = (
                await uow.session.exec(select(SandboxPost).where(SandboxPost.slug == action.slug))
            ).first()
        if post is None:
            return _no_such_post(action.slug)
        scheduling = isinstance(action, CmsPublish) and action.publish_at is not None
        return already_live(action.slug) if scheduling and post.status == "published" else None

    async def publish_due(self, slug: str, publish_at: datetime) -> DuePublish:
        async with self._units() as uow:
            session = uow.session
            post = (await session.exec(select(SandboxPost).where(SandboxPost.slug == slug))).first()
            if post is None:
                return DuePublish(DueOutcome.LEFT_ALONE, f"there is no post with the slug {slug!r} any more")
            if post.status == "published":
                return DuePublish(DueOutcome.ALREADY_LIVE)
            if post.status != "scheduled":
                return DuePublish(DueOutcome.LEFT_ALONE, f"it is {post.status} now")
            if post.publish_at != publish_at:
                return DuePublish(DueOutcome.LEFT_ALONE, "it was rescheduled", rescheduled_to=post.publish_at)
            post.status, post.updated_at = "published", self._clock()
            session.add(post)
            await uow.commit()
        return DuePublish(DueOutcome.PUBLISHED)

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        async with self._units() as uow:
            session = uow.session
            if isinstance(action, CmsCreateDraft):
                slug = action.effective_slug()
                post = (await session.exec(select(SandboxPost).where(SandboxPost.slug == slug))).first()
                if post is not None:
                    if idempotency_key in post.idempotency_keys:
                        return _post_result(post, replayed=True)
                    raise PermanentConnectorError(f"a post with the slug {slug!r} already exists")
                post = SandboxPost(
                    slug=slug, title=action.title, body=action.body, idempotency_keys=[idempotency_key]
                )
            elif isinstance(action, CmsPublish | CmsUnpublish):
                post = (
                    await session.exec(select(SandboxPost).where(SandboxPost.slug == action.slug))
                ).first()
                if post is None:
                    raise PermanentConnectorError(_no_such_post(action.slug))
                if idempotency_key in post.idempotency_keys:
                    return _post_result(post, replayed=True)
                if isinstance(action, CmsUnpublish):
                    post.status = "unpublished"
                else:
                    now = self._clock()
                    scheduled = action.publish_at is not None and action.publish_at > now
                    if scheduled and post.status == "published":
                        raise PermanentConnectorError(already_live(action.slug))
                    post.status = "scheduled" if scheduled else "published"
                    post.publish_at = action.publish_at or now
                post.idempotency_keys = [*post.idempotency_keys, idempotency_key]
            else:
                raise PermanentConnectorError(f"the sandbox CMS cannot do {action.name}")
            post.updated_at = self._clock()
            session.add(post)
            await uow.commit()
            return _post_result(post, replayed=False)


def _dated(post: SandboxPost) -> datetime | None:
    if post.status in ("scheduled", "published"):
        return post.publish_at
    return post.updated_at if post.status == "draft" else None


def _summary(post: SandboxPost, *, with_body: bool = False) -> PostSummary:
    moment = _dated(post) or post.updated_at
    return PostSummary(
        slug=post.slug,
        title=post.title,
        status=post.status,
        date=f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}",
        body_digest=body_digest(post.body) if with_body else "",
    )


def _no_such_post(slug: str) -> str:
    return f"the sandbox CMS has no post with the slug {slug!r}"


def _post_result(post: SandboxPost, *, replayed: bool) -> dict[str, Any]:
    return {"post_id": post.id, "slug": post.slug, "status": post.status, "replayed": replayed}
