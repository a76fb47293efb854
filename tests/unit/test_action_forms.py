"""The Edit dialog: built from each action's schema within Slack's limits (as slack_sdk and the local Slack API
check a view), read back from ``view.state.values`` as Slack sends it to the same parameters, and the model's
errors placed under the inputs they are about."""

from __future__ import annotations

import json
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_types import Tool
from slack_sdk.models.views import View

from bot.action_forms import (
    CHANGED_MEANWHILE,
    EDIT_CALLBACK_ID,
    INTRO,
    TEXT_VALUE_MAX,
    VIEW_BLOCKS_MAX,
    Kind,
    edit_view,
    field_specs,
    fixed_fields,
    input_block_ids,
    notice_view,
    read_submission,
    validation_errors,
)
from connectors.actions import Action
from connectors.mcp_tools import McpToolAction, action_for_tool
from connectors.registry import ENTRY_POINT_GROUP, ConnectorRegistry
from tests.fakes.slack_api import _view_refusal

CRM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "deal": {
            "type": "object",
            "title": "Deal",
            "description": "The deal to create",
            "properties": {
                "name": {"type": "string"},
                "stage": {"enum": ["lead", "won", "lost"]},
                "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
            },
            "required": ["name"],
        },
        "pipeline": {"type": "string", "enum": ["sales", "renewals"], "description": "Which pipeline"},
        "priority": {"type": ["integer", "null"], "minimum": 1, "maximum": 5},
        "value": {"type": "number", "exclusiveMinimum": 0},
        "close_by": {"type": "string", "format": "date-time"},
        "notify": {"type": "boolean"},
        "owner": {"anyOf": [{"$ref": "#/$defs/owner"}, {"type": "null"}]},
        "summary": {"type": "string", "maxLength": 2000},
    },
    "required": ["deal", "pipeline", "value"],
    "$defs": {
        "line": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
            "required": ["sku", "quantity"],
        },
        "owner": {"type": "string", "minLength": 2},
    },
}


def crm_tool() -> type[McpToolAction]:
    made = action_for_tool("crm", Tool(name="create_deal", input_schema=CRM_SCHEMA))
    assert not isinstance(made, str)
    return made


def installed_actions() -> dict[str, type[Action]]:
    """Every action the installed connectors offer (one model per name), and the MCP tool above."""
    found: dict[str, type[Action]] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        for model in entry_point.load().actions:
            found.setdefault(model.name, model)
    tool = crm_tool()
    return {**found, tool.name: tool}


# Valid parameters for each action, as the records keep them (model_dump in JSON mode).
EXAMPLES: dict[str, dict[str, Any]] = {
    "shop.refund": {"order_id": 1001, "amount": 250.0, "reason": "Arrived broken"},
    "stripe.refund": {
        "payment": "pi_3Abc",
        "amount": 12.5,
        "reason": "Duplicate charge",
        "stripe_reason": "duplicate",
    },
    "cms.create_draft": {
        "title": "Winter care",
        "body": "Angle: boots\n\nKeep them dry.",
        "slug": None,
        "planned_for": "2026-12-01T09:00:00Z",
    },
    "cms.publish": {"slug": "spring-lookbook", "publish_at": "2026-12-01T08:00:00Z"},
    "cms.unpublish": {"slug": "spring-lookbook"},
    "email.send": {"to": "ana@example.com", "subject": "Your order", "body": "Hello Ana,\n\nIt shipped."},
    "webhook.post": {"webhook": "crm", "body": {"event": "refund", "lines": [1, 2], "meta": {"a": None}}},
    "shopify.tag_order": {"order_id": 1001, "tags": ["damaged-in-transit", "vip"]},
    "shopify.note": {"order_id": 1001, "note": "Customer called twice."},
    "shopify.refund": {
        "order_id": 1001,
        "lines": [{"line_item_id": None, "sku": "BOOT-42", "quantity": 1}],
        "shipping": 4.95,
        "restock": True,
        "amount": 64.95,
        "note": "Wrong size",
    },
    "shopify.adjust_inventory": {"sku": "BOOT-42", "delta": -3, "reason": "damaged", "location": None},
    "wordpress.update": {"slug": "spring-lookbook", "title": "Spring", "body": None, "excerpt": "Short"},
    "social.post": {
        "network": "mastodon",
        "text": "Our spring lookbook is out",
        "post": "spring-lookbook",
        "publish_at": None,
    },
    "budget.grant": {"budget_id": "llm", "account": "llm:U0ALICE:2026-11", "amount_usd": 5.0},
    "mcp.crm.create_deal": {
        "deal": {"name": "Spring", "stage": "won", "lines": [{"sku": "A", "quantity": 2}]},
        "pipeline": "sales",
        "priority": 3,
        "value": 1200.5,
        "close_by": "2026-12-24T17:00:00Z",
        "notify": False,
        "owner": None,
        "summary": "A long\nsummary",
    },
}


