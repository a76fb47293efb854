"""`/aios undo A-…` and the Undo button through the real web app and Bolt (signed requests), the fake Slack
Web API and the sandbox connectors: the inverse is proposed as a new run in the original's thread, judged by
the policy, linked both ways in `/aios why`; actions without an inverse get the follow-up a person would take."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text
from sqlmodel import col, select

from bot.audit_proof import ParamsHasher, installed_action_models, roles_of_policy
from bot.bootstrap import Aios
from bot.slack_app import build_slack_app
from bot.web import build_web_app
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.sandbox_shop import SandboxShop
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval
from storage.audit import verify
from storage.engine import create_engine
from storage.records import AuditEntry, Intent, ProposedAction, Run, UndoRequest
from tests.conftest import Clock
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, block_action, sign, slash_command
from tests.integration.conftest import CHANNEL, REQUESTER, ask, run_with_connectors, start_aios
from tests.integration.test_compensation import BrokenOutbox

EDITOR = "U0EDITOR"
TEAMMATE = "U0BOB"
THREAD = "1700000000.000100"
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
  - id: unpublishing-needs-an-editor
    when: action.name == "cms.unpublish"
    verdict: require_approval
    approvers: [editor]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund" && action.params.amount <= 100.0
    verdict: allow
  - id: emails-are-fine-here
    when: action.name == "email.send"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


@dataclass
class SlackFrontDoor:
    aios: Aios
    client: TestClient  # type: ignore[type-arg]

    async def send(self, body: str, content_type: str) -> tuple[int, str]:
        response = await self.client.post(
            "/slack/events", data=body, headers={"Content-Type": content_type, **sign(body)}
        )
        return response.status, await response.text()

    async def slash(self, text: str, user: str = TEAMMATE, response_url: str | None = None) -> str:
        """The ack's text (only the asker sees it), once what it started in the background is done."""
        if response_url is None:
            status, body = await self.send(*slash_command(text, user=user))
        else:
            status, body = await self.send(*slash_command(text, user=user, response_url=response_url))
        assert status == 200
        await self.aios.background.drain()
        return body  # Bolt answers an ack with only a text as that text

    async def click_undo(self, value: str, user: str = TEAMMATE, response_url: str | None = None) -> int:
        click = block_action("aios_undo", value, user=user, message_ts="1800000000.000009")
        if response_url is not None:
            click = block_action(
                "aios_undo", value, user=user, message_ts="1800000000.000009", response_url=response_url
            )
        status, _ = await self.send(*click)
        return status


@pytest.fixture
async def aios(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    instance = await start_aios(database_url, slack_api, clock, tmp_path, policy=POLICY)
    yield instance
    await instance.close()


@pytest.fixture
async def slack(aios: Aios, slack_api: FakeSlackApi) -> AsyncIterator[SlackFrontDoor]:
    web_client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, web_client, SIGNING_SECRET), SIGNING_SECRET)
    async with TestClient(TestServer(app)) as client:
        yield SlackFrontDoor(aios, client)


async def published(aios: Aios) -> int:
    """A post drafted and published (the policy allows both); the publish's action id."""
    await ask(aios, 'draft a post titled "Spring lookbook"')
    await ask(aios, "publish post spring-lookbook", message_ts="1700000000.000200")
    actions = await all_actions(aios)
    assert [(a.name, a.status) for a in actions] == [
        ("cms.create_draft", "executed"),
        ("cms.publish", "executed"),
    ]
    assert actions[1].id is not None
    return actions[1].id


async def all_actions(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        query = select(ProposedAction).order_by(col(ProposedAction.id))
        return list((await uow.session.exec(query)).all())


async def undo_requests(aios: Aios) -> list[UndoRequest]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(UndoRequest))).all())


async def post_status(aios: Aios) -> str:
    [post] = (await sandbox_state(aios.units))["posts"]
    return str(post["status"])


