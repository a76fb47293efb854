"""`edit AP-3 field=value … as U…` in the console: the words, and each value read as its parameter asks."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from bot.console_edit import EditLine, EditLineError, edited_params, parse_edit
from connectors.actions import Action, CmsPublish, ShopifyAdjustInventory, ShopRefund, WebhookPost
from connectors.registry import ConnectorRegistry


class _Offers:
    """Stands for the connectors of a registry that is only asked to validate."""

    actions: ClassVar[tuple[type[Action], ...]] = (
        ShopRefund,
        WebhookPost,
        CmsPublish,
        ShopifyAdjustInventory,
    )

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        raise AssertionError("not executed here")

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        raise AssertionError("not looked up here")


REGISTRY = ConnectorRegistry([_Offers()])
REFUND = {"order_id": 1001, "amount": 250.0, "reason": "arrived broken"}


def test_the_words_of_an_edit() -> None:
    assert parse_edit('AP-3 amount=40 reason="only the broken mug" as U0MANAGER') == EditLine(
        "AP-3", {"amount": "40", "reason": "only the broken mug"}, "U0MANAGER"
    )
    assert parse_edit("amount=40") == EditLine(None, {"amount": "40"}, None)
    # A reason may end in "as …": only a user id after it is taken for one.
    assert parse_edit('reason="sold as seen"').changes == {"reason": "sold as seen"}


@pytest.mark.parametrize(
    ("words", "said"),
    [
        ("AP-3 amount", "`amount` is not a field=value pair"),
        ("AP-3 as U0MANAGER", "Say which fields to change"),
        ('AP-3 reason="unclosed', "I could not read that edit (No closing quotation)"),
    ],
)
def test_an_edit_that_cannot_be_read_says_how_to_write_it(words: str, said: str) -> None:
    with pytest.raises(EditLineError, match="for example: edit AP-3 amount=40") as raised:
        parse_edit(words)
    assert said in str(raised.value)


def test_each_value_is_read_as_its_parameter_asks() -> None:
    refund = edited_params(REGISTRY, "shop.refund", REFUND, {"amount": "40", "reason": "40"})
    assert refund == {"order_id": 1001, "amount": 40, "reason": "40"}  # the number read, the text kept
    webhook = edited_params(
        REGISTRY, "webhook.post", {"webhook": "crm", "body": {}}, {"body": '{"order": 1001, "tags": ["vip"]}'}
    )
    assert webhook["body"] == {"order": 1001, "tags": ["vip"]}
    publish = edited_params(
        REGISTRY, "cms.publish", {"slug": "spring"}, {"publish_at": "2026-12-01T09:00:00+01:00"}
    )
    assert publish["publish_at"] == "2026-12-01T09:00:00+01:00"


def test_an_unknown_field_or_a_value_that_does_not_fit_is_named() -> None:
    with pytest.raises(EditLineError) as unknown:
        edited_params(REGISTRY, "shop.refund", REFUND, {"amout": "40"})
    assert (
        str(unknown.value) == "amout is not a field of shop.refund; its fields are: order_id, amount, reason"
    )
    with pytest.raises(
        EditLineError, match=r"does not fit shop.refund: shop.refund: amount: .*greater than 0"
    ):
        edited_params(REGISTRY, "shop.refund", REFUND, {"amount": "-5"})
    with pytest.raises(EditLineError, match=r"webhook.post: body: "):
        edited_params(REGISTRY, "webhook.post", {"webhook": "crm", "body": {}}, {"body": "{not json"})


def test_a_field_named_twice_is_refused() -> None:
    with pytest.raises(EditLineError, match="amount is named twice; say each field once"):
        parse_edit("AP-3 amount=40 amount=30")


INVENTORY = {"sku": "BOOT-42", "delta": -3, "reason": "damaged", "location": None}


@pytest.mark.parametrize(
    ("name", "current", "changes", "said"),
    [
        (
            "shop.refund",
            REFUND,
            {"order_id": "true"},
            "order_id says what the request is about and cannot be",
        ),
        ("shop.refund", REFUND, {"order_id": "1002"}, "order_id says what the request is about"),
        ("webhook.post", {"webhook": "crm", "body": {}}, {"webhook": "billing"}, "webhook says what the"),
        (
            "shopify.adjust_inventory",
            INVENTORY,
            {"delta": "true"},
            "delta takes a whole number, and `true` is",
        ),
        ("shopify.adjust_inventory", INVENTORY, {"delta": "2.5"}, "delta takes a whole number, and `2.5` is"),
        ("shop.refund", REFUND, {"amount": "true"}, "amount takes a number, and `true` is not one"),
    ],
)
def test_what_a_request_is_about_and_a_yes_for_a_number_are_refused(
    name: str, current: dict[str, Any], changes: dict[str, str], said: str
) -> None:
    with pytest.raises(EditLineError, match="Nothing changed") as raised:
        edited_params(REGISTRY, name, current, changes)
    assert said in str(raised.value)


def test_a_whole_number_is_read_as_one() -> None:
    assert edited_params(REGISTRY, "shopify.adjust_inventory", INVENTORY, {"delta": "5"})["delta"] == 5
