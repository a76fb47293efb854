"""The bot-level net for secrets: a connector that forgets to strip credentials (here a test double at the
registry seam that repeats every configured secret, in every form, in its errors and results) leaks none of them
into a stored row, a Slack message or an explanation."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
import structlog.testing
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import select

from agents.base import PlanRequest
from agents.llm import CallContext
from agents.returns import ReturnsAgent
from bot.blocks import SUMMARY_MAX
from bot.bootstrap import Aios
from bot.explain import explain
from bot.redacting_transport import RedactingTransport
from bot.slack_transport import SlackTransport
from connectors.actions import Action, ShopRefund, StripeRefund
from connectors.errors import ConnectorError, PermanentConnectorError
from connectors.redaction import Redactor, Secret
from connectors.registry import ConnectorRegistry
from runtime.handlers import Handlers
from runtime.intake import IncomingIntent
from runtime.messagebus import MessageBus
from runtime.messages import HandleIntent
from runtime.mrkdwn import escape
from runtime.notices import (
    ApprovalCard,
    BudgetBlocked,
    CardEdit,
    Done,
    EscalationMessage,
    Notice,
    ReviewLine,
    RunReview,
    Thread,
)
from storage.ids import format_id
from storage.records import ProposedAction
from tests.conftest import Clock
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.integration.conftest import CHANNEL, REQUESTER, everything_stored, start_aios

WP_USER, WP_PASSWORD = "editor", "abcd EFGH ijkl MNOP"
SMTP_USER, SMTP_PASSWORD = "mailer", "smtp/pa55word"
SECRETS = {
    "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
    "SLACK_APP_TOKEN": "xapp-1-A0-12345-secretsecret",
    "WEAVIATE_API_KEY": "weaviate-key-0123456789",
    "AIOS_SHOP_API_KEY": "shop-api-key-0123456789",
    "WORDPRESS_APP_PASSWORD": WP_PASSWORD,
    "AIOS_WEBHOOKS": "whsec-webhook-secret-42",
    "AIOS_SMTP_URL": SMTP_PASSWORD,
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Every form a careless connector or library could repeat: as set, URL-encoded, without spaces, HTTP Basic.
LEAKED_FORMS = [
    *SECRETS.values(),
    quote(SMTP_PASSWORD, safe=""),
    WP_PASSWORD.replace(" ", ""),
    b64(f"{WP_USER}:{WP_PASSWORD}"),
    b64(f"{WP_USER}:{WP_PASSWORD.replace(' ', '')}"),
    b64(f"\0{SMTP_USER}\0{SMTP_PASSWORD}"),
]
ECHO = "; ".join(f"echo {form}" for form in LEAKED_FORMS)


class LeakyShop:
    """Says every secret it was never given: what a library's exception or an echoing server would do."""

    actions: ClassVar[tuple[type[Action], ...]] = (ShopRefund,)

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        if self.outcome == "error":
            raise PermanentConnectorError(f"the shop refused the refund: {ECHO}")
        if self.outcome == "bug":  # not a connector error: a library's exception that was not caught
            raise RuntimeError(f"unexpected answer: {ECHO}")
        return {"refund_id": "re_1", "request": {"headers": ECHO, "echo": list(LEAKED_FORMS)}}

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return None

    async def refusal(self, action: Action) -> str | None:
        if self.outcome == "error":
            raise ConnectorError(f"cannot ask: {ECHO}")
        if self.outcome == "bug":  # an answer the connector did not expect (a KeyError, say)
            raise KeyError(f"unexpected answer: {ECHO}")
        return f"no such order here: {ECHO}"


