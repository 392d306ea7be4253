"""The SSE hub: events fanned out by key, in order, and a client that falls behind is dropped."""

from __future__ import annotations

from tests.unit.gateway.shop import OrderPlaced

from seawall import System
from seawall.gateway import EventStream
from seawall.gateway._events import EventHub


async def _frames(hub: EventHub, client: object) -> list[bytes]:
    return [frame async for frame in hub.frames(client)]  # type: ignore[arg-type]


async def test_a_client_gets_its_keys_events_in_order_and_a_slow_one_is_dropped() -> None:
    stream = EventStream(
        path="/orders/{order_id}/events",
        channel="orders.events",
        types=(OrderPlaced,),
        key="order_id",
        buffer=2,
    )
    async with System(transport="memory://") as system:
        node = system.node
        hub = EventHub(stream, node, "gateway-test")
        mine, other = hub.join("o-1"), hub.join("o-2")
        for step in (1, 2):
            hub._fan_out(node.envelope(OrderPlaced(order_id="o-1", step=step), source="t"))
        hub._fan_out(node.envelope(OrderPlaced(order_id="o-3", step=9), source="t"))
        assert hub.dropped == 0
        hub._fan_out(node.envelope(OrderPlaced(order_id="o-1", step=3), source="t"))
        assert hub.dropped == 1  # its buffer of 2 was full: dropped, not waited for
        assert hub.clients == {other}
        frames = await _frames(hub, mine)
        assert frames[0] == b": connected\n\n"
        data = [f.split(b"data: ")[1].strip() for f in frames[1:]]
        assert data == [b'{"order_id":"o-1","step":1}', b'{"order_id":"o-1","step":2}']
        assert other.queue.empty()