class _Offers:
    """Stands for the connectors in a registry that is only asked to validate (it never executes)."""

    actions: ClassVar[tuple[type[Action], ...]] = tuple(installed_actions().values())

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        raise AssertionError("not executed here")

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        raise AssertionError("not looked up here")


REGISTRY = ConnectorRegistry([_Offers()])


def checked(view: dict[str, Any]) -> dict[str, Any]:
    """The view, after slack_sdk built it again (which validates it) and the local Slack API accepted it."""
    assert View(**view).to_dict() == view
    assert _view_refusal(view) is None
    blocks = view["blocks"]
    assert len(blocks) <= VIEW_BLOCKS_MAX
    for block in blocks:
        if block["type"] == "input":
            element = block["element"]
            assert len(str(element.get("initial_value", ""))) <= TEXT_VALUE_MAX
            assert len(block["label"]["text"]) <= 2000
            assert len(block.get("hint", {}).get("text", "")) <= 2000
            assert len(element.get("placeholder", {}).get("text", "")) <= 150
            assert element["action_id"] == "value"
    return view


def submitted(view: dict[str, Any], **typed: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``view.state.values`` as Slack sends it when the dialog is saved: each input as it was opened, except
    those given in ``typed`` (block id → the element's state)."""
    values: dict[str, dict[str, dict[str, Any]]] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        kind = element["type"]
        if kind in ("plain_text_input", "number_input"):
            state: dict[str, Any] = {"type": kind, "value": element.get("initial_value")}
        elif kind == "static_select":
            state = {"type": kind, "selected_option": element.get("initial_option")}
        elif kind == "datetimepicker":
            state = {"type": kind, "selected_date_time": element.get("initial_date_time")}
        else:
            raise AssertionError(f"unexpected element {kind}")
        values[block["block_id"]] = {"value": typed.get(block["block_id"], state)}
    return values


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {block["block_id"]: block for block in view["blocks"] if block["type"] == "input"}


def test_every_installed_action_has_an_example() -> None:
    assert sorted(installed_actions()) == sorted(EXAMPLES)
    for name, params in EXAMPLES.items():
        model = installed_actions()[name]
        assert model.model_validate(params).model_dump(mode="json") == params, name


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_actions_dialog_is_valid_and_gives_back_the_same_parameters(name: str) -> None:
    action, params = installed_actions()[name], EXAMPLES[name]
    view = checked(edit_view("AP-12", action, params))
    if not set(action.model_json_schema()["properties"]) - fixed_fields(action):
        # Nothing but what it is about (cms.unpublish): a dialog that says so, without a Save.
        assert "submit" not in view and "can be edited in Slack" in view["blocks"][0]["text"]["text"]
        return
    assert view["callback_id"] == EDIT_CALLBACK_ID and view["private_metadata"] == "AP-12"
    assert (view["title"]["text"], view["submit"]["text"], view["close"]["text"]) == (
        "Edit AP-12",
        "Save",
        "Cancel",
    )
    assert view["blocks"][0]["elements"][0]["text"] == INTRO
    fixed = fixed_fields(action)
    properties = list(action.model_json_schema()["properties"])
    assert list(inputs(view)) == [p for p in properties if p not in fixed]
    shown = {b["block_id"] for b in view["blocks"] if b["type"] == "context"}
    assert {f"aios_edit_fixed_{p}" for p in fixed} <= shown

    read = read_submission(action, submitted(view), params, view["blocks"])
    assert (read.errors, read.changes, read.params) == ({}, {}, params)
    assert validation_errors(REGISTRY, name, read.params) == {}


def test_what_an_action_is_about_is_shown_but_cannot_be_edited() -> None:
    assert {
        name: sorted(fixed_fields(action))
        for name, action in installed_actions().items()
        if fixed_fields(action)
    } == {
        "budget.grant": ["account", "budget_id"],
        "cms.create_draft": ["slug"],
        "cms.publish": ["slug"],
        "cms.unpublish": ["slug"],
        "email.send": ["to"],
        "shop.refund": ["order_id"],
        "shopify.adjust_inventory": ["location", "sku"],
        "shopify.note": ["order_id"],
        "shopify.refund": ["order_id"],
        "shopify.tag_order": ["order_id"],
        "social.post": ["network", "post"],
        "stripe.refund": ["payment"],
        "webhook.post": ["webhook"],
        "wordpress.update": ["slug"],
    }
    grant, params = installed_actions()["budget.grant"], EXAMPLES["budget.grant"]
    view = checked(edit_view("AP-7", grant, params))
    assert list(inputs(view)) == ["amount_usd"]
    [account] = [b for b in view["blocks"] if b["block_id"] == "aios_edit_fixed_account"]
    assert "llm:U0ALICE:2026-11" in account["elements"][0]["text"]
    assert "cannot be edited" in account["elements"][0]["text"]
    # A submission naming the account anyway (a forged payload) changes only what has an input.
    forged = {
        **submitted(view, amount_usd={"type": "number_input", "value": "9"}),
        "account": {"value": {"type": "plain_text_input", "value": "ops:U0ALICE:2026-11"}},
    }
    read = read_submission(grant, forged, params, view["blocks"])
    assert read.changes == {"amount_usd": 9.0} and read.params["account"] == params["account"]
    # An account must be one of the grant's budget's.
    assert validation_errors(REGISTRY, "budget.grant", {**params, "account": "ops:U0ALICE:2026-11"}) == {
        "amount_usd": "account ops:U0ALICE:2026-11 is not one of budget llm's accounts"
    }


def test_only_what_the_person_changed_is_taken_and_a_change_made_meanwhile_is_kept() -> None:
    refund, opened = installed_actions()["shop.refund"], EXAMPLES["shop.refund"]
    view = edit_view("AP-1", refund, opened)
    # Someone else lowered the amount while this dialog was open; this person only changed the reason.
    now = {**opened, "amount": 40.0}
    typed = submitted(view, reason={"type": "plain_text_input", "value": "only the mug"})
    read = read_submission(refund, typed, now, view["blocks"])
    assert read.errors == {}
    assert read.changes == {"reason": "only the mug"}
    assert read.params == {**opened, "amount": 40.0, "reason": "only the mug"}
    # Changing the amount they changed too is refused under it: this person never saw their 40.
    typed = submitted(view, amount={"type": "number_input", "value": "60"})
    read = read_submission(refund, typed, now, view["blocks"])
    assert read.errors == {"amount": CHANGED_MEANWHILE} and read.changes == {}


def test_the_inputs_follow_the_schema() -> None:
    crm = inputs(checked(edit_view("AP-3", crm_tool(), EXAMPLES["mcp.crm.create_deal"])))
    deal = crm["deal"]["element"]
    assert deal["type"] == "plain_text_input" and deal["multiline"] is True
    assert json.loads(deal["initial_value"]) == EXAMPLES["mcp.crm.create_deal"]["deal"]
    assert crm["deal"]["label"]["text"] == "Deal" and crm["deal"]["hint"]["text"] == "The deal to create"
    pipeline = crm["pipeline"]["element"]
    assert pipeline["type"] == "static_select"
    assert [o["text"]["text"] for o in pipeline["options"]] == ["sales", "renewals"]
    assert pipeline["initial_option"]["text"]["text"] == "sales"
    assert crm["priority"]["element"] == {
        "type": "number_input",
        "action_id": "value",
        "is_decimal_allowed": False,
        "initial_value": "3",
        "min_value": "1",
        "max_value": "5",
    }
    assert crm["priority"]["optional"] is True and "optional" not in crm["pipeline"]
    assert crm["value"]["element"]["is_decimal_allowed"] is True
    assert crm["close_by"]["element"] == {
        "type": "datetimepicker",
        "action_id": "value",
        "initial_date_time": 1798131600,  # 2026-12-24 17:00 UTC
    }
    assert [o["text"]["text"] for o in crm["notify"]["element"]["options"]] == ["Yes", "No"]
    assert crm["owner"]["element"]["type"] == "plain_text_input"  # a $ref to a string, or null
    assert crm["summary"]["element"]["multiline"] is True  # allowed past 150 characters

    refund = inputs(checked(edit_view("AP-1", installed_actions()["shop.refund"], EXAMPLES["shop.refund"])))
    assert refund["amount"]["element"] == {
        "type": "number_input",
        "action_id": "value",
        "is_decimal_allowed": True,
        "initial_value": "250",
        "min_value": "0.01",  # more than 0, in whole cents
        "max_value": "100000",
    }
    assert "order_id" not in refund  # what the refund is about: shown, not an input
    assert refund["amount"]["label"]["text"] == "Amount" and refund["reason"]["label"]["text"] == "Reason"

    publish = inputs(checked(edit_view("AP-2", installed_actions()["cms.publish"], EXAMPLES["cms.publish"])))
    assert publish["publish_at"]["element"]["initial_date_time"] == 1796112000  # 2026-12-01 08:00 UTC
    assert list(publish) == ["publish_at"]
    email = inputs(checked(edit_view("AP-4", installed_actions()["email.send"], EXAMPLES["email.send"])))
    assert (
        email["body"]["element"]["multiline"] is True and email["subject"]["element"].get("multiline") is None
    )
    adjust = installed_actions()["shopify.adjust_inventory"]
    reason = inputs(checked(edit_view("AP-5", adjust, EXAMPLES["shopify.adjust_inventory"])))["reason"]
    assert (
        len(reason["element"]["options"]) == 10
        and reason["element"]["initial_option"]["value"] == '"damaged"'
    )


def test_typed_values_are_read_as_the_schema_says() -> None:
    refund, params = installed_actions()["shop.refund"], EXAMPLES["shop.refund"]
    view = edit_view("AP-1", refund, params)
    read = read_submission(refund, submitted(view, amount={"type": "number_input", "value": "40"}), params)
    assert read.params == {**params, "amount": 40.0} and isinstance(read.params["amount"], float)

    tool, deal = crm_tool(), EXAMPLES["mcp.crm.create_deal"]
    view = edit_view("AP-3", tool, deal)
    typed = submitted(
        view,
        deal={"type": "plain_text_input", "value": '{"name": "Autumn", "stage": "lost"}'},
        priority={"type": "number_input", "value": None},  # emptied: null is allowed
        owner={"type": "plain_text_input", "value": "Bo"},
        notify={"type": "static_select", "selected_option": {"text": {}, "value": "true"}},
        close_by={"type": "datetimepicker", "selected_date_time": 1798135200},
    )
    read = read_submission(tool, typed, deal)
    assert read.errors == {}
    assert read.params == {
        **deal,
        "deal": {"name": "Autumn", "stage": "lost"},
        "priority": None,
        "owner": "Bo",
        "notify": True,
        "close_by": "2026-12-24T18:00:00Z",
    }

    # An emptied optional field that does not allow null takes its default.
    shopify = installed_actions()["shopify.refund"]
    view = edit_view("AP-6", shopify, EXAMPLES["shopify.refund"])
    read = read_submission(
        shopify, submitted(view, shipping={"type": "number_input", "value": None}), EXAMPLES["shopify.refund"]
    )
    assert read.changes == {"shipping": 0.0} and read.params["shipping"] == 0.0


def test_a_number_a_whole_number_field_cannot_take_is_left_to_the_models_check() -> None:
    # Stored as 2.5, an integer field shows JSON text; saving it as it is, or typing another such value, is
    # read as the number written, and the model's check says what is wrong under the input.
    tool, deal = crm_tool(), {**EXAMPLES["mcp.crm.create_deal"], "priority": 2.5}
    view = checked(edit_view("AP-3", tool, deal))
    assert inputs(view)["priority"]["element"]["type"] == "plain_text_input"
    assert read_submission(tool, submitted(view), deal, view["blocks"]).errors == {}
    typed = submitted(view, priority={"type": "plain_text_input", "value": "3.5"})
    read = read_submission(tool, typed, deal, view["blocks"])
    assert (read.errors, read.changes) == ({}, {"priority": 3.5})
    assert validation_errors(REGISTRY, "mcp.crm.create_deal", read.params, list(typed)) == {
        "priority": "3.5 is not of type 'integer', 'null'"
    }


def test_what_cannot_be_read_is_said_under_its_input() -> None:
    tool, deal = crm_tool(), EXAMPLES["mcp.crm.create_deal"]
    view = edit_view("AP-3", tool, deal)
    read = read_submission(
        tool,
        submitted(
            view,
            deal={"type": "plain_text_input", "value": '{"name": '},
            value={"type": "number_input", "value": "abc"},
            priority={"type": "number_input", "value": "2.5"},
            pipeline={"type": "static_select", "selected_option": {"value": '"elsewhere"'}},
            notify={"type": "checkboxes"},
        ),
        deal,
    )
    assert read.errors == {
        "deal": "This is not valid JSON (line 1, column 10: Expecting value).",
        "value": "“abc” is not a number.",
        "priority": "Enter a whole number.",
        "pipeline": "Choose one of the options.",
        "notify": "This value could not be read; enter it again.",
    }
    infinite = read_submission(tool, submitted(view, value={"type": "number_input", "value": "inf"}), deal)
    assert infinite.errors == {"value": "Enter a finite number."}


def test_the_models_errors_go_under_their_inputs() -> None:
    refund, params = installed_actions()["shop.refund"], EXAMPLES["shop.refund"]
    assert validation_errors(REGISTRY, "shop.refund", {**params, "amount": -5.0}) == {
        "amount": "Input should be greater than 0"
    }
    assert validation_errors(REGISTRY, "shop.refund", {**params, "amount": "abc"}) == {
        "amount": "Input should be a valid number, unable to parse string as a number"
    }
    both = validation_errors(REGISTRY, "shop.refund", {**params, "amount": 0.001, "reason": ""})
    assert set(both) == {"amount", "reason"}
    view = edit_view("AP-1", refund, params)
    assert set(both) <= set(inputs(view))

    # An error about the whole action (no parameter) goes under the first input.
    assert validation_errors(
        REGISTRY, "wordpress.update", {"slug": "spring", "title": None, "body": None, "excerpt": None}
    ) == {"title": "give at least one of title, body or excerpt to change"}
    # Nested: the path within the parameter.
    lines = {**EXAMPLES["shopify.refund"], "lines": [{"sku": "A", "quantity": 0}]}
    [(block, error)] = validation_errors(REGISTRY, "shopify.refund", lines).items()
    assert block == "lines" and error.startswith("0.quantity: Input should be greater than 0")
    # An MCP tool's schema errors, each under its argument.
    deal = {**EXAMPLES["mcp.crm.create_deal"], "value": 0, "deal": {"stage": "won"}}
    assert validation_errors(REGISTRY, "mcp.crm.create_deal", deal) == {
        "deal": "'name' is a required property",
        "value": "0 is less than or equal to the minimum of 0",
    }
    # A parameter the dialog has no input for: its error goes under the first input, with its name.
    assert validation_errors(
        REGISTRY, "shop.refund", {**params, "reason": ""}, inputs=["order_id", "amount"]
    ) == {"order_id": "reason: String should have at least 1 character"}


def test_a_value_too_long_for_a_dialog_is_kept_as_it_is() -> None:
    email, params = installed_actions()["email.send"], {**EXAMPLES["email.send"], "body": "x" * 5000}
    view = checked(edit_view("AP-4", email, params))
    assert "body" not in inputs(view)
    [kept] = [b for b in view["blocks"] if b["block_id"] == "aios_edit_kept_body"]
    assert "cannot be edited here" in kept["elements"][0]["text"]
    read = read_submission(
        email, submitted(view, subject={"type": "plain_text_input", "value": "Shipped"}), params
    )
    assert read.params == {**params, "subject": "Shipped"}
    assert input_block_ids(email, params) == ["subject"]


def test_a_nameless_parameter_and_one_named_by_a_number_get_lines_of_their_own() -> None:
    """The nameless parameter's line is named by its position (0), the other by its name ("0")."""
    properties = {"": {"type": "string"}, "0": {"type": "string"}, "note": {"type": "string"}}
    made = action_for_tool(
        "odd", Tool(name="names", input_schema={"type": "object", "properties": properties})
    )
    assert not isinstance(made, str)
    view = checked(edit_view("AP-5", made, {"": "a", "0": "x" * 5000, "note": "n"}))
    block_ids = [block["block_id"] for block in view["blocks"]]
    assert len(block_ids) == len(set(block_ids)), block_ids
    assert list(inputs(view)) == ["note"]


def test_a_tool_with_more_parameters_than_a_dialog_holds_shows_the_first_and_says_so() -> None:
    schema = {"type": "object", "properties": {f"p{i:03d}": {"type": "string"} for i in range(150)}}
    made = action_for_tool("big", Tool(name="wide", input_schema=schema))
    assert not isinstance(made, str)
    params = {f"p{i:03d}": f"v{i}" for i in range(150)}
    view = checked(edit_view("AP-9", made, params))
    assert len(view["blocks"]) == VIEW_BLOCKS_MAX
    assert len(inputs(view)) == VIEW_BLOCKS_MAX - 2
    assert view["blocks"][-1]["elements"][0]["text"].startswith("52 more parameters than a dialog can show")
    read = read_submission(made, submitted(view, p000={"type": "plain_text_input", "value": "new"}), params)
    assert read.params == {**params, "p000": "new"}


def test_a_request_with_nothing_to_edit_gets_a_dialog_without_a_submit() -> None:
    schema = {"type": "object", "properties": {"blob": {"type": "string"}}}
    made = action_for_tool("store", Tool(name="put", input_schema=schema))
    assert not isinstance(made, str)
    view = checked(edit_view("AP-9", made, {"blob": "y" * 4000}))
    assert "submit" not in view and "callback_id" not in view
    notice = checked(notice_view("AP-9", "Only the manager role can decide AP-9."))
    assert notice["blocks"][0]["text"]["text"] == "Only the manager role can decide AP-9."


def _repeated(pair: tuple[int, str]) -> str:
    return pair[1] * pair[0]


SCALARS = (
    st.text(max_size=300)
    # around the 3,000 characters a text input holds
    | st.tuples(st.integers(2990, 3010), st.sampled_from(["x", "é", "\n", "<&>"])).map(_repeated)
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
    | st.datetimes().map(datetime.isoformat)
)
# What a stored parameter may hold, including values that do not fit its schema.
FIELD_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)
ACTIONS = installed_actions()
PARAMS = {
    name: st.fixed_dictionaries(
        {}, optional={field: FIELD_VALUES for field in action.model_json_schema().get("properties", {})}
    )
    for name, action in ACTIONS.items()
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(ACTIONS)))
def test_no_stored_parameters_make_an_invalid_dialog(data: st.DataObject, name: str) -> None:
    action = ACTIONS[name]
    params = data.draw(PARAMS[name])
    view = checked(edit_view("AP-123456789012", action, params))
    # Saved untouched, it changes nothing.
    untouched = read_submission(action, submitted(view), params, view["blocks"])
    assert (untouched.errors, untouched.changes, untouched.params) == ({}, {}, params)
    # Whatever it shows reads back to what was stored, but for what a dialog gives back in another form: read
    # as changes of parameters that were empty, every input's value is read.
    read = read_submission(action, submitted(view), {})
    assert read.errors == {}
    kinds = {spec.name: spec.kind for spec in field_specs(action)}
    for block_id in inputs(view):
        value = params.get(block_id)
        if value is not None and not _lossy(kinds[block_id], value):
            assert read.changes[block_id] == value, block_id


