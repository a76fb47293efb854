"""WordPress as the bot's CMS, switched on by its settings and checked against a real WordPress (PHP, MariaDB):
intents in words end as posts in WordPress, approvals and compensation included; edits record what they
replaced and are put back; a restart finds what landed; what is certain to fail is refused before anyone
approves it; WordPress's refusals and troubles are classified; its credentials appear nowhere."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlmodel import col, select

import policies
from bot.bootstrap import Aios
from connectors.actions import Action, CmsCreateDraft, CmsPublish, CmsUnpublish, WordpressUpdate
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.wordpress_cms import WordPressCms
from runtime.intake import IncomingIntent
from runtime.messages import DecideApproval, HandleIntent, ReconcileExecution
from storage.records import (
    ActionStatus,
    Approval,
    Execution,
    ExecutionAttempt,
    ExecutionStatus,
    ProposedAction,
)
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.aios_process import AIOS, aios_env
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.loopback import LoopbackServer
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.wordpress_server import WordPressServer
from tests.integration.conftest import CHANNEL, REQUESTER, ask, everything_stored, start_aios

EDITOR = "U0EDITOR"
SPRING = CmsCreateDraft(title="Spring lookbook", body="<p>Linen, clay and morning light.</p>")
PACKAGED_POLICY = (Path(policies.__file__).parent / "default_policy.yaml").read_text()
PERMISSIVE = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: everything-is-fine-here
    when: "true"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


def settings_of(site: WordPressServer, **overrides: str) -> dict[str, str]:
    return {
        "WORDPRESS_URL": site.url,
        "WORDPRESS_USER": site.user,
        "WORDPRESS_APP_PASSWORD": site.app_password,
    } | overrides


def connector(
    settings: dict[str, str], timeout: float = 10.0, units: UnitOfWorkFactory | None = None
) -> WordPressCms:
    """The connector alone; ``units`` is the store its updates record what they replace in."""
    context = ConnectorContext(units_of_work=units, settings=settings, http_timeout_seconds=timeout)  # type: ignore[arg-type]
    built = WordPressCms.configured(context)
    assert built is not None
    return built


async def wordpress_aios(
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    site: WordPressServer,
    policy: str = PACKAGED_POLICY,
    **settings: str,
) -> Aios:
    """The bot as `aios serve` builds it, with WordPress configured by its environment settings."""
    return await start_aios(
        database_url, slack_api, clock, tmp_path, policy=policy, **(settings_of(site) | settings)
    )


async def actions(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(ProposedAction).order_by(col(ProposedAction.id)))).all())


def body_of(post: dict[str, object]) -> str:
    """The content as its author wrote it, without the key marker."""
    return re.sub(r"<!-- aios:idempotency-keys [^<>]*? -->", "", str(post["content"]["raw"]))  # type: ignore[index]


def keys_of(post: dict[str, object]) -> list[str]:
    found = re.search(r"<!-- aios:idempotency-keys ([^<>]*?) -->", str(post["content"]["raw"]))  # type: ignore[index]
    return found.group(1).split() if found else []


async def slash(aios: Aios, text: str) -> int:
    """``/aios <text>``: an intent that opens its own thread."""
    intent_id = await aios.accept(
        IncomingIntent(
            source="slash", team_id="T0FAKE", channel=CHANNEL, thread_ts=None, user=REQUESTER, text=text
        )
    )
    assert intent_id is not None
    await aios.process(HandleIntent(intent_id))
    return intent_id


def thread_texts(slack_api: FakeSlackApi) -> list[str]:
    return [
        json.dumps(call.params)
        for method in ("chat.postMessage", "chat.postEphemeral", "chat.update")
        for call in slack_api.calls_to(method)
    ]


async def test_a_post_drafted_in_words_is_published_in_wordpress_once_an_editor_approves(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress)
    try:
        assert isinstance(aios.registry.connector_for("cms.publish"), WordPressCms)
        await ask(aios, 'draft a post titled "Spring lookbook"', thread_ts="1700000100.000100")
        [draft] = wordpress.posts(slug="spring-lookbook")
        assert (draft["status"], draft["title"]["raw"]) == ("draft", "Spring lookbook")  # type: ignore[index]

        await ask(aios, "publish post spring-lookbook", thread_ts="1700000200.000100")
        async with aios.units() as uow:
            approval = (await uow.session.exec(select(Approval))).one()
        assert approval.id is not None and approval.approver_roles == ["editor"]
        await aios.process(DecideApproval(approval.id, REQUESTER, approve=True, channel=CHANNEL))
        assert [post["status"] for post in wordpress.posts(slug="spring-lookbook")] == ["draft"]

        await aios.process(DecideApproval(approval.id, EDITOR, approve=True, channel=CHANNEL))

        [published] = wordpress.posts(slug="spring-lookbook")
        assert (published["id"], published["status"]) == (draft["id"], "publish")
        assert [(a.name, a.status) for a in await actions(aios)] == [
            ("cms.create_draft", "executed"),
            ("cms.publish", "executed"),
        ]
        assert any("Done: Publish post spring-lookbook now" in text for text in thread_texts(slack_api))
    finally:
        await aios.close()


# Steps 1 and 2 run at once; step 3 waits for a manager, and by the time it is approved its post is gone.
AUTUMN_WAITS = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: autumn-needs-a-manager
    when: action.name == "cms.publish" && action.params.slug == "autumn-lookbook"
    verdict: require_approval
    approvers: [manager]
  - id: everything-else-is-fine
    when: "true"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


async def test_a_later_failing_step_takes_posts_down_and_puts_an_edited_posts_words_back(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    wordpress: WordPressServer,
) -> None:
    aios = await wordpress_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        wordpress,
        policy=AUTUMN_WAITS,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        await aios.registry.execute(SPRING, "seed-spring")
        for title in ("Summer lookbook", "Autumn lookbook"):
            await aios.registry.execute(CmsCreateDraft(title=title), f"seed-{title.split()[0].lower()}")
        anthropic_api.script(
            Reply(
                "Renaming spring and publishing the series.",
                (
                    ToolUse(
                        "wordpress_update",
                        {"slug": "spring-lookbook", "title": "Spring lookbook 2027", "body": "<p>New.</p>"},
                    ),
                    ToolUse("cms_publish", {"slug": "summer-lookbook"}),
                    ToolUse("cms_publish", {"slug": "autumn-lookbook"}),
                ),
            )
        )
        await ask(aios, "rename spring and publish the lookbook series")
        [spring] = wordpress.posts(slug="spring-lookbook")
        assert spring["title"]["raw"] == "Spring lookbook 2027"  # type: ignore[index]
        assert [p["status"] for p in wordpress.posts(slug="summer-lookbook")] == ["publish"]

        wordpress.delete_post("autumn-lookbook")  # an editor deleted it while the approval waited
        async with aios.units() as uow:
            approval = (await uow.session.exec(select(Approval))).one()
        assert approval.id is not None
        await aios.process(DecideApproval(approval.id, "U0MANAGER", approve=True, channel=CHANNEL))

        [spring] = wordpress.posts(slug="spring-lookbook")
        assert (spring["title"]["raw"], body_of(spring)) == ("Spring lookbook", SPRING.body)  # type: ignore[index]
        assert [p["status"] for p in wordpress.posts(slug="summer-lookbook")] == ["draft"]
        assert [(a.name, a.params["slug"], a.status) for a in await actions(aios)] == [
            ("wordpress.update", "spring-lookbook", "compensated"),
            ("cms.publish", "summer-lookbook", "compensated"),
            ("cms.publish", "autumn-lookbook", "failed"),
            ("cms.unpublish", "summer-lookbook", "executed"),
            ("wordpress.update", "spring-lookbook", "executed"),  # newest first
        ]
        assert any(
            "WordPress has no post with the slug 'autumn-lookbook'" in t for t in thread_texts(slack_api)
        )
    finally:
        await aios.close()


async def test_a_draft_whose_record_was_lost_is_found_in_wordpress_and_not_made_again(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress)
    try:
        await ask(aios, 'draft a post titled "Spring lookbook"')
        async with aios.units() as uow:
            # As if the process died after WordPress made the post and before the execution was recorded.
            execution = (await uow.session.exec(select(Execution))).one()
            landed = execution.result
            execution.status, execution.result, execution.finished_at = ExecutionStatus.STARTED, {}, None
            uow.session.add(execution)
            await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
            await uow.commit()
        assert execution.id is not None

        await aios.process(ReconcileExecution(execution.id))

        assert len(wordpress.posts(slug="spring-lookbook")) == 1
        async with aios.units() as uow:
            settled = await uow.get(Execution, execution.id)
            attempts = (await uow.session.exec(select(ExecutionAttempt))).all()
        assert settled is not None and settled.status == ExecutionStatus.SUCCEEDED
        assert settled.result == landed | {"replayed": True}
        assert [(a.kind, a.outcome) for a in attempts][-1] == ("lookup", "ok")
    finally:
        await aios.close()


async def test_wrong_credentials_refuse_the_request_saying_which_settings_and_never_showing_them(
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    wordpress: WordPressServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "abcd EFGH ijkl MNOP qrst UVWX"
    aios = await wordpress_aios(
        database_url, slack_api, clock, tmp_path, wordpress, WORDPRESS_APP_PASSWORD=secret
    )
    try:
        await ask(aios, 'draft a post titled "Spring lookbook"')
        proposed = await actions(aios)
        with pytest.raises(PermanentConnectorError) as raised:  # and had it been proposed, its execution
            await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "some-key")
        stored = await everything_stored(aios)
    finally:
        await aios.close()

    assert proposed == []  # refused before anyone was asked to approve it
    for said in (" ".join(thread_texts(slack_api)), str(raised.value)):
        assert "WordPress refused the credentials" in said
        assert "check WORDPRESS_USER and WORDPRESS_APP_PASSWORD" in said
    logged = capsys.readouterr()
    told = [stored, str(raised.value), *thread_texts(slack_api), logged.out, logged.err]
    basic = base64.b64encode(f"{wordpress.user}:{secret}".encode()).decode()
    for fragment in (secret, secret.replace(" ", ""), "abcd EFGH", basic):
        assert not any(fragment in text for text in told), fragment
    assert wordpress.posts(slug="spring-lookbook") == []


async def test_health_says_who_is_logged_in_or_what_to_fix(wordpress: WordPressServer) -> None:
    site = connector(settings_of(wordpress))
    reader = connector(
        settings_of(
            wordpress,
            WORDPRESS_USER=wordpress.subscriber,
            WORDPRESS_APP_PASSWORD=wordpress.subscriber_password,
        )
    )
    stranger = connector(settings_of(wordpress, WORDPRESS_APP_PASSWORD="not the password"))
    try:
        assert await site.health() == "authenticated as editor-in-chief, who may publish posts"
        with pytest.raises(
            PermanentConnectorError, match="reader may not publish posts; give WORDPRESS_USER"
        ):
            await reader.health()
        with pytest.raises(PermanentConnectorError, match="check WORDPRESS_USER and WORDPRESS_APP_PASSWORD"):
            await stranger.health()
        with pytest.raises(PermanentConnectorError, match="check WORDPRESS_USER and WORDPRESS_APP_PASSWORD"):
            await reader.execute(CmsCreateDraft(title="Not mine to write"), "reader-key")
    finally:
        for built in (site, reader, stranger):
            await built.close()


class TroubledWordPress(LoopbackServer):
    """What can stand between the bot and a WordPress: a proxy rate limiting, or a server that never answers
    (until it is stopped)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, hang: bool = False) -> None:
        super().__init__("troubled-wordpress")
        self.status, self.headers, self.hang = status, headers or {}, hang
        self._released = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/", self._answer)

    async def _answer(self, request: web.Request) -> web.Response:
        if self.hang:
            await self._released.wait()
        return web.json_response(
            {"code": "busy", "message": "Slow down"}, status=self.status, headers=self.headers
        )

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)
        super().stop()


