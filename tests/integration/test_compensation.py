"""A later step fails: the earlier steps are undone newest first, or handed to a person when they cannot be."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.actions import Action, CmsCreateDraft, EmailSend
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.sandbox_shop import SandboxShop
from connectors.sandbox_state import sandbox_state
from runtime.messagebus import MessageBus
from runtime.messages import ActionFailed
from storage.records import Decision, Execution, ExecutionStatus, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, ask, bus_with_connectors, run_with_connectors, start_aios

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


async def actions(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(ProposedAction).order_by(col(ProposedAction.id)))).all())


async def test_published_posts_are_unpublished_newest_first_when_a_later_step_fails(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PERMISSIVE,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        for title in ("Spring lookbook", "Summer lookbook"):
            await aios.registry.execute(CmsCreateDraft(title=title), f"seed-{title}")
        anthropic_api.script(
            Reply(
                "Publishing the series.",
                (
                    ToolUse("cms_publish", {"slug": "spring-lookbook"}),
                    ToolUse("cms_publish", {"slug": "summer-lookbook"}),
                    # A second draft under a slug taken: the CMS refuses it only when it runs.
                    ToolUse("cms_create_draft", {"title": "Spring lookbook", "slug": "spring-lookbook"}),
                ),
            )
        )
        await ask(aios, "publish the lookbook series")

        posts = {p["slug"]: p["status"] for p in (await sandbox_state(aios.units))["posts"]}
        assert posts == {"spring-lookbook": "unpublished", "summer-lookbook": "unpublished"}
        steps = [(a.name, a.params["slug"], a.status, a.compensates) for a in await actions(aios)]
        assert steps == [
            ("cms.publish", "spring-lookbook", "compensated", None),
            ("cms.publish", "summer-lookbook", "compensated", None),
            ("cms.create_draft", "spring-lookbook", "failed", None),
            ("cms.unpublish", "summer-lookbook", "executed", 2),  # newest first
            ("cms.unpublish", "spring-lookbook", "executed", 1),
        ]
        async with aios.units() as uow:
            kinds = [
                d.kind for d in (await uow.session.exec(select(Decision).order_by(col(Decision.id)))).all()
            ]
            run = (await uow.session.exec(select(Run))).one()
        assert kinds == ["policy", "policy", "policy", "compensation", "compensation"]
        assert run.status == "failed"
    finally:
        await aios.close()


class BrokenOutbox:
    """An outbox that refuses every email, or (``error``) has a bug that raises something else."""

    actions: ClassVar[tuple[type[Action], ...]] = (EmailSend,)

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        raise self.error

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return None


@pytest.mark.parametrize(
    "error", [PermanentConnectorError("550 mailbox unavailable"), RuntimeError("smtp pool closed")], ids=repr
)
async def test_a_step_that_cannot_be_undone_goes_to_a_person(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, error: Exception
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=PERMISSIVE)
    try:
        context = ConnectorContext(units_of_work=aios.units)
        await run_with_connectors(
            aios,
            [SandboxShop(context), SandboxCms(context), BrokenOutbox(error)],
            "refund $5 on order 1002 and tell the customer",
            thread_ts="1.7",
        )

        assert [(r["order_id"], r["amount"]) for r in (await sandbox_state(aios.units))["refunds"]] == [
            (1002, 5.0)
        ]
        assert [(a.name, a.status) for a in await actions(aios)] == [
            ("shop.refund", "escalated"),
            ("email.send", "failed"),
        ]
        [alert] = [
            c.params["text"]
            for c in slack_api.calls_to("chat.postMessage")
            if "cannot be undone" in c.params["text"]
        ]
        assert "<@U0MANAGER>" in alert and "Refund $5.00 on order 1002" in alert
    finally:
        await aios.close()


class OutboxAfterAnUpgrade:
    """Fails the email after an upgrade made the run's earlier refund unreadable (its stored amount no longer
    validates), so the compensation cannot rely on reading that step."""

    actions: ClassVar[tuple[type[Action], ...]] = (EmailSend,)

    def __init__(self, aios: Aios) -> None:
        self.aios = aios

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        async with self.aios.units() as uow:
            refund = (
                await uow.session.exec(select(ProposedAction).where(ProposedAction.name == "shop.refund"))
            ).one()
            refund.params = {**refund.params, "amount": -5}
            uow.session.add(refund)
            await uow.commit()
        raise PermanentConnectorError("550 mailbox unavailable")

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return None


async def test_a_step_whose_stored_parameters_no_longer_validate_still_goes_to_a_person(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=PERMISSIVE)
    try:
        context = ConnectorContext(units_of_work=aios.units)
        await run_with_connectors(
            aios,
            [SandboxShop(context), SandboxCms(context), OutboxAfterAnUpgrade(aios)],
            "refund $5 on order 1002 and tell the customer",
            thread_ts="1.8",
        )

        assert [(a.name, a.status) for a in await actions(aios)] == [
            ("shop.refund", "escalated"),
            ("email.send", "failed"),
        ]
        [alert] = [
            c.params["text"]
            for c in slack_api.calls_to("chat.postMessage")
            if "cannot be undone" in c.params["text"]
        ]
        assert "<@U0MANAGER> A-1 (shop.refund) already ran" in alert
    finally:
        await aios.close()


class DraftsLandingLate(SandboxCms):
    """A CMS whose drafts land only once ``landed`` is set: long enough for a process that took the execution
    over to book it failed (its own try failed) and the run's earlier steps to be undone for that failure."""

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        self.entered, self.landed = asyncio.Event(), asyncio.Event()

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        if isinstance(action, CmsCreateDraft):
            self.entered.set()
            await self.landed.wait()
        return await super().execute(action, idempotency_key)