def _lossy(kind: Kind, value: Any) -> bool:
    """Empty text or only spaces (an empty input), a time (given back in UTC), and a value of another type
    than a text field's (shown as JSON, read back as the text)."""
    if kind in (Kind.TEXT, Kind.DATE_TIME):
        return not isinstance(value, str) or not value.strip() or (kind is Kind.DATE_TIME and _is_time(value))
    return False


def _is_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


PROPERTY_SCHEMAS = st.sampled_from(
    [
        {"type": "string"},
        {"type": "string", "maxLength": 5000},
        {"type": "string", "format": "date-time"},
        {"type": ["string", "null"]},
        {"type": "integer", "minimum": 0},
        {"type": "number", "exclusiveMaximum": 10},
        {"type": "boolean"},
        {"enum": ["a", 1, None, True]},
        {"enum": ["x" * 200]},  # longer than an option's value: a text input of JSON instead
        {"type": "object", "properties": {"k": {"type": "string"}}},
        {"type": "array", "items": {"type": "integer"}},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {},
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    properties=st.dictionaries(
        st.text(max_size=300) | st.sampled_from(["", "0", "1", "aios_edit_intro", "aios_edit_kept_0"]),
        PROPERTY_SCHEMAS,
        max_size=12,
    ),
    data=st.data(),
)
def test_any_tools_schema_makes_a_valid_dialog(properties: dict[str, Any], data: st.DataObject) -> None:
    made = action_for_tool(
        "any", Tool(name="tool", input_schema={"type": "object", "properties": properties})
    )
    assert not isinstance(made, str)
    params = data.draw(st.fixed_dictionaries({}, optional=dict.fromkeys(properties, FIELD_VALUES)))
    view = checked(edit_view("AP-1", made, params))
    block_ids = [block["block_id"] for block in view["blocks"]]
    assert len(block_ids) == len(set(block_ids))
    untouched = read_submission(made, submitted(view), params, view["blocks"])
    assert (untouched.errors, untouched.changes, untouched.params) == ({}, {}, params)
    read = read_submission(made, submitted(view), {})
    assert read.errors == {}
    assert set(read.changes) <= set(inputs(view))