@pytest.fixture
async def aios(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    settings = {
        "SLACK_SIGNING_SECRET": SECRETS["SLACK_SIGNING_SECRET"],
        "SLACK_APP_TOKEN": SECRETS["SLACK_APP_TOKEN"],
        "WEAVIATE_API_KEY": SECRETS["WEAVIATE_API_KEY"],
        "AIOS_SHOP_API_KEY": SECRETS["AIOS_SHOP_API_KEY"],
        "WORDPRESS_URL": "http://127.0.0.1:9/",
        "WORDPRESS_USER": WP_USER,
        "WORDPRESS_APP_PASSWORD": WP_PASSWORD,
        "AIOS_WEBHOOKS": json.dumps(
            {"crm": {"url": "http://127.0.0.1:9/hooks/crm", "secret": SECRETS["AIOS_WEBHOOKS"]}}
        ),
        "AIOS_SMTP_URL": f"smtp://{SMTP_USER}:{quote(SMTP_PASSWORD, safe='')}@127.0.0.1:9",
        "AIOS_MAIL_FROM": "shop@example.com",
    }
    instance = await start_aios(database_url, slack_api, clock, tmp_path, **settings)
    yield instance
    await instance.close()


def with_connector(aios: Aios, shop: LeakyShop) -> MessageBus:
    """The bot as wired, with the leaky shop in the registry and the bot's own redactor at that seam."""
    base = aios.handlers
    handlers = Handlers(
        units=aios.units,
        dispatcher=base.dispatcher,
        policy=aios.policy,
        registry=ConnectorRegistry([shop], aios.registry.redactor),
        transport=base.transport,
        clock=base.clock,
        offline=True,
        memory=aios.memory,
        lease=aios.lease,
    )
    bus = MessageBus()
    handlers.register(bus)
    return bus


async def refund_through(aios: Aios, shop: LeakyShop) -> ProposedAction:
    intent_id = await aios.accept(
        IncomingIntent(
            source="mention",
            team_id="T",
            channel=CHANNEL,
            thread_ts="1.5",
            user=REQUESTER,
            text="refund order 1003 $40, it arrived broken",
        )
    )
    assert intent_id is not None
    await with_connector(aios, shop).handle(HandleIntent(intent_id))
    async with aios.units() as uow:
        return (await uow.session.exec(select(ProposedAction))).one()


def assert_no_secret(text: str) -> None:
    for form in LEAKED_FORMS:
        assert form not in text, form


@pytest.mark.parametrize("outcome", ["error", "bug", "result"])
async def test_a_connector_that_repeats_every_secret_leaks_none(
    aios: Aios, slack_api: FakeSlackApi, outcome: str
) -> None:
    action = await refund_through(aios, LeakyShop(outcome))
    assert action.status == ("executed" if outcome == "result" else "failed") and action.id is not None

    stored = await everything_stored(aios)
    said = "\n".join(json.dumps(c.params) for c in slack_api.calls)
    explained = await explain(aios.units, format_id("A", action.id))
    for text in (stored, said, explained):
        assert_no_secret(text)
    # What the connector said did reach the records, scrubbed, with the name of the setting to look at (an
    # unexpected error's text is recorded cut short).
    for setting in list(SECRETS)[: 2 if outcome == "bug" else None]:
        assert f"[REDACTED:{setting}]" in stored, setting
    if outcome == "error":
        assert "the shop refused the refund: echo [REDACTED:" in said
    if outcome == "bug":
        assert "RuntimeError: unexpected answer: echo [REDACTED:" in stored


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("error", "shop.refund could not be checked just now (cannot ask: echo ["),
        ("bug", "shop.refund could not be checked just now; try again shortly"),
        ("refused", "no such order here: echo [REDACTED:"),
    ],
)
async def test_a_refusal_and_a_failed_refusal_check_are_told_without_secrets(
    aios: Aios, outcome: str, expected: str
) -> None:
    registry = ConnectorRegistry([LeakyShop(outcome)], aios.registry.redactor)
    with structlog.testing.capture_logs() as logged:
        said = await registry.refusal(ShopRefund(order_id=1003, amount=40.0, reason="broken"))
    assert said is not None and said.startswith(expected)
    assert_no_secret(said)
    assert_no_secret(repr(logged))
    assert [e["event"] for e in logged] == (["refusal_check_failed"] if outcome == "bug" else [])


async def test_whatever_the_bot_posts_to_slack_is_scrubbed(aios: Aios, slack_api: FakeSlackApi) -> None:
    transport = aios.handlers.transport
    ts = await transport.post(
        CHANNEL, f"said: {ECHO}", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": ECHO}}]
    )
    await transport.update(CHANNEL, ts, f"now: {ECHO}")
    await transport.post_ephemeral(CHANNEL, REQUESTER, f"only you: {ECHO}")
    said = "\n".join(json.dumps(c.params) for c in slack_api.calls)
    assert_no_secret(said)
    assert said.count("[REDACTED:WORDPRESS_APP_PASSWORD]") >= 4 * 4