@pytest.fixture
def rate_limiting() -> Iterator[TroubledWordPress]:
    with TroubledWordPress(429, {"Retry-After": "7"}) as server:
        yield server


@pytest.fixture
def silent() -> Iterator[TroubledWordPress]:
    with TroubledWordPress(200, hang=True) as server:
        yield server


async def test_rate_limits_maintenance_silence_and_a_closed_port_are_transient(
    wordpress: WordPressServer, rate_limiting: TroubledWordPress, silent: TroubledWordPress
) -> None:
    publish = CmsPublish(slug="spring-lookbook")
    limited = connector(settings_of(wordpress, WORDPRESS_URL=f"http://127.0.0.1:{rate_limiting.port}"))
    with pytest.raises(TransientConnectorError, match="rate limiting") as raised:
        await limited.execute(publish, "key-1")
    assert raised.value.retry_after == 7.0

    maintained = connector(settings_of(wordpress))
    with wordpress.in_maintenance(), pytest.raises(TransientConnectorError, match="with 503"):
        await maintained.execute(publish, "key-1")

    quiet = connector(settings_of(wordpress, WORDPRESS_URL=f"http://127.0.0.1:{silent.port}"), timeout=0.2)
    with pytest.raises(TransientConnectorError, match="did not answer"):
        await quiet.lookup(publish, "key-1")

    closed = connector(settings_of(wordpress, WORDPRESS_URL="http://127.0.0.1:9"))
    with pytest.raises(TransientConnectorError, match=r"could not be reached.*check WORDPRESS_URL"):
        await closed.execute(publish, "key-1")
    for built in (limited, maintained, quiet, closed):
        await built.close()


