"""The embedded broker against the transport and delivery conformance suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall._broker.engine import BrokerLimits
from seawall._transport import Transport
from seawall.testing._conformance import TransportConformance
from seawall.testing._delivery import DeliveryConformance
from seawall.transports.embedded import EmbeddedTransport


class TestEmbeddedInMemory(TransportConformance):
    """The broker logic alone, with nothing on disk."""

    quiet_period = 0.05
    nack_delay = 0.1
    publish_timeout = 0.1

    @pytest.fixture(autouse=True)
    def _data(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"

    def path(self) -> Path | None:
        return None

    async def make_transport(self) -> EmbeddedTransport:
        return EmbeddedTransport(self.path())

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, EmbeddedTransport)
        transport.disconnect()

    async def make_transport_with_publish_timeout(self, seconds: float) -> EmbeddedTransport:
        return EmbeddedTransport(self.path(), limits=BrokerLimits(publish_timeout=seconds))


class TestEmbeddedInMemoryDelivery(DeliveryConformance):
    async def make_transport(self) -> EmbeddedTransport:
        return EmbeddedTransport(None)

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, EmbeddedTransport)
        transport.disconnect()


class TestEmbeddedDurable(TestEmbeddedInMemory):
    """The same contract with every message in SQLite, fsynced before the ack."""

    def path(self) -> Path | None:
        return self.data


class TestEmbeddedDurableDelivery(DeliveryConformance):
    @pytest.fixture(autouse=True)
    def _data(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"

    async def make_transport(self) -> EmbeddedTransport:
        return EmbeddedTransport(self.data)

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, EmbeddedTransport)
        transport.disconnect()
