"""WordPress as the CMS, through its REST API, used instead of the sandbox CMS when its settings are set.

Authentication is HTTP Basic with an application password (Users → Profile → Application Passwords), which
WordPress accepts over HTTPS, or over plain HTTP on a site whose environment type is ``local``. Routes are
addressed as ``?rest_route=/wp/v2/…``, which works whatever the site's permalink settings.

WordPress has no idempotency keys, so the connector keeps them on the post itself: an HTML comment at the end
of the content (``<!-- aios:idempotency-keys … -->``), invisible to readers, listing the key of every action
that changed the post. Before acting, the connector reads the post by slug (``status=any&context=edit``, the
only way drafts are found by slug); a post that already carries the key means the action landed, and its
result is returned instead of acting again. The marker and the change go in one request, so a post never
has the change without the key, nor the key without the change.

"Unpublished" is WordPress's ``draft``: invisible to readers, kept for editors, publishable again.

``wordpress.update`` replaces a post's title, body or excerpt and records the values it replaced (``previous``)
so that compensation can put them back. WordPress cannot say afterwards what a change replaced (it keeps no
revision of a post's first state), so those values go into the bot's ledger (``sent_message``) under the key
just before the change is sent: after a crash, the marker says the change landed and the ledger what it replaced.

Before approval, ``refusal`` reads the post by slug, so that nobody is asked to approve a change of a post that
is not there, a publish of a post already published (now or later: a live post is not moved back to
``future``), or a second post under a taken slug.

A scheduled post is ``future`` in WordPress, which publishes it by WP-Cron, a job that runs only when the site
gets visits (or a system cron) and so may run late or never. When it falls due, the bot's timer calls
``publish_due``: a post WordPress has published is left alone, a ``future`` one is published through REST.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from connectors.actions import Action, CmsCreateDraft, CmsPublish, CmsUnpublish, WordpressUpdate
from connectors.base import ConnectorContext
from connectors.due_publishing import DueOutcome, DuePublish, already_live
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.http_errors import raise_if_transient, reach
from connectors.sent_ledger import SentLedger

WORDPRESS_SETTINGS = ("WORDPRESS_URL", "WORDPRESS_USER", "WORDPRESS_APP_PASSWORD")
CREDENTIALS_HINT = "check WORDPRESS_USER and WORDPRESS_APP_PASSWORD"
_MARKER = re.compile(r"<!-- aios:idempotency-keys ([^<>]*?) -->")
# What an HTML comment (and WordPress's filters) carry unchanged: no whitespace, no "--".
_CARRIABLE_KEY = re.compile(r"^[A-Za-z0-9_.:]+(?:-[A-Za-z0-9_.:]+)*$")
_REFUSED_CODES = {
    "rest_forbidden_status",
    "rest_forbidden_context",
    "rest_cannot_create",
    "rest_cannot_edit",
    "rest_cannot_publish",
    "rest_not_logged_in",
}
_STATUS = {"draft": "draft", "pending": "draft", "future": "scheduled", "publish": "published"}
# The action's field → WordPress's.
_UPDATED_FIELDS = {"title": "title", "body": "content", "excerpt": "excerpt"}
# What a summary of a post needs; asking for no more keeps a search cheap (no bodies).
_SUMMARY_FIELDS = "id,slug,title,status,date_gmt,modified_gmt"


@dataclass(frozen=True)
class PostSummary:
    """What an agent is told about a post: enough to tell posts apart, never the body."""

    slug: str
    title: str
    status: str  # draft, scheduled, published
    date: str  # when it was (or is to be) published; for a draft, when it last changed
    # A digest of the body as its author wrote it, when it was read (posts by slug): enough to tell whether a
    # draft still holds what it was created with, without handing the body around.
    body_digest: str = ""


def body_digest(body: str) -> str:
    """The digest ``PostSummary.body_digest`` holds for this body."""
    return hashlib.sha256(body.strip().encode()).hexdigest()


class WordPressCms:
    actions: ClassVar[tuple[type[Action], ...]] = (CmsCreateDraft, CmsPublish, CmsUnpublish, WordpressUpdate)
    settings_names: ClassVar[tuple[str, ...]] = WORDPRESS_SETTINGS

    @classmethod
    def configured(cls, context: ConnectorContext) -> WordPressCms | None:
        settings = context.settings
        if not any(settings.get(name) for name in WORDPRESS_SETTINGS):
            return None
        missing = [name for name in WORDPRESS_SETTINGS if not settings.get(name)]
        if missing:
            raise ConnectorSettingError(
                f"WordPress needs {', '.join(WORDPRESS_SETTINGS)} together; {', '.join(missing)} is not set"
            )
        return cls(
            httpx.AsyncClient(
                base_url=_site_url(settings),
                auth=httpx.BasicAuth(settings["WORDPRESS_USER"], settings["WORDPRESS_APP_PASSWORD"]),
                timeout=context.http_timeout_seconds,
                headers={"Accept": "application/json"},
            ),
            SentLedger(context.units_of_work, "wordpress"),
        )

    def __init__(self, client: httpx.AsyncClient, replaced: SentLedger) -> None:
        self._client = client
        self._replaced = replaced  # what each update replaced, by key
        # Changes take turns in this process, so two calls never both find no post and both create one (across
        # processes, the bot's claim on the idempotency key already lets one call through).
        self._writing = asyncio.Lock()

    async def close(self) -> None:
        await self._client.aclose()

    async def health(self) -> str:
        me = _object(await self._call("GET", "/wp/v2/users/me", params={"context": "edit"}))
        name = str(me.get("username") or me.get("name") or me.get("id"))
        if not _object(me.get("capabilities")).get("publish_posts"):
            raise PermanentConnectorError(
                f"WordPress user {name} may not publish posts; give WORDPRESS_USER the Author or Editor role"
            )
        return f"authenticated as {name}, who may publish posts"

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        post = _carrying(await self._posts_with_slug(_slug(action)), idempotency_key)
        return await self._replayed(action, post, idempotency_key) if post is not None else None

    async def refusal(self, action: Action) -> str | None:
        """Why WordPress is certain to refuse the action, read from the post under its slug."""
        slug = _slug(action)
        try:
            posts = await self._posts({"slug": slug, "per_page": "100", "_fields": "id,status,title"})
        except PermanentConnectorError as exc:
            return str(exc)  # refused credentials, say: the action would be refused just the same
        if isinstance(action, CmsCreateDraft):
            return (
                f"WordPress already has a post with the slug {slug!r} (“{_raw(posts[0], 'title')}”); "
                "give the draft another title or slug, or update that post instead"
                if posts
                else None
            )
        if not posts:
            return f"WordPress has no post with the slug {slug!r}"
        if len(posts) > 1:
            return _ambiguous(slug, posts)
        if isinstance(action, CmsPublish) and posts[0].get("status") == "publish":
            return (
                already_live(slug)
                if action.publish_at is not None
                else f"the post {slug!r} is already published"
            )
        return None

    async def publish_due(self, slug: str, publish_at: datetime) -> DuePublish:
        posts = await self._posts({"slug": slug, "per_page": "100", "_fields": "id,status,date_gmt"})
        if len(posts) != 1:
            why = (
                f"WordPress has no post with the slug {slug!r} any more"
                if not posts
                else _ambiguous(slug, posts)
            )
            return DuePublish(DueOutcome.LEFT_ALONE, why)
        post = posts[0]
        status = str(post.get("status"))
        if status == "publish":
            return DuePublish(DueOutcome.ALREADY_LIVE)
        if status != "future":
            return DuePublish(DueOutcome.LEFT_ALONE, f"it is {_STATUS.get(status, status)} in WordPress now")
        date = _gmt(post.get("date_gmt"))
        if date is not None and date != publish_at.astimezone(UTC).replace(microsecond=0):
            return DuePublish(DueOutcome.LEFT_ALONE, "it was rescheduled", rescheduled_to=date)
        route = f"/wp/v2/posts/{post['id']}"
        async with self._writing:
            published = await self._write(
                route, {"status": "publish", "date_gmt": _wordpress_date(publish_at)}
            )
            wordpress_now = _gmt(published.get("modified_gmt"))
            if published.get("status") != "publish" and wordpress_now is not None:
                # WordPress keeps `future` a post dated a minute or more ahead of its own clock, which is behind
                # the bot's: the timer says it is due, so it goes out dated by WordPress's clock (the write just
                # made set modified_gmt to it).
                published = await self._write(
                    route, {"status": "publish", "date_gmt": _wordpress_date(wordpress_now)}
                )
        if published.get("status") != "publish":
            raise TransientConnectorError(
                f"WordPress still holds {slug!r} as scheduled; trying again shortly"
            )
        return DuePublish(DueOutcome.PUBLISHED)

    async def posts_by_slug(self, slugs: Sequence[str]) -> list[PostSummary]:
        """The posts (any status) with these slugs, in one request."""
        if not slugs:
            return []
        return await self._summaries(
            {"slug": ",".join(slugs), "per_page": "100"}, f"{_SUMMARY_FIELDS},content"
        )

    async def search_posts(self, text: str, limit: int = 5) -> list[PostSummary]:
        """Up to ``limit`` posts (any status) whose title, excerpt or body has every word of ``text``, the most
        relevant first, in one request."""
        return await self._summaries({"search": text, "per_page": str(limit)})

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        if not _CARRIABLE_KEY.match(idempotency_key):
            raise PermanentConnectorError(
                "WordPress keeps idempotency keys in an HTML comment: letters, digits, '.', '_', ':' and single '-'"
            )
        slug = _slug(action)
        async with self._writing:
            posts = await self._posts_with_slug(slug)
            landed = _carrying(posts, idempotency_key)
            if landed is not None:
                return await self._replayed(action, landed, idempotency_key)
            if isinstance(action, CmsCreateDraft):
                post = await self._create_draft(action, slug, idempotency_key, posts)
            elif isinstance(action, CmsPublish | CmsUnpublish):
                post = await self._change_status(action, idempotency_key, posts)
            elif isinstance(action, WordpressUpdate):
                return await self._update(action, idempotency_key, posts)
            else:
                raise PermanentConnectorError(f"the WordPress connector cannot do {action.name}")
        return _result(action, post, replayed=False)

    async def _replayed(self, action: Action, post: Mapping[str, Any], key: str) -> dict[str, Any]:
        result = _result(action, post, replayed=True)
        if isinstance(action, WordpressUpdate):
            recorded = await self._replaced.find(key)
            # Without the record (a ledger emptied by hand), there is nothing to put back: a person decides.
            if recorded is not None and isinstance(recorded.get("previous"), dict):
                result["previous"] = recorded["previous"]
        return result

    async def _update(self, action: WordpressUpdate, key: str, posts: list[dict[str, Any]]) -> dict[str, Any]:
        post = _only(action.slug, posts)
        # An earlier attempt that did not land recorded the same post (unless someone edited it within the
        # seconds between): the first record is kept.
        recorded = await self._replaced.find(key)
        previous = recorded.get("previous") if recorded is not None else None
        if not isinstance(previous, dict):
            previous = {
                field: _body(post) if field == "body" else _raw(post, wordpress_field)
                for field, wordpress_field in _UPDATED_FIELDS.items()
                if getattr(action, field) is not None
            }
            # Recorded before the change is sent: once it has landed, WordPress no longer knows these values.
            await self._replaced.record(key, action.slug, {"previous": previous})
        # A marker written into the new body would pass for ours: only the post's own keys are kept.
        body = _MARKER.sub("", action.body) if action.body is not None else _body(post)
        change: dict[str, Any] = {"content": _marked(body, [*_keys(post), key])}
        if action.title is not None:
            change["title"] = action.title
        if action.excerpt is not None:
            change["excerpt"] = action.excerpt
        updated = await self._write(f"/wp/v2/posts/{post['id']}", change)
        return _result(action, updated, replayed=False) | {"previous": previous}

    async def _create_draft(
        self, action: CmsCreateDraft, slug: str, key: str, existing: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if existing:
            raise PermanentConnectorError(
                f"WordPress already has a post with the slug {slug!r} (post {existing[0].get('id')})"
            )
        return await self._write(
            "/wp/v2/posts",
            {
                "title": action.title,
                "content": _with_key(action.body, key),
                "slug": slug,
                "status": "draft",
            },
        )

    async def _change_status(
        self, action: CmsPublish | CmsUnpublish, key: str, posts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        post = _only(action.slug, posts)
        change: dict[str, Any] = {"content": _with_key(_raw(post, "content"), key)}
        if isinstance(action, CmsUnpublish):
            change["status"] = "draft"
        else:
            when = action.publish_at or datetime.now(UTC)
            later = when > datetime.now(UTC)
            if later and post.get("status") == "publish":
                raise PermanentConnectorError(already_live(action.slug))
            # A later date makes the post `future` (scheduled: WordPress publishes it then). The date is sent
            # for "now" too, so that a date left by an earlier unpublish never backdates the post.
            change["status"] = "future" if later else "publish"
            change["date_gmt"] = _wordpress_date(when)
        return await self._write(f"/wp/v2/posts/{post['id']}", change)

    async def _write(self, route: str, fields: dict[str, Any]) -> dict[str, Any]:
        post = await self._call("POST", route, json=fields)
        if not isinstance(post, dict):
            raise PermanentConnectorError(
                f"WordPress answered POST {route} with something that is not a post"
            )
        return post

    async def _posts_with_slug(self, slug: str) -> list[dict[str, Any]]:
        return await self._posts({"slug": slug, "per_page": "100"})

    async def _summaries(self, params: Mapping[str, str], fields: str = _SUMMARY_FIELDS) -> list[PostSummary]:
        return [_summary(post) for post in await self._posts({**params, "_fields": fields})]

    async def _posts(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Posts of any status (drafts are found only this way), with their raw fields."""
        found = await self._call("GET", "/wp/v2/posts", params={"status": "any", "context": "edit", **params})
        if not isinstance(found, list):
            raise PermanentConnectorError(
                "WordPress answered the post search with something that is not a list"
            )
        return [post for post in found if isinstance(post, dict)]

    async def _call(
        self, method: str, route: str, *, params: Mapping[str, str] | None = None, json: Any = None
    ) -> Any:
        """One REST call; WordPress's answer as JSON, or a classified error saying what went wrong (never the
        credentials, which live only in the client's auth)."""
        query = {"rest_route": route, **(params or {})}
        what = f"{method} {route}"
        response = await reach(
            self._client.request(method, "/", params=query, json=json),
            f"WordPress ({what})",
            hint="check WORDPRESS_URL",
        )
        status = response.status_code
        codes, message = _error(response)
        raise_if_transient(
            response,
            f"WordPress is rate limiting {what}"
            if status == 429
            else f"WordPress answered {what} with {status}: {message}",
        )
        # WordPress treats a wrong application password as no login at all, so bad credentials also show up
        # as a status (draft, any) or a context (edit) an anonymous caller may not ask for.
        if status in (401, 403) or codes & _REFUSED_CODES:
            raise PermanentConnectorError(
                f"WordPress refused the credentials for {what} ({message}); {CREDENTIALS_HINT}"
            )
        if status >= 400:
            raise PermanentConnectorError(f"WordPress refused {what}: {message}")
        try:
            return response.json()
        except ValueError:
            raise PermanentConnectorError(
                f"WordPress answered {what} with something that is not JSON; check that WORDPRESS_URL is the "
                "site's address"
            ) from None