@dataclass
class DraftToldFailed:
    """A run publishing spring and drafting autumn, whose draft is in the connector's hands while another
    process, having taken its execution over, booked it failed (its own try failed)."""

    aios: Aios
    cms: DraftsLandingLate
    planning: asyncio.Task[MessageBus]
    action_id: int
    context: ConnectorContext

    async def handle_the_takers_failure(self) -> None:
        taker = bus_with_connectors(self.aios, [SandboxShop(self.context), SandboxCms(self.context)])
        await taker.handle(ActionFailed(self.action_id, "the CMS timed out", certainly_undone=False))


@asynccontextmanager
async def draft_told_failed(
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
    thread_ts: str,
) -> AsyncIterator[DraftToldFailed]:
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PERMISSIVE,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        await aios.registry.execute(CmsCreateDraft(title="Spring lookbook"), "seed-spring")
        anthropic_api.script(
            Reply(
                "Publishing spring, drafting autumn.",
                (
                    ToolUse("cms_publish", {"slug": "spring-lookbook"}),
                    ToolUse("cms_create_draft", {"title": "Autumn lookbook"}),
                ),
            )
        )
        context = ConnectorContext(units_of_work=aios.units)
        cms = DraftsLandingLate(context)
        planning = asyncio.create_task(
            run_with_connectors(
                aios, [SandboxShop(context), cms], "publish spring, draft autumn", thread_ts=thread_ts
            )
        )
        await asyncio.wait_for(cms.entered.wait(), 10)
        async with aios.units() as uow:
            query = select(Execution).where(Execution.status == ExecutionStatus.STARTED)
            execution = (await uow.session.exec(query)).one()
        async with aios.units.read() as uow:
            found = await uow.executions.execution_in_hand(execution.id or 0)
        assert found is not None
        async with aios.units() as uow:
            assert await uow.executions.book(found[1], ExecutionStatus.FAILED, {}, "timed out", clock(), [])
            await uow.commit()
        yield DraftToldFailed(aios, cms, planning, execution.action_id, context)
    finally:
        await aios.close()


async def test_a_step_told_failed_that_took_effect_after_all_says_so_and_what_its_failure_undid(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    async with draft_told_failed(
        database_url, slack_api, anthropic_api, clock, tmp_path, "2.1"
    ) as told_failed:
        aios = told_failed.aios
        await told_failed.handle_the_takers_failure()
        assert {p["slug"]: p["status"] for p in (await sandbox_state(aios.units))["posts"]} == {
            "spring-lookbook": "unpublished"  # undone for the failure; the autumn draft not landed yet
        }

        told_failed.cms.landed.set()  # the first process's draft lands after all
        await told_failed.planning

        steps = [(a.name, a.status, a.compensates) for a in await actions(aios)]
        assert steps == [
            ("cms.publish", "compensated", None),
            ("cms.create_draft", "executed", None),
            ("cms.unpublish", "executed", 1),
        ]
        told = [
            c.params["text"]
            for c in slack_api.calls_to("chat.postMessage")
            if c.params.get("thread_ts") == "2.1" and c.params["channel"] == CHANNEL
        ]
        failed = next(i for i, t in enumerate(told) if t.startswith(":x: cms.create_draft failed"))
        [done] = [t for t in told if ":white_check_mark: Done: Create draft" in t]
        assert told.index(done) > failed
        assert done.startswith(
            ":warning: This took effect after all, after it was reported failed. The run's earlier steps were "
            "undone after a failure (A-1): ask again for what should still be done.\n"
        )


async def test_a_failure_handled_after_its_action_was_booked_done_after_all_undoes_nothing(
    database_url: str, slack_api: FakeSlackApi, anthropic_api: FakeAnthropicApi, clock: Clock, tmp_path: Path
) -> None:
    """The taker books the failure, the first process's try lands and is booked over it, and only then is the
    taker's failure handled: the run's earlier steps stand, as the action they led to did take effect."""
    async with draft_told_failed(
        database_url, slack_api, anthropic_api, clock, tmp_path, "2.2"
    ) as told_failed:
        aios = told_failed.aios
        told_failed.cms.landed.set()  # the draft lands and is booked over the failure before the taker's event
        await told_failed.planning
        await told_failed.handle_the_takers_failure()

        assert {p["slug"]: p["status"] for p in (await sandbox_state(aios.units))["posts"]} == {
            "spring-lookbook": "published",
            "autumn-lookbook": "draft",
        }
        steps = [(a.name, a.status, a.compensates) for a in await actions(aios)]
        assert steps == [("cms.publish", "executed", None), ("cms.create_draft", "executed", None)]
        told = [
            c.params["text"]
            for c in slack_api.calls_to("chat.postMessage")
            if c.params.get("thread_ts") == "2.2"
        ]
        assert any(":white_check_mark: Done: Create draft" in t for t in told)
        assert not any(t.startswith(":x:") for t in told)  # the Done is the last word, not the failure
