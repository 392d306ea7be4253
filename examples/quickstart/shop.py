"""The README's first service: ``seawall run shop:orders`` in this directory runs it.

``client.py`` calls it and ``test_shop.py`` tests it (``pytest`` here, once
``pip install 'seawall[testing]'``); the README shows the three as they are here.
"""

from seawall import Command, Context, Document, Event, Service


class PlaceOrder(Command, frozen=True):
    order_id: str
    total: int


class OrderPlaced(Event, frozen=True):
    order_id: str


class Receipt(Document, frozen=True):
    order_id: str


orders = Service("orders")


@orders.command
async def place(cmd: PlaceOrder, ctx: Context) -> Receipt:
    await ctx.publish(OrderPlaced(order_id=cmd.order_id), key=cmd.order_id)
    return Receipt(order_id=cmd.order_id)