def undo_buttons(slack_api: FakeSlackApi) -> list[tuple[str, str]]:
    """(the Done text, the Undo button's value) of every Done message with an Undo button."""
    found = []
    for call in slack_api.calls_to("chat.postMessage"):
        for block in call.params.get("blocks") or []:
            for element in block.get("elements", []) if block["type"] == "actions" else []:
                if element.get("action_id") == "aios_undo":
                    found.append((str(call.params["text"]), str(element["value"])))
    return found


async def test_a_publish_is_undone_by_an_unpublish_the_editor_approves(
    aios: Aios, slack: SlackFrontDoor, slack_api: FakeSlackApi
) -> None:
    publish = await published(aios)
    # The Done message of the publish carries the Undo button (value: the action id only); the draft's does not.
    [(done, value)] = undo_buttons(slack_api)
    assert done.startswith(":white_check_mark: Done: Publish post spring-lookbook now.")
    assert value == f"A-{publish}"

    answer = await slack.slash(f"undo A-{publish}")
    assert answer.startswith(f"Asking to undo A-{publish} with Unpublish post spring-lookbook")

    [_, _, undo] = await all_actions(aios)
    assert (undo.name, undo.status, undo.undoes_action_id) == ("cms.unpublish", "awaiting_approval", publish)
    async with aios.units() as uow:
        approval = await uow.approvals.approval_for_action(undo.id or 0)
        run = await uow.get(Run, undo.run_id)
        intent = await uow.get(Intent, run.intent_id) if run else None
    # A new run in the original's thread, for the person who asked, judged by the policy's rule for unpublishing.
    assert approval is not None and intent is not None and run is not None
    assert (intent.source, intent.user, intent.channel, intent.thread_ts) == (
        "undo",
        TEAMMATE,
        CHANNEL,
        THREAD,
    )
    assert (approval.requester, approval.approver_roles, approval.thread_ts) == (TEAMMATE, ["editor"], THREAD)
    assert run.agent == "content"
    card = slack_api.approval_requests()[-1]
    assert card.params["thread_ts"] == THREAD
    assert "unpublishing-needs-an-editor" in json.dumps(card.params["blocks"])
    assert await post_status(aios) == "published"  # nothing happens before the editor approves

    await aios.process(DecideApproval(approval.id or 0, EDITOR, approve=True, channel=CHANNEL))

    assert await post_status(aios) == "unpublished"
    assert [(a.name, a.status) for a in await all_actions(aios)][2] == ("cms.unpublish", "executed")
    await slack.slash(f"why A-{publish}")  # answered privately, after the ack
    await slack.slash(f"why A-{undo.id}")
    original_why, undo_why = [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")][-2:]
    assert f"– undone by `A-{undo.id}`" in original_why
    assert f"– undoes `A-{publish}` (asked for with `/aios undo`)" in undo_why

    again = await slack.slash(f"undo A-{publish}")
    assert again == f"A-{publish} was already undone by A-{undo.id} (`/aios why A-{undo.id}`)."
    # An unpublish has no inverse: the answer says how to publish again.
    assert await slack.slash(f"undo A-{undo.id}") == (
        f"A-{undo.id} (Unpublish post spring-lookbook) cannot be undone: to publish the post again: "
        "`/aios publish post spring-lookbook`."
    )
    assert len(await undo_requests(aios)) == 1


async def test_a_refund_has_no_inverse_and_the_answer_says_what_a_person_would_do(
    aios: Aios, slack: SlackFrontDoor, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1002, $40, late delivery")
    [refund] = await all_actions(aios)
    assert refund.status == "executed"
    assert undo_buttons(slack_api) == []  # its Done message offers no Undo

    answer = await slack.slash(f"undo A-{refund.id}")

    assert answer == (
        f"A-{refund.id} (Refund $40.00 on order 1002 (late delivery)) cannot be undone: a refund cannot be "
        "taken back; to charge the customer again, do it in the shop's or Stripe's dashboard."
    )
    assert await undo_requests(aios) == []
    assert len(await all_actions(aios)) == 1


async def test_asking_twice_files_one_undo_and_a_rejected_undo_may_be_asked_again(
    aios: Aios, slack: SlackFrontDoor, slack_api: FakeSlackApi
) -> None:
    publish = await published(aios)

    # Two clicks at once (a double click, or two people): one claim wins, the other is told.
    statuses = await asyncio.gather(
        slack.click_undo(f"A-{publish}"), slack.click_undo(f"A-{publish}", EDITOR)
    )
    assert list(statuses) == [200, 200]
    await aios.background.drain()
    second = await slack.slash(f"undo A-{publish}")

    undos = [a for a in await all_actions(aios) if a.undoes_action_id == publish]
    assert [(a.name, a.status) for a in undos] == [("cms.unpublish", "awaiting_approval")]
    assert len(await undo_requests(aios)) == 1
    assert len(slack_api.approval_requests()) == 1
    assert second == (
        f"An undo of A-{publish} is already on its way: A-{undos[0].id} is awaiting approval "
        f"(`/aios why A-{undos[0].id}`)."
    )
    told = [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")]
    assert len([t for t in told if t.startswith(f"Asking to undo A-{publish}")]) == 1
    assert len([t for t in told if f"An undo of A-{publish}" in t]) == 1

    # The editor turns the undo down: the post stays published, and the undo may be asked for again.
    async with aios.units() as uow:
        approval = await uow.approvals.approval_for_action(undos[0].id or 0)
    assert approval is not None and approval.id is not None
    await aios.process(DecideApproval(approval.id, EDITOR, approve=False, channel=CHANNEL))
    assert await post_status(aios) == "published"

    assert (await slack.slash(f"undo A-{publish}", user=REQUESTER)).startswith(f"Asking to undo A-{publish}")
    undos = [a for a in await all_actions(aios) if a.undoes_action_id == publish]
    assert [a.status for a in undos] == ["rejected", "awaiting_approval"]
    first, again = await undo_requests(aios)
    # The two clicks at once raced: either may have filed the first undo.
    assert (first.attempt, first.requested_by in (TEAMMATE, EDITOR)) == (0, True)
    assert (again.attempt, again.requested_by) == (1, REQUESTER)


async def test_a_refund_handed_to_a_person_after_a_later_step_failed_gets_the_same_answer(
    aios: Aios, slack: SlackFrontDoor
) -> None:
    context = ConnectorContext(units_of_work=aios.units)
    outbox = BrokenOutbox(PermanentConnectorError("550 mailbox unavailable"))
    await run_with_connectors(
        aios,
        [SandboxShop(context), SandboxCms(context), outbox],
        "refund $5 on order 1002 and tell the customer",
    )
    [refund, email] = await all_actions(aios)
    assert (refund.status, email.status) == ("escalated", "failed")

    assert await slack.slash(f"undo A-{refund.id}") == (
        f"A-{refund.id} (Refund $5.00 on order 1002 (customer request)) cannot be undone: a refund cannot be "
        "taken back; to charge the customer again, do it in the shop's or Stripe's dashboard."
    )
    assert (await slack.slash(f"undo A-{email.id}")).startswith(f"A-{email.id} has not run (it failed;")


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("", "Which action? `/aios undo A-3`, with the action id of a “Done” message."),
        ("A-999", "There is no action A-999."),
        ("R-1", "R-1 is not an action id; action ids look like A-3. Which action?"),
        ("A-1 A-2", "Which action?"),
        ("A-99999999999", "A-99999999999 is not an action id"),
    ],
)
async def test_an_unknown_or_malformed_id_gets_one_clear_sentence(
    aios: Aios, slack: SlackFrontDoor, argument: str, expected: str
) -> None:
    assert (await slack.slash(f"undo {argument}".strip())).startswith(expected)
    assert await undo_requests(aios) == []


async def test_an_action_that_has_not_run_cannot_be_undone(
    aios: Aios, slack: SlackFrontDoor, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")  # over $100: waits for a manager
    [refund] = await all_actions(aios)
    assert refund.status == "awaiting_approval"

    answer = await slack.slash(f"undo A-{refund.id}")
    status = await slack.click_undo(f"A-{refund.id}")
    await aios.background.drain()

    assert answer == f"A-{refund.id} has not run (it is awaiting approval), so there is nothing to undo."
    assert status == 200
    assert answer in [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")]
    assert await undo_requests(aios) == []


async def test_the_link_to_the_undone_action_is_in_the_audit_chain(
    aios: Aios, slack: SlackFrontDoor, database_url: str
) -> None:
    publish = await published(aios)
    await slack.slash(f"undo A-{publish}")
    [undo] = [a for a in await all_actions(aios) if a.undoes_action_id == publish]

    async def audit_problems() -> list[str]:
        report = await verify(aios.units, ParamsHasher(installed_action_models()), roles_of_policy)
        return [problem.line() for problem in report.problems]

    assert await audit_problems() == []
    async with aios.units() as uow:
        query = select(AuditEntry).where(
            AuditEntry.record_table == "proposed_action", AuditEntry.record_id == str(undo.id)
        )
        entries = (await uow.session.exec(query)).all()
    assert entries and all(f'"undoes_action_id":{publish}' in entry.content for entry in entries)

    # Someone with database access cuts the link: verify names the record.
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE proposed_action SET undoes_action_id = NULL WHERE id = :id"), {"id": undo.id}
            )
    finally:
        await engine.dispose()
    [problem] = await audit_problems()
    assert problem.startswith(f"A-{undo.id}: ")


@pytest.mark.parametrize("value", ["R-1", "A-99999999999", "not an id", "A-999"])
async def test_an_undo_click_with_a_value_naming_no_action_changes_nothing(
    aios: Aios, slack: SlackFrontDoor, slack_api: FakeSlackApi, value: str
) -> None:
    assert await slack.click_undo(value) == 200
    await aios.background.drain()

    assert await undo_requests(aios) == []
    told = [c.params["text"] for c in slack_api.calls_to("chat.postEphemeral")]
    assert told == (["There is no action A-999."] if value == "A-999" else [])


async def test_an_undo_that_cannot_be_filed_is_told_through_the_commands_response_url(
    aios: Aios, slack: SlackFrontDoor, slack_api: FakeSlackApi
) -> None:
    """What follows the ack reaches the asker where chat.postEphemeral is refused (a channel the bot is not in,
    a direct message between people): through the command's response_url, Slack's."""
    publish = await published(aios)
    async with aios.engine.begin() as connection:  # gone from the CMS since: unpublishing it is refused
        await connection.execute(text("DELETE FROM sandbox_post"))
    posted = len(slack_api.calls)

    ack = await slack.slash(f"undo A-{publish}", response_url=slack_api.response_url)

    assert ack.startswith(f"Asking to undo A-{publish}")
    said = [(c.method, c.params) for c in slack_api.calls[posted:] if c.method != "auth.test"]
    refused = (
        f"The undo of A-{publish} was not filed: the sandbox CMS has no post with the slug 'spring-lookbook'."
    )
    assert said == [
        ("response_url", {"text": refused, "response_type": "ephemeral", "replace_original": False})
    ]


async def test_an_undo_clicks_answer_follows_through_the_clicks_response_url(
    aios: Aios, slack: SlackFrontDoor, slack_api: FakeSlackApi
) -> None:
    publish = await published(aios)
    posted = len(slack_api.calls)

    assert await slack.click_undo(f"A-{publish}", response_url=slack_api.actions_url) == 200
    await aios.background.drain()

    told = [c.params["text"] for c in slack_api.calls[posted:] if c.method == "response_url"]
    [answer] = told
    assert answer.startswith(f"Asking to undo A-{publish}")
    assert slack_api.calls_to("chat.postEphemeral") == []
