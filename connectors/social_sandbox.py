"""A sandbox for social posts on the SQL store: every network's posts are recorded, none is posted."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlmodel import col, select

from connectors.actions import Action, SocialPost
from connectors.base import ConnectorContext
from connectors.social_mastodon import MASTODON_SETTINGS
from storage.records import SandboxSocialPost, utcnow
from storage.unit_of_work import UnitOfWork


class SandboxSocial:
    actions: ClassVar[tuple[type[Action], ...]] = (SocialPost,)

    @classmethod
    def configured(cls, context: ConnectorContext) -> SandboxSocial | None:
        """Used unless Mastodon is configured (any of its settings: Mastodon then says what is missing)."""
        return None if any(name in context.settings for name in MASTODON_SETTINGS) else cls(context)

    def __init__(self, context: ConnectorContext) -> None:
        self._units = context.units_of_work

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        async with self._units() as uow:
            recorded = await _post_by_key(uow, idempotency_key)
        return _result(recorded, replayed=True) if recorded is not None else None

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, SocialPost)
        now = utcnow()
        scheduled = action.publish_at is not None and action.publish_at > now
        # A core INSERT skips the model's Python-side defaults, so every NOT NULL column is given here.
        values = {
            "network": action.network,
            "text": action.text,
            "post": action.post,
            "status": "scheduled" if scheduled else "recorded",
            "publish_at": action.publish_at if scheduled else now,
            "idempotency_key": idempotency_key,
            "created_at": now,
        }
        async with self._units() as uow:
            # ON CONFLICT DO NOTHING: a repeat with the same key (even a concurrent one) records nothing more
            # and answers with the post the first call recorded.
            inserted = await uow.insert_if_absent(SandboxSocialPost, values)
            recorded = await _post_by_key(uow, idempotency_key)
            await uow.commit()
        assert recorded is not None
        return _result(recorded, replayed=not inserted)


async def _post_by_key(uow: UnitOfWork, key: str) -> SandboxSocialPost | None:
    query = select(SandboxSocialPost).where(col(SandboxSocialPost.idempotency_key) == key)
    return (await uow.session.exec(query)).first()


def _result(recorded: SandboxSocialPost, *, replayed: bool) -> dict[str, Any]:
    """Said so that nobody reads the Done message as a post the network's readers saw."""
    return {
        "social_post_id": recorded.id,
        "network": recorded.network,
        "status": recorded.status,
        "publish_at": recorded.publish_at.isoformat(),
        "note": "recorded in the sandbox, not posted",
        "replayed": replayed,
    }
