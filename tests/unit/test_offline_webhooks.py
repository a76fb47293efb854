"""The offline grammar for webhooks: a JSON object and a configured webhook's name, read as a model would."""

from __future__ import annotations

import pytest

from agents.llm import CallContext, LLMReply, Message, ToolSpec
from agents.offline import OfflinePlanner

CALL = CallContext(intent_id=1, agent="tools", requester="U1", channel="C1")
TOOLS = [ToolSpec("webhook_post", "", {})]
CONTEXT = (
    "You are the tools agent.\n\nContext:\nconfigured webhooks (webhook_post's webhook): audit, crm, crm.eu"
)
RESTOCK = {"event": "restock", "sku": "MUG-1"}


async def reply_to(text: str, system: str = CONTEXT, tools: list[ToolSpec] = TOOLS) -> LLMReply:
    return await OfflinePlanner().complete(
        role="agent", call=CALL, system=system, messages=[Message("user", text)], tools=tools
    )


@pytest.mark.parametrize(
    ("text", "webhook", "body"),
    [
        ('post {"event": "refund", "order": 1001} to webhook crm', "crm", {"event": "refund", "order": 1001}),
        ('send to webhook crm: {"event":"restock","sku":"MUG-1"}', "crm", RESTOCK),
        ('notify crm {"event":"restock","sku":"MUG-1"}', "crm", RESTOCK),
        ('notify the audit webhook {"event":"restock","sku":"MUG-1"}', "audit", RESTOCK),
        ('please send {"event":"restock","sku":"MUG-1"} to the CRM webhook.', "crm", RESTOCK),
        ('post {"event":"restock","sku":"MUG-1"} to crm.eu.', "crm.eu", RESTOCK),
        ('send to the crm webhook with {"event":"restock","sku":"MUG-1"}', "crm", RESTOCK),
        # What someone writes in Slack arrives with &, < and > escaped, and sometimes with curly quotes.
        ("notify crm {“note”: “R&amp;D &lt;3”}", "crm", {"note": "R&D <3"}),
        # The body's own words name no webhook.
        ('notify audit {"to": "crm", "webhook": "billing"}', "audit", {"to": "crm", "webhook": "billing"}),
        ('post {"nested": {"a": [1, 2, null]}, "ok": true} to webhook audit', "audit", None),
    ],
)
async def test_a_json_object_goes_to_the_named_webhook(text: str, webhook: str, body: object) -> None:
    reply = await reply_to(text)
    expected = body if body is not None else {"nested": {"a": [1, 2, None]}, "ok": True}
    assert [(c.name, c.input) for c in reply.tool_calls] == [
        ("webhook_post", {"webhook": webhook, "body": expected})
    ]
    assert f"webhook {webhook}" in reply.text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("notify crm that order 1001 shipped", "I need the body as a JSON object, like `post {"),
        (
            "post [1, 2] to webhook crm",
            "The body must be a JSON object ({…}), not a list; write it like `post {",
        ),
        (
            "post {event: refund} to webhook crm",
            "The body is not valid JSON (Expecting property name enclosed in double quotes at character 2); "
            'write it like `post {"event": "refund", "order": 1001} to webhook crm`',
        ),
        ('post {"event": "refund" to webhook crm', "The body is not valid JSON"),
    ],
)
async def test_a_body_that_is_not_a_json_object_proposes_nothing_and_shows_how(text: str, says: str) -> None:
    reply = await reply_to(text)
    assert reply.tool_calls == [] and says in reply.text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('post {"event": "x"} to webhook billing', "There is no webhook named “billing”"),
        ('notify billing {"event": "x"}', "There is no webhook named “billing”"),
        ('send {"event": "x"} to the webhook', "Which webhook should it go to?"),
    ],
)
async def test_a_webhook_that_is_not_configured_gets_the_configured_names(text: str, says: str) -> None:
    reply = await reply_to(text)
    assert reply.tool_calls == []
    assert says in reply.text and "the configured ones are audit, crm, crm.eu" in reply.text


async def test_without_webhooks_in_the_context_none_is_configured() -> None:
    reply = await reply_to('notify crm {"event": "x"}', system="You are the tools agent.")
    assert reply.tool_calls == [] and "no webhooks are configured (AIOS_WEBHOOKS)" in reply.text


async def test_only_an_agent_offering_webhooks_plans_them_and_its_help_shows_how() -> None:
    refunds = [ToolSpec("shop_refund", "", {})]
    assert (await reply_to('notify crm {"event": "x"}', tools=refunds)).tool_calls == []
    help_text = (await reply_to("what can you do")).text
    assert 'post {"event": "refund", "order": 1001} to webhook crm' in help_text
    assert 'notify crm {"event": "restock", "sku": "MUG-1"}' in help_text
