"""Before Welcome, on real sockets: the Hello limit, the Hello timeout (TLS included), and
the limits on connections, the server's and each client's.

Timing bounds are wide on purpose (other test runs share the machine): what they tell
apart is "at once" or "after the Hello timeout" from the old 30 s (60 s with TLS).
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.server.raw import RawClient, round_trip

from seawall import ConnectionLost
from seawall._messages.envelope import encode_message
from seawall._server.acl import Client, ServerConfig
from seawall._server.server import BrokerServer
from seawall._server.session import Session
from seawall._wire.protocol import (
    MAX_HELLO,
    PROTOCOL_VERSION,
    Error,
    Hello,
    Ok,
    Publish,
    Welcome,
    encode_frame,
)
from seawall.testing._conformance import make_message
from seawall.transports.memory import MemoryTransport
from seawall.transports.seawall import SeawallTransport

ORDERS = Client(
    name="orders",
    token="orders-token-0123456789",
    publish=("orders",),
    subscribe=("orders",),
    groups=("orders", "check-*"),
    max_connections=1,
)


async def closed_after(raw: RawClient, patience: float = 10.0) -> tuple[float, list[object]]:
    """Seconds until the server closed ``raw``, and the frames it sent before."""
    started = time.monotonic()
    frames = await raw.closed(timeout=patience)
    return time.monotonic() - started, list(frames)


async def until(condition: Callable[[], bool], patience: float = 5.0) -> None:
    """Wait until ``condition()`` holds (the server has noticed a close), polling."""
    for _ in range(int(patience / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still not so after {patience} s")


async def test_before_hello_a_longer_frame_is_refused_at_its_length(
    backing: MemoryTransport,
) -> None:
    async with BrokerServer(backing, host="127.0.0.1") as server:  # the default config
        raw = await RawClient.open(server.port)
        raw.writer.write(struct.pack(">I", MAX_HELLO + 1))  # no body: none is waited for
        waited, frames = await closed_after(raw, patience=3.0)
        assert waited < 3.0
        [error] = frames
        assert isinstance(error, Error), error
        assert (error.seq, error.code) == (None, "too-large")
        assert f"announces {MAX_HELLO + 1} bytes, over this end's max_frame of {MAX_HELLO}" in (
            error.message
        )
        assert server.statistics().unwelcome == 1
        client = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
        await round_trip(client, "orders")  # others go on
        await client.close()


async def test_bytes_after_hello_are_read_as_frames_after_welcome(
    backing: MemoryTransport,
) -> None:
    async with BrokerServer(backing, host="127.0.0.1") as server:
        raw = await RawClient.open(server.port)
        publish = Publish(1, "orders", encode_message(make_message(data=bytes(8 * MAX_HELLO))))
        raw.writer.write(encode_frame(Hello(PROTOCOL_VERSION, "eager")) + encode_frame(publish))
        assert isinstance(await raw.next(), Welcome)
        assert await raw.next() == Ok(1)  # a frame over the Hello limit, once welcome
        raw.writer.close()


async def test_silent_and_trickling_connections_are_closed_at_the_hello_timeout(
    backing: MemoryTransport,
) -> None:
    config = ServerConfig(hello_timeout=0.5)
    async with BrokerServer(backing, host="127.0.0.1", config=config) as server:
        silent = await RawClient.open(server.port)
        trickling = await RawClient.open(server.port)
        hello = encode_frame(Hello(PROTOCOL_VERSION, "slow"))

        async def trickle() -> None:
            for byte in hello:  # every byte on time, the whole too late
                trickling.writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        async with asyncio.TaskGroup() as group:
            dripping = group.create_task(trickle())
            waited = await asyncio.gather(closed_after(silent), closed_after(trickling))
            dripping.cancel()
        for seconds, frames in waited:
            assert 0.2 <= seconds < 4.0, seconds
            assert frames == []
        assert server.statistics().unwelcome == 2


async def test_a_tls_handshake_must_end_within_the_hello_timeout(
    backing: MemoryTransport, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    config = ServerConfig(hello_timeout=0.5)
    async with BrokerServer(backing, host="127.0.0.1", ssl=server_side, config=config) as server:
        no_handshake = await RawClient.open(server.port)
        waited, _ = await closed_after(no_handshake)
        assert 0.2 <= waited < 4.0, waited
        client_side = ssl.create_default_context(cafile=str(cert))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=client_side)
        no_hello = RawClient(reader, writer)  # TLS done, then nothing
        waited, _ = await closed_after(no_hello)
        assert waited < 4.0, waited
        client = await SeawallTransport.connect(
            f"seawalls://127.0.0.1:{server.port}", ssl=client_side
        )
        await round_trip(client, "orders")
        await client.close()


async def test_connections_over_max_connections_are_refused_until_one_closes(
    backing: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    config = ServerConfig(max_connections=2)
    async with BrokerServer(backing, host="127.0.0.1", config=config) as server:
        url = f"seawall://127.0.0.1:{server.port}"
        first = await SeawallTransport.connect(url)
        silent = await RawClient.open(server.port)  # not welcome yet, and still counted
        with pytest.raises(ConnectionLost, match="already serves 2 connections, its max_conn"):
            await SeawallTransport.connect(url)
        assert "refused 127.0.0.1" in caplog.text
        await round_trip(first, "orders")  # those in go on
        silent.writer.close()
        await until(lambda: server.statistics().connections == 1)
        second = await SeawallTransport.connect(url)
        await round_trip(second, "orders")
        stats = server.statistics()
        assert (stats.connections, stats.accepted, stats.refused) == (2, 3, 1)
        await first.close()
        await second.close()


async def test_a_client_over_its_own_max_connections_is_refused(
    backing: MemoryTransport,
) -> None:
    config = ServerConfig(tokens=(ORDERS,))
    async with BrokerServer(backing, host="127.0.0.1", config=config) as server:
        url = f"seawall://127.0.0.1:{server.port}"
        first = await SeawallTransport.connect(url, token=ORDERS.token)
        with pytest.raises(ConnectionLost, match="'orders' already holds 1 connections"):
            await SeawallTransport.connect(url, token=ORDERS.token)
        await round_trip(first, "orders")
        await first.close()
        await until(lambda: server.statistics().connections == 0)
        again = await SeawallTransport.connect(url, token=ORDERS.token)
        await round_trip(again, "orders")
        await again.close()


async def test_closing_the_server_drops_connections_still_opening(
    backing: MemoryTransport,
) -> None:
    server = BrokerServer(backing, host="127.0.0.1")  # the default Hello timeout: 5 s
    await server.start()
    silent = await RawClient.open(server.port)
    await until(lambda: server.statistics().connections == 1)
    started = time.monotonic()
    await server.close()
    assert time.monotonic() - started < 3.0
    await closed_after(silent, patience=3.0)


async def test_an_ended_connection_is_freed_without_the_garbage_collector(
    backing: MemoryTransport,
) -> None:
    """No reference cycle holds a session (and its buffers) once its connection ended,
    welcome or not: a crowd of them would otherwise stay until a full collection."""
    async with BrokerServer(backing, host="127.0.0.1") as server:
        gc.collect()
        gc.disable()
        try:
            hostile = await RawClient.open(server.port)
            hostile.writer.write(struct.pack(">I", MAX_HELLO + 1) + bytes(65536))
            await closed_after(hostile)
            client = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
            await round_trip(client, "orders")  # a subscription, a delivery, an ack
            await client.close()
            await until(lambda: server.statistics().connections == 0)
            await asyncio.sleep(0.1)  # the sessions' tasks are done
            assert [o for o in gc.get_objects() if isinstance(o, Session)] == []
        finally:
            gc.enable()
