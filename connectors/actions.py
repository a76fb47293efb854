"""Typed connector actions. Agents propose these; nothing runs until the policy gate lets it."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.social_limits import LIMITS, Network

# Standard logging, which the bot renders like its own lines: structlog's import would slow every `aios` command.
log = logging.getLogger(__name__)

Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=120)]


def utc_unless_zoned(value: datetime | None) -> datetime | None:
    """A time without a zone is UTC, so every connector compares it with an aware clock."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Action(BaseModel):
    """A proposed side effect. ``name`` is what policies match on (``action.name``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    description: ClassVar[str]
    # The fields that say what or whom the action is about (the order, the payment, the recipient, the post).
    # Editing a request may change how much or why, never its target: the policy judged it for this target.
    targets: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def fixed_fields(cls) -> frozenset[str]:
        """The fields an edit may not change: the declared targets, and any field named like an id."""
        ids = {name for name in cls.model_fields if name == "id" or name.endswith("_id")}
        return cls.targets | ids

    def summary(self) -> str:
        return f"{self.name} {self.model_dump(mode='json')}"

    def summary_in(self, told: Callable[[datetime], str]) -> str:
        """The summary with its times told by ``told`` (in the team's zone, say) rather than as ISO UTC."""
        return self.summary()

    def inverse(self, result: dict[str, Any]) -> Action | None:
        """The action that undoes this one once it has run (given its result), or None if nothing can."""
        return None


class ShopRefund(Action):
    name: ClassVar[str] = "shop.refund"
    targets: ClassVar[frozenset[str]] = frozenset({"order_id"})
    description: ClassVar[str] = "Refund part or all of an order's total to the customer."

    order_id: int = Field(gt=0, description="The shop's order number, e.g. 1001")
    # Whole cents only: a planner's 12.345 is refused rather than rounded into an amount nobody asked for.
    amount: float = Field(
        gt=0, le=100_000, multiple_of=0.01, description="Amount to refund in USD, at most two decimals"
    )
    reason: str = Field(min_length=1, max_length=500, description="Why the refund is given")

    def summary(self) -> str:
        return f"Refund ${self.amount:,.2f} on order {self.order_id} ({self.reason})"


class CmsCreateDraft(Action):
    name: ClassVar[str] = "cms.create_draft"
    targets: ClassVar[frozenset[str]] = frozenset({"slug"})
    description: ClassVar[str] = "Create a draft post in the CMS; drafts are not visible to readers."

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=50_000)
    slug: Slug | None = Field(default=None, description="URL slug; derived from the title when omitted")
    planned_for: datetime | None = Field(
        default=None,
        description="When a content calendar plans the post to go out (ISO 8601 with its offset); omit "
        "for a draft outside a calendar",
    )

    _planned_for_utc_unless_zoned = field_validator("planned_for")(utc_unless_zoned)

    def effective_slug(self) -> str:
        return self.slug or slugify(self.title)

    def summary(self) -> str:
        planned = f", planned for {self.planned_for.isoformat()}" if self.planned_for else ""
        return f"Create draft “{self.title}” ({self.effective_slug()}{planned})"


class CmsPublish(Action):
    name: ClassVar[str] = "cms.publish"
    targets: ClassVar[frozenset[str]] = frozenset({"slug"})
    description: ClassVar[str] = "Publish a post now, or schedule it for a later time."

    slug: Slug
    publish_at: datetime | None = Field(
        default=None, description="When to publish (ISO 8601, UTC unless it names a zone); now if omitted"
    )

    _publish_at_utc_unless_zoned = field_validator("publish_at")(utc_unless_zoned)

    def summary(self) -> str:
        return self.summary_in(datetime.isoformat)

    def summary_in(self, told: Callable[[datetime], str]) -> str:
        when = f" at {told(self.publish_at)}" if self.publish_at else " now"
        return f"Publish post {self.slug}{when}"

    def inverse(self, result: dict[str, Any]) -> Action | None:
        return CmsUnpublish(slug=self.slug)