CREDENTIALS = {"WORDPRESS_USER": "editor", "WORDPRESS_APP_PASSWORD": "hunter2"}


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"WORDPRESS_APP_PASSWORD": "hunter2"}, "WORDPRESS_URL, WORDPRESS_USER is not set"),
        (CREDENTIALS | {"WORDPRESS_URL": "blog.example.com"}, "must start with https:// or http://"),
        (
            CREDENTIALS | {"WORDPRESS_URL": "https://admin:hunter2@blog.example.com"},
            "must not hold credentials",
        ),
        (CREDENTIALS | {"WORDPRESS_URL": "https://blog.example.com/?p=1"}, "no query or fragment"),
    ],
    ids=["missing", "no-scheme", "credentials", "query"],
)
def test_malformed_settings_are_refused_naming_the_setting_and_never_its_secret(
    settings: dict[str, str], problem: str
) -> None:
    context = ConnectorContext(units_of_work=None, settings=settings)  # type: ignore[arg-type]
    with pytest.raises(ConnectorSettingError, match=problem) as raised:
        WordPressCms.configured(context)
    assert "hunter2" not in str(raised.value)
    assert (
        SandboxCms.configured(context) is None
    )  # WordPress was asked for: no silent fallback to the sandbox


def test_without_wordpress_settings_the_sandbox_serves() -> None:
    context = ConnectorContext(units_of_work=None, settings={"AIOS_MAIL_FROM": "shop@example.com"})  # type: ignore[arg-type]
    assert WordPressCms.configured(context) is None
    assert isinstance(SandboxCms.configured(context), SandboxCms)


