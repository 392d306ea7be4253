"""The NATS JetStream transport against a real server: both conformance suites."""

from __future__ import annotations

import contextlib

import pytest
from tests.brokers import NATS, require

from seawall._transport import Transport
from seawall.testing import DeliveryConformance, TransportConformance
from seawall.transports.nats import NatsTransport

pytestmark = pytest.mark.integration


class NatsSuite:
    """Transports on the shared server; every stream a test makes is deleted after it."""

    timeout = 10.0
    quiet_period = 0.3
    publish_timeout = 0.3
    made: list[NatsTransport]

    async def make_transport(self) -> NatsTransport:
        return await self._track(NatsTransport.connect(require(NATS), pull_expires=2.0))

    async def make_transport_with_publish_timeout(self, seconds: float) -> NatsTransport:
        return await self._track(NatsTransport.connect(require(NATS), publish_timeout=seconds))

    async def _track(self, connecting: object) -> NatsTransport:
        transport = await connecting  # type: ignore[misc]
        assert isinstance(transport, NatsTransport)
        if not hasattr(self, "made"):
            self.made = []
        self.made.append(transport)
        return transport

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, NatsTransport)
        await transport.drop_connection_for_tests()

    @pytest.fixture(autouse=True)
    async def _delete_streams(self):  # type: ignore[no-untyped-def]
        yield
        cleaner = await NatsTransport.connect(require(NATS))
        try:
            js = await cleaner.link()
            for transport in getattr(self, "made", []):
                for stream in transport._streams.values():
                    with contextlib.suppress(Exception):
                        await js.delete_stream(stream.name)
        finally:
            await cleaner.close()


class TestNatsTransport(NatsSuite, TransportConformance):
    pass


class TestNatsDelivery(NatsSuite, DeliveryConformance):
    pass