def _site_url(settings: Mapping[str, str]) -> httpx.URL:
    """WORDPRESS_URL, checked; the message never repeats it, since a mistaken one may hold a password."""
    example = "the site's address, like https://blog.example.com"
    try:
        url = httpx.URL(settings["WORDPRESS_URL"])
    except httpx.InvalidURL:
        raise ConnectorSettingError(f"WORDPRESS_URL is not a URL; set it to {example}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConnectorSettingError(f"WORDPRESS_URL must start with https:// or http://; set it to {example}")
    if url.userinfo:
        raise ConnectorSettingError(
            "WORDPRESS_URL must not hold credentials; put them in WORDPRESS_USER and WORDPRESS_APP_PASSWORD"
        )
    if url.query or url.fragment:
        raise ConnectorSettingError(f"WORDPRESS_URL must have no query or fragment; set it to {example}")
    return url.copy_with(path=url.path.rstrip("/") + "/")


def _slug(action: Action) -> str:
    if isinstance(action, CmsCreateDraft):
        return action.effective_slug()
    if isinstance(action, CmsPublish | CmsUnpublish | WordpressUpdate):
        return action.slug
    raise PermanentConnectorError(f"the WordPress connector cannot do {action.name}")


def _wordpress_date(when: datetime) -> str:
    """WordPress's ``date_gmt``: UTC without a zone, to the second (a naive time is taken as UTC)."""
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat(timespec="seconds")


def _gmt(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
    except ValueError:
        return None


def _raw(post: Mapping[str, Any], field: str) -> str:
    value = post.get(field)
    return str(value.get("raw", "")) if isinstance(value, dict) else str(value or "")


def _only(slug: str, posts: list[dict[str, Any]]) -> dict[str, Any]:
    """The one post with this slug; an action on none, or on one of several, is refused for good."""
    if not posts:
        raise PermanentConnectorError(f"WordPress has no post with the slug {slug!r}")
    if len(posts) > 1:
        raise PermanentConnectorError(_ambiguous(slug, posts))
    return posts[0]


def _ambiguous(slug: str, posts: list[dict[str, Any]]) -> str:
    ids = ", ".join(str(post.get("id")) for post in posts)
    return (
        f"WordPress has {len(posts)} posts with the slug {slug!r} (posts {ids}); give each its own slug first"
    )


def _body(post: Mapping[str, Any]) -> str:
    """The post's content as its author wrote it: without our marker."""
    return _MARKER.sub("", _raw(post, "content"))


def _keys(post: Mapping[str, Any]) -> list[str]:
    found = _MARKER.search(_raw(post, "content"))
    return found.group(1).split() if found else []


def _carrying(posts: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((post for post in posts if key in _keys(post)), None)


def _with_key(content: str, key: str) -> str:
    """The content with ``key`` added to its marker (one marker, at the end)."""
    return _marked(_MARKER.sub("", content), [*_keys({"content": content}), key])


def _marked(body: str, keys: list[str]) -> str:
    # Right after the last character: on a line of its own, WordPress's paragraph filter would add a <br />.
    return f"{body}<!-- aios:idempotency-keys {' '.join(keys)} -->"


def _result(action: Action, post: Mapping[str, Any], *, replayed: bool) -> dict[str, Any]:
    status = str(post.get("status"))
    named = (
        "unpublished"
        if isinstance(action, CmsUnpublish) and status == "draft"
        else _STATUS.get(status, status)
    )
    return {"post_id": post.get("id"), "slug": post.get("slug"), "status": named, "replayed": replayed}


def _summary(post: Mapping[str, Any]) -> PostSummary:
    status = str(post.get("status"))
    # A draft's date_gmt is empty until it is published or scheduled; its last change says more then.
    date = post.get("date_gmt") if status in ("publish", "future") else post.get("modified_gmt")
    return PostSummary(
        slug=str(post.get("slug")),
        title=_raw(post, "title"),
        status=_STATUS.get(status, status),
        date=str(date or "")[:16].replace("T", " "),
        body_digest=body_digest(_body(post)) if "content" in post else "",
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error(response: httpx.Response) -> tuple[set[str], str]:
    """WordPress's error codes (the answer's own, and each refused parameter's) and its message on one line,
    naming the refused parameters; for an answer without them, the HTTP reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return set(), response.reason_phrase
    data = _object(body.get("data"))
    details, params = _object(data.get("details")), _object(data.get("params"))
    codes = {str(body.get("code"))} | {str(d.get("code")) for d in details.values() if isinstance(d, dict)}
    message = str(body.get("message") or response.reason_phrase)
    if params:  # more telling than the message ("Invalid parameter(s): status")
        message = "; ".join(f"{name}: {problem}" for name, problem in params.items())
    line = " ".join(re.sub(r"<[^>]+>", "", message).split())
    return codes, line if len(line) <= 300 else line[:299] + "…"