def test_the_command_line_checks_wordpress_and_refuses_a_bad_url_in_one_line(
    wordpress: WordPressServer, tmp_path: Path
) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/cli.db", "http://127.0.0.1:9/api/")
    env |= settings_of(wordpress) | {"COLUMNS": "250"}  # the table's rows on one line each

    def aios(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIOS, *args], env=env | overrides, capture_output=True, text=True, timeout=120, check=False
        )

    listed = aios("connectors")
    assert listed.returncode == 0, listed.stderr
    assert "authenticated as editor-in-chief" in listed.stdout

    refused = aios("serve", "--port", "0", WORDPRESS_URL="ftp://admin:hunter2@blog.example.com")
    assert refused.returncode == 2
    [error] = [
        line for line in refused.stderr.splitlines() if not line.startswith("{")
    ]  # the rest: JSON logs
    assert error.startswith("error: WORDPRESS_URL must start with https:// or http://")
    assert "Traceback" not in refused.stderr and "hunter2" not in refused.stderr
    assert wordpress.app_password not in listed.stdout + listed.stderr + refused.stdout + refused.stderr


@pytest.fixture
def local_time_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_in_new_york")  # the bot's own zone plays no part
async def test_a_publish_time_without_a_zone_is_utc(wordpress: WordPressServer) -> None:
    site = connector(settings_of(wordpress))
    try:
        await site.execute(CmsCreateDraft(title="Winter lookbook"), "draft-key")
        later = datetime(
            2030, 1, 15, 9, 30
        )  # as a planner writes "publish winter-lookbook at 2030-01-15T09:30"
        result = await site.execute(CmsPublish(slug="winter-lookbook", publish_at=later), "schedule-key")
    finally:
        await site.close()
    assert result["status"] == "scheduled"
    [post] = wordpress.posts(slug="winter-lookbook")
    assert (post["status"], post["date_gmt"]) == ("future", "2030-01-15T09:30:00")


