"""Approval cards as people read them: a labelled line per parameter, money as money, times in the team's zone,
long text as a quote with its own line breaks, nested values as JSON; every message within Slack's limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mcp_types import Tool
from slack_sdk.models.blocks import Block, SectionBlock

from bot.blocks import Message, approval_closed, approval_request
from bot.console import render
from connectors.actions import CmsPublish, EmailSend, ShopRefund
from connectors.mcp_tools import McpToolAction, action_for_tool
from runtime.card_values import field_labels
from runtime.notices import ApprovalCard

BERLIN = ZoneInfo("Europe/Berlin")
DECIDED_AT = datetime(2026, 11, 24, 13, 5, tzinfo=UTC)
PUBLISH = ApprovalCard(
    approval_id="AP-7",
    action_id="A-12",
    decision_id="D-31",
    summary="Publish post spring-lookbook at Tue 1 Dec 2026 09:00 Europe/Berlin (08:00 UTC)",
    params={"publish_at": "2026-12-01T08:00:00Z", "slug": "spring-lookbook"},
    rationale="The calendar has it for Tuesday morning.",
    rule_id="publishing-needs-an-editor",
    reason="publishing needs an editor",
    approver_roles=("editor",),
    requester="U0ALICE",
    expires_at=datetime(2026, 11, 30, 17, 0, tzinfo=UTC),
    labels=field_labels(CmsPublish),
    zone=BERLIN,
)


def valid(message: Message) -> list[dict[str, Any]]:
    """The blocks, after slack_sdk has built each one again from its JSON (which validates it) and agreed."""
    text, blocks = message
    assert [block.to_dict() for block in Block.parse_all(blocks)] == blocks
    assert len(blocks) <= 50 and len(text) <= 3000
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SectionBlock.text_max_length
    return blocks


def test_a_publish_card_reads_as_labelled_lines_in_the_teams_zone() -> None:
    message = approval_request(PUBLISH)
    assert render(message[0], valid(message)) == (
        "Approval needed\n"
        "Publish post spring-lookbook at Tue 1 Dec 2026 09:00 Europe/Berlin (08:00 UTC)\n"
        "Requested by @U0ALICE · `A-12`\n"
        "Publish at: Tue 1 Dec 2026 09:00 Europe/Berlin (08:00 UTC)\n"
        "Slug: spring-lookbook\n"
        "Why the agent proposes it: The calendar has it for Tuesday morning.\n"
        "  Policy rule `publishing-needs-an-editor`: publishing needs an editor. Approvers: editor · `AP-7` · "
        "`D-31` · expires Mon 30 Nov 2026 18:00 Europe/Berlin (17:00 UTC)\n"
        "[ Approve ]  [ Edit ]  [ Reject ]   "
        "(type: approve as <user> / reject as <user> / edit AP-7 field=value as <user>)"
    )


def test_a_decided_card_drops_its_expiry_and_mentions_who_decided() -> None:
    for outcome in ("approved", "rejected", "expired"):
        actor = None if outcome == "expired" else "U0BOB"
        text, blocks = approval_closed(replace(PUBLISH, voters=("U0CAROL",)), outcome, actor, DECIDED_AT)
        shown = render(text, valid((text, blocks)))
        assert "expires" not in shown and "Requested by <@U0ALICE>" in blocks[1]["text"]["text"]
    _, blocks = approval_closed(
        replace(PUBLISH, voters=("U0CAROL",), quorum=2), "approved", "U0BOB", DECIDED_AT
    )
    assert blocks[-1]["text"]["text"] == (
        ":white_check_mark: *Approved* by <@U0CAROL>, <@U0BOB> at Tue 24 Nov 2026 14:05 Europe/Berlin (13:05 UTC)"
    )
    _, blocks = approval_closed(PUBLISH, "expired", None, DECIDED_AT)
    assert blocks[-1]["text"]["text"].startswith(":hourglass: *Expired* at Tue 24 Nov 2026 14:05")


def test_money_is_shown_as_money_and_labels_come_from_the_model() -> None:
    card = replace(
        PUBLISH,
        params={"order_id": 1001, "amount": 40, "reason": "late"},
        labels=field_labels(ShopRefund),
    )
    summary = valid(approval_request(card))[1]["text"]["text"]
    assert summary.endswith("\n*Amount:* $40.00\n*Order id:* 1001\n*Reason:* late")


def test_a_ten_thousand_character_email_body_is_a_quote_with_real_line_breaks() -> None:
    body = "Hello Ana,\n\n" + "Your order <#1001> & the rest shipped today.\n" * 250
    assert len(body) > 10_000
    card = replace(
        PUBLISH,
        params={"to": "ana@example.com", "subject": "Your order", "body": body},
        labels=field_labels(EmailSend),
    )
    for message in (approval_request(card), approval_closed(card, "approved", "U0BOB", DECIDED_AT)):
        blocks = valid(message)
        [quoted] = [b["text"]["text"] for b in blocks if b["block_id"] == "aios_param_0"]
        lines = quoted.split("\n")
        assert lines[:4] == [
            "*Body:*",
            ">Hello Ana,",
            ">",
            ">Your order &lt;#1001&gt; &amp; the rest shipped today.",
        ]
        assert all(line.startswith(">") for line in lines[1:]) and quoted.endswith("…")
        assert "\\n" not in quoted
        assert "*Subject:* Your order" in blocks[1]["text"]["text"]
        # and in the terminal, as written, marked as a quote
        assert "Body:\n  │ Hello Ana,\n  │ \n  │ Your order <#1001> & the rest shipped today.\n" in render(
            *message
        )


def crm_tool() -> type[McpToolAction]:
    schema = {
        "type": "object",
        "properties": {
            "deal": {"type": "object", "title": "Deal"},
            "owner_id": {"type": "string"},
        },
    }
    made = action_for_tool("crm", Tool(name="create_deal", input_schema=schema))
    assert not isinstance(made, str)
    return made


def test_an_mcp_tools_nested_params_show_as_json_under_the_schemas_titles() -> None:
    deal = {
        "name": "Spring <!channel>",
        "stages": [{"name": "won", "value": 1200}],
        "meta": {"a": {"b": None}},
    }
    card = replace(PUBLISH, params={"deal": deal, "owner_id": "U9"}, labels=field_labels(crm_tool()))
    blocks = valid(approval_request(card))
    assert blocks[1]["text"]["text"].endswith("\n*Owner id:* U9")
    nested = blocks[2]["text"]["text"]
    assert nested.startswith('*Deal:*\n```{\n  "meta": {\n    "a": {\n      "b": null') and nested.endswith(
        "}```"
    )
    assert "&lt;!channel&gt;" in nested and "<!channel>" not in nested


def test_many_long_parameters_stay_within_fifty_blocks() -> None:
    card = replace(PUBLISH, params={f"note_{n:02}": f"line one\nline {n}" for n in range(60)})
    blocks = valid(approval_request(card))
    assert sum(b["block_id"].startswith("aios_param_") for b in blocks) == 20
    assert blocks[1]["text"]["text"].endswith(
        "\n_40 more long parameters than a card can show; the record keeps them_"
    )
