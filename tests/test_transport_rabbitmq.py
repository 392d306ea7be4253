"""The RabbitMQ transport against a real server: both conformance suites,
partition hand-over, interoperability with a plain aio-pika client, and a
fault (a private RabbitMQ node stopped and started again mid-stream)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aio_pika
import pytest
from tests.brokers import RABBITMQ, require

from seawall._transport import Transport
from seawall.testing import DeliveryConformance, TransportConformance
from seawall.transports.rabbitmq import RabbitMQTransport

pytestmark = pytest.mark.integration


class RabbitSuite:
    """Transports on the shared server; every queue and exchange a test makes is deleted."""

    timeout = 10.0
    quiet_period = 0.3
    publish_timeout = 0.3

    async def make_transport(self) -> RabbitMQTransport:
        return self._made(await RabbitMQTransport.connect(require(RABBITMQ)))

    async def make_transport_with_publish_timeout(self, seconds: float) -> RabbitMQTransport:
        return self._made(
            await RabbitMQTransport.connect(require(RABBITMQ), publish_timeout=seconds)
        )

    def _made(self, transport: RabbitMQTransport) -> RabbitMQTransport:
        self.__dict__.setdefault("made", []).append(transport)
        return transport

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, RabbitMQTransport)
        await transport.drop_connection_for_tests()

    @pytest.fixture(autouse=True)
    async def _delete_objects(self) -> AsyncIterator[None]:
        yield
        made: list[RabbitMQTransport] = self.__dict__.get("made", [])
        async with cleanup() as doomed:
            for transport in made:
                doomed.update(transport.topology.made)


class TestRabbitMQTransport(RabbitSuite, TransportConformance):
    pass


class TestRabbitMQDelivery(RabbitSuite, DeliveryConformance):
    pass


@contextlib.asynccontextmanager
async def cleanup() -> AsyncIterator[set[tuple[str, str]]]:
    """Collect ("queue" | "exchange", name) pairs in the yielded set; deleted on exit."""
    doomed: set[tuple[str, str]] = set()
    try:
        yield doomed
    finally:
        connection = await aio_pika.connect(require(RABBITMQ))
        async with connection:
            for kind, name in sorted(doomed, reverse=True):  # queues before exchanges
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    if kind == "queue":
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.close()