async def test_an_update_changes_only_what_it_names_keeps_the_status_and_records_what_it_replaced(
    wordpress: WordPressServer, units: UnitOfWorkFactory
) -> None:
    site = connector(settings_of(wordpress), units=units)
    try:
        await site.execute(SPRING, "draft-key")
        await site.execute(CmsCreateDraft(title="Summer lookbook", body="<p>Sun.</p>"), "summer-key")
        await site.execute(CmsPublish(slug="summer-lookbook"), "publish-key")

        draft = await site.execute(
            WordpressUpdate(slug="spring-lookbook", title="Spring lookbook 2027"), "title-key"
        )
        published = await site.execute(
            WordpressUpdate(slug="summer-lookbook", body="<p>Sun and sea.</p>", excerpt="By the sea"),
            "body-key",
        )
    finally:
        await site.close()

    [spring] = wordpress.posts(slug="spring-lookbook")
    assert draft == {
        "post_id": spring["id"],
        "slug": "spring-lookbook",
        "status": "draft",
        "replayed": False,
        "previous": {"title": "Spring lookbook"},
    }
    assert (spring["status"], spring["title"]["raw"], body_of(spring)) == (  # type: ignore[index]
        "draft",
        "Spring lookbook 2027",
        SPRING.body,
    )
    assert keys_of(spring) == ["draft-key", "title-key"]

    [summer] = wordpress.posts(slug="summer-lookbook")
    assert (published["status"], published["previous"]) == (
        "published",
        {"body": "<p>Sun.</p>", "excerpt": ""},
    )
    assert (summer["status"], body_of(summer), summer["excerpt"]["raw"]) == (  # type: ignore[index]
        "publish",
        "<p>Sun and sea.</p>",
        "By the sea",
    )
    assert keys_of(summer) == ["summer-key", "publish-key", "body-key"]  # the body's marker kept its keys


async def test_a_retry_of_a_landed_update_changes_nothing_and_still_says_what_it_replaced(
    wordpress: WordPressServer, units: UnitOfWorkFactory
) -> None:
    """The first instance's answer is lost and the post is edited again since; a fresh instance finds the update
    by its key, does not put its title back over the later one, and still knows the title it replaced."""
    rename = WordpressUpdate(slug="spring-lookbook", title="Spring lookbook 2027")
    first = connector(settings_of(wordpress), units=units)
    after_restart = connector(settings_of(wordpress), units=units)
    try:
        await first.execute(SPRING, "draft-key")
        landed = await first.execute(rename, "rename-key")
        await first.execute(WordpressUpdate(slug="spring-lookbook", title="Spring looks"), "later-key")

        found = await after_restart.lookup(rename, "rename-key")
        repeated = await after_restart.execute(rename, "rename-key")
        never = await after_restart.lookup(rename, "never-sent-key")
    finally:
        await first.close()
        await after_restart.close()

    assert found == repeated == landed | {"replayed": True}
    assert landed["previous"] == {"title": "Spring lookbook"} and never is None
    [post] = wordpress.posts(slug="spring-lookbook")
    assert post["title"]["raw"] == "Spring looks"  # type: ignore[index]
    assert keys_of(post) == ["draft-key", "rename-key", "later-key"]


