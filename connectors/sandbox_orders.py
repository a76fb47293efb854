"""The sandbox shop's starting orders, apart from the shop: `aios sandbox show` seeds them without importing the
action models the shop needs."""

from __future__ import annotations

from storage.records import SandboxOrder
from storage.unit_of_work import UnitOfWorkFactory

SEED_ORDERS = (
    SandboxOrder(
        id=1001,
        customer_name="Maya Patel",
        customer_email="maya@example.com",
        item="Ceramic pour-over set",
        total=320.00,
    ),
    SandboxOrder(
        id=1002, customer_name="Tom Becker", customer_email="tom@example.com", item="Linen apron", total=48.00
    ),
    SandboxOrder(
        id=1003,
        customer_name="Ana Lima",
        customer_email="ana@example.com",
        item="Countertop blender",
        total=129.00,
    ),
    SandboxOrder(
        id=1004,
        customer_name="Sam Okafor",
        customer_email="sam@example.com",
        item="Cast-iron skillet",
        total=75.50,
    ),
    SandboxOrder(
        id=1005,
        customer_name="Lena Schulz",
        customer_email="lena@example.com",
        item="Espresso grinder",
        total=410.00,
    ),
)


async def seed_orders(units: UnitOfWorkFactory) -> None:
    """Create orders 1001–1005 the first time; never touches them afterwards."""
    async with units() as uow:
        for order in SEED_ORDERS:
            await uow.insert_if_absent(SandboxOrder, order.model_dump())
        await uow.commit()
