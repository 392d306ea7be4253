"""The README's test of the orders service: ``pytest`` in this directory runs it."""

from seawall.testing import TestSystem
from shop import OrderPlaced, PlaceOrder, Receipt, orders


async def test_place_order() -> None:
    async with TestSystem(orders) as system:
        receipt = await system.context().request(
            "orders", PlaceOrder(order_id="o-1", total=5), returns=Receipt
        )
        await system.settle()
    assert receipt.order_id == "o-1"
    assert system.published(OrderPlaced) == [OrderPlaced(order_id="o-1")]