async def test_actions_certain_to_fail_are_refused_before_anyone_is_asked_to_approve_them(
    wordpress: WordPressServer,
) -> None:
    site = connector(settings_of(wordpress))
    try:
        await site.execute(SPRING, "draft-key")
        await site.execute(CmsCreateDraft(title="Summer lookbook"), "summer-key")
        await site.execute(CmsPublish(slug="summer-lookbook"), "publish-key")
        later = datetime.now(UTC) + timedelta(days=3)
        cases: list[tuple[Action, str | None]] = [
            (
                WordpressUpdate(slug="no-such-post", title="Gone"),
                "WordPress has no post with the slug 'no-such-post'",
            ),
            (CmsPublish(slug="no-such-post"), "WordPress has no post with the slug 'no-such-post'"),
            (CmsUnpublish(slug="no-such-post"), "WordPress has no post with the slug 'no-such-post'"),
            (CmsPublish(slug="summer-lookbook"), "the post 'summer-lookbook' is already published"),
            (
                CmsCreateDraft(title="Spring lookbook", body="Again"),
                "WordPress already has a post with the slug 'spring-lookbook' (“Spring lookbook”); give the "
                "draft another title or slug, or update that post instead",
            ),
            # A live post is not moved back to scheduled: readers would lose it until then.
            (
                CmsPublish(slug="summer-lookbook", publish_at=later),
                "the post 'summer-lookbook' is already live; unpublish it first if it should go out again later",
            ),
            (CmsPublish(slug="spring-lookbook", publish_at=later), None),
            (CmsPublish(slug="spring-lookbook"), None),
            (CmsUnpublish(slug="summer-lookbook"), None),
            (WordpressUpdate(slug="summer-lookbook", excerpt="Sun"), None),
            (CmsCreateDraft(title="Autumn lookbook"), None),
        ]
        refusals = [await site.refusal(action) for action, _ in cases]
    finally:
        await site.close()
    assert refusals == [reason for _, reason in cases]


async def test_an_update_asked_with_aios_changes_the_title_once_an_editor_approves(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress)
    try:
        await aios.registry.execute(SPRING, "seed-spring")
        await slash(aios, 'update post spring-lookbook title "Spring lookbook 2027"')
        async with aios.units() as uow:
            approval = (await uow.session.exec(select(Approval))).one()
        assert approval.id is not None and approval.approver_roles == ["editor"]
        await aios.process(DecideApproval(approval.id, REQUESTER, approve=True, channel=CHANNEL))
        assert [p["title"]["raw"] for p in wordpress.posts(slug="spring-lookbook")] == ["Spring lookbook"]  # type: ignore[index]

        await aios.process(DecideApproval(approval.id, EDITOR, approve=True, channel=CHANNEL))

        [post] = wordpress.posts(slug="spring-lookbook")
        assert (post["title"]["raw"], post["status"], body_of(post)) == (  # type: ignore[index]
            "Spring lookbook 2027",
            "draft",
            SPRING.body,
        )
        [action] = await actions(aios)
        async with aios.units() as uow:
            execution = (await uow.session.exec(select(Execution))).one()
        assert (action.name, action.status) == ("wordpress.update", "executed")
        assert execution.result["previous"] == {"title": "Spring lookbook"}
        assert any("Done: Update post spring-lookbook: title to" in text for text in thread_texts(slack_api))
    finally:
        await aios.close()


async def test_an_update_whose_record_was_lost_is_found_in_wordpress_and_not_made_again(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress, policy=PERMISSIVE)
    try:
        await aios.registry.execute(SPRING, "seed-spring")
        await ask(aios, 'update post spring-lookbook title "Spring lookbook 2027" body "<p>Sea.</p>"')
        async with aios.units() as uow:
            # As if the process died after WordPress took the change and before the execution was recorded.
            execution = (await uow.session.exec(select(Execution))).one()
            landed = execution.result
            execution.status, execution.result, execution.finished_at = ExecutionStatus.STARTED, {}, None
            uow.session.add(execution)
            await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
            await uow.commit()
        assert execution.id is not None
        [changed] = wordpress.posts(slug="spring-lookbook")

        await aios.process(ReconcileExecution(execution.id))

        async with aios.units() as uow:
            settled = await uow.get(Execution, execution.id)
        assert settled is not None and settled.status == ExecutionStatus.SUCCEEDED
        assert settled.result == landed | {"replayed": True}
        assert landed["previous"] == {"title": "Spring lookbook", "body": SPRING.body}
        [post] = wordpress.posts(slug="spring-lookbook")
        assert post["modified_gmt"] == changed["modified_gmt"] and post["content"] == changed["content"]
    finally:
        await aios.close()