class CmsUnpublish(Action):
    name: ClassVar[str] = "cms.unpublish"
    targets: ClassVar[frozenset[str]] = frozenset({"slug"})
    description: ClassVar[str] = "Take a published or scheduled post down again (it becomes unpublished)."

    slug: Slug

    def summary(self) -> str:
        return f"Unpublish post {self.slug}"


class EmailSend(Action):
    name: ClassVar[str] = "email.send"
    targets: ClassVar[frozenset[str]] = frozenset({"to"})
    description: ClassVar[str] = "Send an email to a customer."

    to: Email
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=20_000)

    def summary(self) -> str:
        return f"Email {self.to}: “{self.subject}”"


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug[:120] or "post"


WEBHOOK_BODY_MAX_BYTES = 16_384


class WebhookPost(Action):
    name: ClassVar[str] = "webhook.post"
    targets: ClassVar[frozenset[str]] = frozenset({"webhook"})
    description: ClassVar[str] = "POST a JSON object to one of the configured webhooks, signed."

    # Not ``name``: that is the action's own name, which policies match on.
    webhook: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="The configured webhook's name, e.g. crm"
    )
    body: dict[str, Any] = Field(description="The JSON object to send, at most 16 KB")

    @field_validator("body")
    @classmethod
    def _small_json(cls, body: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(webhook_body_bytes(body))
        except (TypeError, ValueError):
            raise ValueError(
                "must be a JSON object (strings, numbers, booleans, null, lists, objects)"
            ) from None
        if size > WEBHOOK_BODY_MAX_BYTES:
            raise ValueError(f"is {size:,} bytes of JSON; at most {WEBHOOK_BODY_MAX_BYTES:,} are sent")
        return body

    def summary(self) -> str:
        text = webhook_body_bytes(self.body).decode()
        return f"POST to webhook {self.webhook}: {text if len(text) <= 120 else text[:119] + '…'}"


def webhook_body_bytes(body: dict[str, Any]) -> bytes:
    """The exact bytes a webhook receives (and its signature covers): compact JSON, keys sorted, UTF-8."""
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


ShopifyTag = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40, pattern=r"^[^,]+$")
]


class ShopifyTagOrder(Action):
    name: ClassVar[str] = "shopify.tag_order"
    targets: ClassVar[frozenset[str]] = frozenset({"order_id"})
    description: ClassVar[str] = "Add tags to a Shopify order (tags it already has are kept)."

    order_id: int = Field(gt=0, description="The order number as customers see it, without '#', e.g. 1001")
    tags: tuple[ShopifyTag, ...] = Field(
        min_length=1, max_length=20, description="Tags to add, e.g. ['damaged-in-transit']; no commas"
    )

    def summary(self) -> str:
        return f"Tag order {self.order_id}: {', '.join(self.tags)}"


class ShopifyNote(Action):
    name: ClassVar[str] = "shopify.note"
    targets: ClassVar[frozenset[str]] = frozenset({"order_id"})
    description: ClassVar[str] = "Set the staff note on a Shopify order (it replaces the note there)."

    order_id: int = Field(gt=0, description="The order number as customers see it, without '#', e.g. 1001")
    note: str = Field(min_length=1, max_length=5_000, description="The note staff see on the order")

    def summary(self) -> str:
        return (
            f"Note on order {self.order_id}: “{self.note if len(self.note) <= 80 else self.note[:79] + '…'}”"
        )