async def test_every_notice_the_runtime_hands_the_transport_is_scrubbed(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    """Scrubbed as the runtime wrote it, before the card is drawn: a secret that a card's shortening would cut in
    two leaves no part of it behind either."""
    transport = aios.handlers.transport
    thread = Thread(CHANNEL, "1.5")
    cut = "x" * (SUMMARY_MAX - 10) + WP_PASSWORD  # shortened to SUMMARY_MAX, mid-secret
    card = ApprovalCard(
        approval_id="AP-1",
        action_id="A-1",
        decision_id="D-1",
        summary=cut,
        params={"reason": ECHO, "note": f"first line\n{ECHO}", "nested": {"echo": list(LEAKED_FORMS)}},
        rationale=ECHO,
        rule_id="default",
        reason=ECHO,
        approver_roles=("manager",),
        requester=REQUESTER,
        expires_at=None,
        edits=(CardEdit("U0MANAGER", (("reason", "broken", ECHO),)),),
    )
    review = RunReview(
        "R-1", REQUESTER, ECHO, ("manager",), (ReviewLine("AP-1", ECHO, "pending", note=ECHO),)
    )
    message = EscalationMessage("R-1", "returns agent", "<@U0MANAGER>", ECHO, ECHO)
    await transport.tell(thread, Notice(ECHO, ECHO))
    ts = await transport.ask_approval(thread, card)
    await transport.update_approval(CHANNEL, ts, card)
    await transport.settle_approval(CHANNEL, ts, card, "approved", "U0MANAGER", clock.now)
    ts = await transport.ask_review(thread, review)
    await transport.update_review(CHANNEL, ts, review)
    ts = await transport.escalate(thread, message)
    await transport.settle_escalation(CHANNEL, ts, message, "answered", "U0MANAGER", clock.now)
    await transport.report_done(thread, Done(ECHO, ECHO, undo="A-1"))
    await transport.report_budget_blocked(thread, BudgetBlocked("R-1", ECHO))
    said = "\n".join(json.dumps(c.params, ensure_ascii=False) for c in slack_api.calls)
    assert_no_secret(said)
    assert WP_PASSWORD[:9] not in said  # "abcd EFGH": the part a shortened card would have kept
    assert said.count("[REDACTED:WORDPRESS_APP_PASSWORD]") >= 10 * 4


def slack_redacting(slack_api: FakeSlackApi, *secrets: Secret) -> RedactingTransport:
    """The bot's way out to Slack, with only these secrets configured."""
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    return RedactingTransport(SlackTransport(client), Redactor(secrets))


def said_to(slack_api: FakeSlackApi) -> str:
    return "\n".join(json.dumps(c.params, ensure_ascii=False) for c in slack_api.calls)


async def test_a_secret_stored_as_a_number_is_not_drawn_on_a_card(
    slack_api: FakeSlackApi, clock: Clock
) -> None:
    """A card draws a number as its digits (money with separators): a secret made of digits that a model or
    a requester put in an action's parameters, however deep, is replaced before it is written out."""
    transport = slack_redacting(slack_api, Secret("AIOS_SHOP_API_KEY", "98765432"))
    card = ApprovalCard(
        approval_id="AP-1",
        action_id="A-1",
        decision_id="D-1",
        summary="refund",
        params={"order_id": 98765432, "amount": 98765432.0, "note": {"x": 98765432, "y": [98765432]}},
        rationale="asked",
        rule_id="default",
        reason="needs a manager",
        approver_roles=("manager",),
        requester=REQUESTER,
        expires_at=None,
        edits=(CardEdit("U0MANAGER", (("order_id", 1003, 98765432),)),),
    )
    ts = await transport.ask_approval(Thread(CHANNEL, "1.5"), card)
    await transport.settle_approval(CHANNEL, ts, card, "approved", "U0MANAGER", clock.now)
    said = said_to(slack_api)
    assert "98765432" not in said and "98,765,432" not in said
    assert said.count("[REDACTED:AIOS_SHOP_API_KEY]") >= 2 * 5
    assert "*Order id:* [REDACTED:AIOS_SHOP_API_KEY]" in said


async def test_a_secret_the_runtime_escaped_for_mrkdwn_is_found_in_its_escaped_form(
    slack_api: FakeSlackApi,
) -> None:
    """The runtime escapes `&`, `<` and `>` in what it quotes before a notice exists: a secret holding them
    is known in that form too."""
    secret = "pa<ss&word>9"
    transport = slack_redacting(slack_api, Secret("AIOS_SMTP_URL", secret))
    thread = Thread(CHANNEL, "1.5")
    quoted = escape(f"the server said key={secret}")
    await transport.tell(thread, Notice(quoted, quoted))
    await transport.report_done(thread, Done(f"Done ({quoted})", quoted))
    await transport.ask_review(
        thread,
        RunReview("R-1", REQUESTER, "refund", ("manager",), (ReviewLine("AP-1", "x", "pending", quoted),)),
    )
    said = said_to(slack_api)
    assert escape(secret) not in said and secret not in said and "word&gt;9" not in said
    assert said.count("[REDACTED:AIOS_SMTP_URL]") >= 5


class LeakyPayments:
    """A Stripe connector whose lookups fail saying every secret."""

    actions: ClassVar[tuple[type[Action], ...]] = (StripeRefund,)

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        raise AssertionError("nothing is executed here")

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return None

    async def find_payments(self, query: str) -> list[Any]:
        raise ConnectorError(f"Stripe is down: {ECHO}")

    async def get_order(self, order_id: int) -> None:
        return None


async def test_a_failed_payment_lookup_reaches_the_agents_context_without_secrets(aios: Aios) -> None:
    payments = LeakyPayments()
    registry = ConnectorRegistry([LeakyShop("result"), payments], aios.registry.redactor)
    agent = ReturnsAgent(aios.llm, registry, aios.memory, payments)
    call = CallContext(intent_id=1, agent="returns", requester=REQUESTER, channel=CHANNEL)
    context = await agent.context(PlanRequest("refund $5 of payment pi_3Kettle", REQUESTER, call))
    [line] = context.lines
    assert line.startswith(
        "payment pi_3Kettle: could not be looked up just now (Stripe is down: echo [REDACTED:"
    )
    assert_no_secret(line)
