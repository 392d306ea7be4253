"""The README's call of the orders service from a script: ``python client.py`` here."""

import asyncio

from seawall import System
from shop import PlaceOrder, Receipt, orders


async def main() -> None:
    async with System(orders) as system:
        receipt = await system.context().request(
            "orders", PlaceOrder(order_id="o-1", total=5), returns=Receipt, timeout=2.0
        )
    print(f"receipt for order {receipt.order_id}")


if __name__ == "__main__":
    asyncio.run(main())