class ShopifyRefundLine(BaseModel):
    """One line of an order to refund: the line item by its id or by its SKU, and how many of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    line_item_id: int | None = Field(
        default=None, gt=0, description="The line item's numeric id in Shopify; give this or sku"
    )
    sku: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The line item's SKU; give this or line_item_id",
    )
    quantity: int = Field(gt=0, le=10_000, description="How many units of this line to refund")

    @field_validator("sku")
    @classmethod
    def _stripped(cls, sku: str | None) -> str | None:
        return sku.strip() if sku is not None else None

    @model_validator(mode="after")
    def _one_reference(self) -> Self:
        if (self.line_item_id is None) == (self.sku is None):
            raise ValueError("give exactly one of line_item_id or sku for each line")
        return self

    def label(self) -> str:
        return f"SKU {self.sku}" if self.sku is not None else f"line item {self.line_item_id}"


class ShopifyRefund(Action):
    name: ClassVar[str] = "shopify.refund"
    targets: ClassVar[frozenset[str]] = frozenset({"order_id"})
    description: ClassVar[str] = (
        "Refund specific items (and optionally shipping) of a Shopify order. Shopify computes what these "
        "items cost, with their discounts and taxes, and amount must be that total: a proposal with another "
        "amount is refused with Shopify's figure, to propose again with it."
    )

    order_id: int = Field(gt=0, description="The order number as customers see it, without '#', e.g. 1001")
    lines: tuple[ShopifyRefundLine, ...] = Field(
        min_length=1, max_length=100, description="The line items to refund, each with a quantity"
    )
    shipping: float = Field(
        default=0.0, ge=0, le=100_000, multiple_of=0.01, description="Shipping to refund in USD; 0 for none"
    )
    restock: bool = Field(default=False, description="Put the refunded units back in stock")
    # The policy judges the money: Shopify's own total for these lines must match it, or nothing is refunded.
    amount: float = Field(
        gt=0,
        le=100_000,
        multiple_of=0.01,
        description="The refund's total in USD (items, their taxes, and shipping), as Shopify computes it",
    )
    note: str = Field(min_length=1, max_length=500, description="Why the refund is given; staff see it")

    def summary(self) -> str:
        items = ", ".join(f"{line.quantity} × {line.label()}" for line in self.lines)
        shipping = f" + ${self.shipping:,.2f} shipping" if self.shipping else ""
        restock = ", restocked" if self.restock else ""
        return (
            f"Refund ${self.amount:,.2f} on order {self.order_id}: {items}{shipping}{restock} ({self.note})"
        )


InventoryReason = Literal[
    "correction",
    "cycle_count_available",
    "damaged",
    "other",
    "promotion",
    "quality_control",
    "received",
    "restock",
    "safety_stock",
    "shrinkage",
]


class ShopifyAdjustInventory(Action):
    name: ClassVar[str] = "shopify.adjust_inventory"
    targets: ClassVar[frozenset[str]] = frozenset({"sku", "location"})
    description: ClassVar[str] = "Change the available stock of one item (by SKU) at a Shopify location."

    sku: str = Field(min_length=1, max_length=255, description="The item's SKU")
    delta: int = Field(
        ge=-1_000_000, le=1_000_000, description="Units to add (positive) or take away (negative); not 0"
    )
    reason: InventoryReason = Field(description="Why the stock changes, one of Shopify's reasons")
    location: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The location's name or numeric id; the shop's primary location when omitted",
    )

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("must not be 0: a change of nothing changes nothing")
        return delta

    def summary(self) -> str:
        where = self.location or "the primary location"
        return f"Adjust stock of {self.sku} by {self.delta:+d} at {where} ({self.reason})"

    def inverse(self, result: dict[str, Any]) -> Action | None:
        """The opposite change at the same location: stock sold or counted since stays as it is."""
        return ShopifyAdjustInventory(
            sku=self.sku, delta=-self.delta, reason="correction", location=self.location
        )


StripeRefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


class StripeRefund(Action):
    name: ClassVar[str] = "stripe.refund"
    targets: ClassVar[frozenset[str]] = frozenset({"payment"})
    description: ClassVar[str] = (
        "Refund part or all of one Stripe payment, named by its PaymentIntent (pi_…) or charge (ch_…), for "
        "payments that have no shop order number."
    )

    payment: str = Field(
        pattern=r"^(?:pi|ch|py)_[A-Za-z0-9]{1,250}$",
        description="The payment's id in Stripe: a PaymentIntent (pi_…) or a charge (ch_… or py_…)",
    )
    # Whole cents only, as for shop.refund: the policy judges this amount.
    amount: float = Field(
        gt=0, le=100_000, multiple_of=0.01, description="Amount to refund in USD, at most two decimals"
    )
    reason: str = Field(min_length=1, max_length=500, description="Why the refund is given")
    stripe_reason: StripeRefundReason | None = Field(
        default=None, description="Stripe's own reason code, when one fits; omit otherwise"
    )

    def summary(self) -> str:
        return f"Refund ${self.amount:,.2f} of Stripe payment {self.payment} ({self.reason})"


class WordpressUpdate(Action):
    name: ClassVar[str] = "wordpress.update"
    targets: ClassVar[frozenset[str]] = frozenset({"slug"})
    description: ClassVar[str] = (
        "Change an existing WordPress post's title, body or excerpt; its status (draft, scheduled, "
        "published) stays as it is. Give only the fields to change."
    )

    slug: Slug = Field(description="The post's slug, e.g. spring-lookbook")
    # An empty title is allowed because WordPress allows one: undoing an edit of an untitled post puts "" back.
    title: str | None = Field(default=None, max_length=200)
    body: str | None = Field(default=None, max_length=50_000, description="The new body (HTML or blocks)")
    excerpt: str | None = Field(default=None, max_length=1_000)

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.title is None and self.body is None and self.excerpt is None:
            raise ValueError("give at least one of title, body or excerpt to change")
        return self

    def summary(self) -> str:
        changed = ", ".join(f for f in ("title", "body", "excerpt") if getattr(self, f) is not None)
        title = f" to “{self.title}”" if self.title is not None else ""
        return f"Update post {self.slug}: {changed}{title}"

    def inverse(self, result: dict[str, Any]) -> Action | None:
        """Put back what the update replaced, as the connector's result recorded it (``previous``)."""
        previous = result.get("previous")
        if not isinstance(previous, dict):
            return None
        restored = {
            f: previous[f]
            for f in ("title", "body", "excerpt")
            if getattr(self, f) is not None and f in previous
        }
        if not restored:
            return None
        return WordpressUpdate(slug=self.slug, **restored)