async def test_an_update_of_a_post_that_is_not_there_is_refused_before_anyone_is_asked(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, wordpress: WordPressServer
) -> None:
    aios = await wordpress_aios(database_url, slack_api, clock, tmp_path, wordpress)
    try:
        await slash(aios, 'update post autumn-lookbook title "Autumn lookbook 2027"')
        async with aios.units() as uow:
            approvals = (await uow.session.exec(select(Approval))).all()
        assert approvals == [] and await actions(aios) == []
        assert any(
            "WordPress has no post with the slug 'autumn-lookbook'" in text
            for text in thread_texts(slack_api)
        )
    finally:
        await aios.close()


def system_prompt(anthropic_api: FakeAnthropicApi) -> str:
    system = anthropic_api.requests[-1]["system"]
    return system if isinstance(system, str) else "\n".join(block["text"] for block in system)


async def test_the_content_agent_is_told_the_posts_a_request_names_and_those_on_its_topic(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    wordpress: WordPressServer,
) -> None:
    aios = await wordpress_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        wordpress,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        await aios.registry.execute(SPRING, "seed-spring")
        await aios.registry.execute(
            CmsCreateDraft(title="Summer lookbook", body="Sun and sea"), "seed-summer"
        )
        await aios.registry.execute(CmsPublish(slug="summer-lookbook"), "publish-summer")
        await aios.registry.execute(CmsCreateDraft(title="Linen care"), "seed-linen")
        anthropic_api.script(Reply("There is one already."))

        await ask(aios, "draft a post about the summer lookbook, like spring-lookbook and autumn-lookbook")

        [summer] = wordpress.posts(slug="summer-lookbook")
        lines = system_prompt(anthropic_api).splitlines()
        assert [line for line in lines if line.startswith("post ")] == [
            next(line for line in lines if line.startswith("post spring-lookbook: draft, last changed ")),
            "post autumn-lookbook: WordPress has no post with this slug",
            f"post summer-lookbook: published {str(summer['date_gmt'])[:16].replace('T', ' ')} UTC, "
            'title "Summer lookbook"',
        ]
        assert any(line.endswith('title "Spring lookbook"') for line in lines)
        assert 'WordPress posts matching "the summer lookbook":' in lines
        assert not any("linen-care" in line for line in lines)  # only posts the request is about
    finally:
        await aios.close()


async def test_a_post_drafted_earlier_in_the_same_plan_may_be_published_in_it(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    wordpress: WordPressServer,
) -> None:
    aios = await wordpress_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        wordpress,
        policy=PERMISSIVE,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        anthropic_api.script(
            Reply(
                "Drafting and publishing.",
                (
                    ToolUse("cms_create_draft", {"title": "Winter lookbook"}),
                    ToolUse("cms_publish", {"slug": "winter-lookbook"}),
                ),
            )
        )
        await ask(aios, "write and publish a winter lookbook post")
        assert [p["status"] for p in wordpress.posts(slug="winter-lookbook")] == ["publish"]

        anthropic_api.script(
            Reply(
                "Drafting twice.",
                (
                    ToolUse("cms_create_draft", {"title": "Snow lookbook"}),
                    ToolUse("cms_create_draft", {"title": "Snow lookbook", "body": "Again"}),
                ),
            ),
            Reply("Sorry."),
        )
        await ask(aios, "write a snow lookbook post", thread_ts="1700000300.000100")
        assert wordpress.posts(slug="snow-lookbook") == []
        assert any(
            "this plan already drafts a post with the slug 'snow-lookbook'" in text
            for text in thread_texts(slack_api)
        )
    finally:
        await aios.close()


async def test_the_content_agent_is_told_when_posts_cannot_be_looked_up(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    wordpress: WordPressServer,
) -> None:
    secret = "abcd EFGH ijkl MNOP qrst UVWX"
    aios = await wordpress_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        wordpress,
        WORDPRESS_APP_PASSWORD=secret,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        anthropic_api.script(Reply("I cannot see the posts."))
        await ask(aios, "update post spring-lookbook with a warmer opening")
    finally:
        await aios.close()
    lines = system_prompt(anthropic_api).splitlines()
    [problem] = [line for line in lines if "could not be looked up" in line]
    assert problem.startswith(
        "WordPress posts could not be looked up just now (WordPress refused the credentials"
    )
    assert secret not in json.dumps(anthropic_api.requests)
