"""A Stripe payment as the returns agent sees it, without loading the Stripe SDK (agents import this)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

# What may name payments: a PaymentIntent (pi_), a charge (ch_, or py_ for non-card payments), a customer (cus_).
PAYMENT_ID = re.compile(r"\b(?:pi|ch|py)_[A-Za-z0-9]{1,250}\b")
CUSTOMER_ID = re.compile(r"\bcus_[A-Za-z0-9]{1,250}\b")
# Every repetition is bounded (by the lengths an address may have): on a long run of letters and hyphens an
# unbounded pattern backtracks quadratically, seconds for one long Slack message.
EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
# The newest this many payments of one customer or email are listed; older ones are named by id.
MAX_LISTED = 10


@dataclass(frozen=True)
class PaymentInfo:
    """One payment: its PaymentIntent's id when it has one (else its charge's), in major units; ``charge``, the id
    of its charge when ``id`` is its PaymentIntent's, so that a payment asked for by either id is found."""

    id: str
    amount: float
    refunded: float
    currency: str  # ISO 4217, upper case
    status: str  # Stripe's: succeeded, pending, requires_capture, …
    created: datetime
    description: str
    customer_email: str
    charge: str = ""

    @property
    def left(self) -> float:
        """What can still be refunded: nothing unless the payment succeeded."""
        if self.status != "succeeded":
            return 0.0
        return max(round(self.amount - self.refunded, 2), 0.0)