class SocialPost(Action):
    name: ClassVar[str] = "social.post"
    targets: ClassVar[frozenset[str]] = frozenset({"network", "post"})
    description: ClassVar[str] = (
        "Post a short text to a social network, now or at a later time; it may promote one of our posts. "
        "Mastodon takes at most 500 characters (a link counts as 23), Bluesky at most 300 graphemes, the "
        "sandbox at most 500 characters."
    )

    network: Network = Field(
        description="Where to post: mastodon, bluesky, or sandbox (recorded, not posted)"
    )
    text: str = Field(min_length=1, max_length=3_000, description="The post's text, links included")
    post: Slug | None = Field(default=None, description="The slug of our post it promotes, if any")
    publish_at: datetime | None = Field(
        default=None, description="When to post (ISO 8601, UTC unless it names a zone); now if omitted"
    )

    _publish_at_utc_unless_zoned = field_validator("publish_at")(utc_unless_zoned)

    @model_validator(mode="after")
    def _within_limit(self) -> Self:
        limit = LIMITS[self.network]
        if not limit.fits(self.text):
            raise ValueError(
                f"the text is {limit.measure(self.text)} {limit.unit} long; "
                f"{self.network} takes {limit.describe()}"
            )
        return self

    def summary(self) -> str:
        return self.summary_in(datetime.isoformat)

    def summary_in(self, told: Callable[[datetime], str]) -> str:
        when = f" at {told(self.publish_at)}" if self.publish_at else " now"
        text = self.text if len(self.text) <= 80 else self.text[:79] + "…"
        return f"Post to {self.network}{when}: “{text}”"


def safe_inverse(action: Action, result: dict[str, Any]) -> Action | None:
    """The action's inverse, or None when its result cannot be turned into a valid one (an old body past the
    update's limit, a result from an older connector): then no undo is offered, rather than the caller failing."""
    try:
        return action.inverse(dict(result))
    except (ValidationError, ValueError, TypeError) as exc:
        # Only the action's name and the error's kind: the result may hold a customer's text.
        log.warning("inverse_unavailable: %s (%s)", action.name, type(exc).__name__)
        return None
