"""The delivery conformance suite on the memory transport."""

from __future__ import annotations

from seawall import MemoryTransport, Transport
from seawall.testing import DeliveryConformance


class TestMemoryDelivery(DeliveryConformance):
    async def make_transport(self) -> Transport:
        return MemoryTransport()

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, MemoryTransport)
        transport.disconnect()
