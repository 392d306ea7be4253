"""The broker server on real sockets: access rules, bad input, TLS, heartbeats.

Bad bytes are sent by a raw socket client speaking the frames by hand; every
test checks that the failure stays with the client that caused it while
another client keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.unit.server.raw import RawClient, round_trip

from seawall import ConnectionLost, MessageTooLarge, PermissionDenied, ProtocolError
from seawall._messages.envelope import decode_message, encode_message
from seawall._server.acl import Client, ServerConfig
from seawall._server.server import BrokerServer
from seawall._wire.protocol import (
    PROTOCOL_VERSION,
    Acks,
    Deliver,
    Error,
    Hello,
    Ok,
    Oks,
    Ping,
    Publish,
    Subscribe,
    Welcome,
    encode_frame,
)
from seawall.testing._conformance import Inbox, make_message
from seawall.transports.embedded import EmbeddedTransport
from seawall.transports.memory import MemoryTransport
from seawall.transports.seawall import SeawallTransport

ORDERS = Client(
    name="orders",
    token="orders-token-0123456789",
    publish=("orders.*",),
    subscribe=("orders.*",),
    groups=("orders", "check-*"),
)
AUDIT = Client(name="audit", token="audit-token-0123456789", subscribe=("*",))
SECURED = ServerConfig(tokens=(ORDERS, AUDIT))


@pytest_asyncio.fixture
async def server(backing: MemoryTransport) -> AsyncIterator[BrokerServer]:
    async with BrokerServer(backing, host="127.0.0.1") as server:
        yield server


# -- access ---------------------------------------------------------------------------


async def test_a_bad_token_is_refused_and_others_go_on(
    backing: MemoryTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with BrokerServer(backing, host="127.0.0.1", config=SECURED) as server:
        url = f"seawall://127.0.0.1:{server.port}"
        good = await SeawallTransport.connect(url, token=ORDERS.token)
        wrong = "wrong-token-0123456789"
        for token in (wrong, None):
            with pytest.raises(PermissionDenied, match="requires a token"):
                await SeawallTransport.connect(url, token=token)
        await round_trip(good, "orders.created")
        await good.close()
    assert "refused client" in caplog.text
    for secret in (ORDERS.token, AUDIT.token, wrong):
        assert secret not in caplog.text


async def test_a_channel_outside_the_rights_fails_that_request_only(
    server: BrokerServer, backing: MemoryTransport
) -> None:
    await server.close()
    async with BrokerServer(backing, host="127.0.0.1", config=SECURED) as secured:
        url = f"seawall://127.0.0.1:{secured.port}"
        orders = await SeawallTransport.connect(url, token=ORDERS.token)
        audit = await SeawallTransport.connect(url, token=AUDIT.token)
        with pytest.raises(PermissionDenied, match="'orders' may not publish to channel 'billing'"):
            await orders.publish("billing", make_message())
        with pytest.raises(PermissionDenied, match="may not subscribe to channel 'billing'"):
            await orders.subscribe("billing", group="g")
        with pytest.raises(PermissionDenied, match="may not publish to"):
            await audit.publish("orders.created", make_message())
        assert not backing.has_channel("billing")
        await round_trip(orders, "orders.created")  # the same connection goes on
        sub = await audit.subscribe("orders.created", group="audit")  # and so do others
        await sub.close()
        await orders.close()
        await audit.close()


async def test_deleting_takes_both_rights_on_the_channel(
    server: BrokerServer, backing: MemoryTransport
) -> None:
    await server.close()
    async with BrokerServer(backing, host="127.0.0.1", config=SECURED) as secured:
        url = f"seawall://127.0.0.1:{secured.port}"
        orders = await SeawallTransport.connect(url, token=ORDERS.token)
        audit = await SeawallTransport.connect(url, token=AUDIT.token)
        await orders.publish("orders.created", make_message())
        for group in (None, "billing"):
            with pytest.raises(PermissionDenied, match="'audit' may not delete channel"):
                await audit.delete("orders.created", group=group)
        assert backing.has_channel("orders.created")
        await orders.delete("orders.created")
        assert not backing.has_channel("orders.created")
        sub = await audit.subscribe("orders.created", group="audit")  # its connection goes on
        await sub.close()
        await orders.close()
        await audit.close()


async def test_auto_create_off_refuses_unknown_channels(backing: MemoryTransport) -> None:
    config = ServerConfig(auto_create=False)
    await backing.publish("orders", make_message())  # exists
    async with BrokerServer(backing, host="127.0.0.1", config=config) as server:
        client = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
        for attempt in (
            client.publish("nowhere", make_message()),
            client.subscribe("nowhere", group="g"),
        ):
            with pytest.raises(ProtocolError, match="'nowhere' does not exist") as info:
                await attempt
            assert info.value.code == "unknown-channel"
        assert not backing.has_channel("nowhere")
        await round_trip(client, "orders")
        await client.close()


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "malformed"),  # not MessagePack
        (encode_frame(Ok(1)), "bad-request"),  # a server's frame
        (struct.pack(">I", 1 << 30), "too-large"),  # over max_frame
    ],
    ids=["malformed", "server-frame", "oversize-frame"],
)
async def test_broken_frames_end_that_connection_only(
    server: BrokerServer, data: bytes, code: str
) -> None:
    other = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
    raw = await RawClient.open(server.port, Hello(PROTOCOL_VERSION, "raw"))
    raw.writer.write(data)
    [error] = await raw.closed()
    assert isinstance(error, Error), error
    assert (error.seq, error.code) == (None, code), error
    await round_trip(other, "orders")
    await other.close()


async def test_a_request_before_hello_is_refused(server: BrokerServer) -> None:
    raw = await RawClient.open(server.port)
    raw.send(Publish(0, "orders", encode_message(make_message())))
    [error] = await raw.closed()
    assert isinstance(error, Error)
    assert (error.code, error.message) == (
        "bad-request",
        "the first frame must be Hello, not Publish",
    )


async def test_oversize_and_undecodable_messages_fail_their_request_only(
    backing: MemoryTransport,
) -> None:
    config = ServerConfig(max_message=2048, max_frame=8192)
    async with BrokerServer(backing, host="127.0.0.1", config=config) as server:
        raw = await RawClient.open(server.port, Hello(PROTOCOL_VERSION, "raw"))
        raw.send(Publish(1, "orders", b"x" * 2049))
        raw.send(Publish(2, "orders", b"\x93not an envelope"))
        raw.send(Publish(3, "orders", encode_message(make_message())))
        got = [await raw.next() for _ in range(3)]
        answers = {frame.seq: frame for frame in got if isinstance(frame, Ok | Error)}
        too_large, malformed = answers[1], answers[2]
        assert isinstance(too_large, Error), too_large
        assert too_large.code == "too-large"
        assert "2049 bytes for channel 'orders' is over this broker's max_message of 2048" in (
            too_large.message
        )
        assert isinstance(malformed, Error), malformed
        assert malformed.code == "malformed"
        assert answers[3] == Ok(3)
        assert backing.unsettled() == 0  # no group yet; and the channel holds one message
        client = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
        assert client.capabilities.max_message_bytes == 2048
        with pytest.raises(MessageTooLarge):  # refused before it is sent
            await client.publish("orders", make_message(data=b"x" * 2048))
        await client.close()
        raw.writer.close()


# -- heartbeats -------------------------------------------------------------------------


async def test_a_silent_client_is_dropped_and_its_deliveries_come_again(
    server: BrokerServer,
) -> None:
    sent = make_message()
    raw = await RawClient.open(server.port, Hello(PROTOCOL_VERSION, "mute", heartbeat=0.1))
    raw.send(Subscribe(1, "orders", "billing", prefetch=4))
    assert await raw.next() == Ok(1, result=1)
    other = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
    await other.publish("orders", sent)
    delivery = await raw.next()
    assert isinstance(delivery, Deliver), delivery
    assert delivery.attempt == 1
    started = asyncio.get_running_loop().time()
    left = await raw.closed(timeout=5.0)  # it never answers the server's pings
    waited = asyncio.get_running_loop().time() - started
    assert len(left) >= 2, left
    assert all(isinstance(frame, Ping) for frame in left), left
    assert 0.25 <= waited < 2.0, f"dropped after {waited:.2f} s, heartbeat 0.1 s"
    sub = await other.subscribe("orders", group="billing")
    async with Inbox(sub, patience=5.0) as inbox:
        [again] = await inbox.collect(1)
        assert (again.message, again.attempt) == (sent, 2)
    await other.close()


async def test_a_silent_broker_makes_the_client_give_up() -> None:
    async def mute_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # the Hello
        writer.write(encode_frame(Welcome(1, "mute", 1 << 20, 1 << 16, heartbeat=0.1)))
        while await reader.read(65536):  # then reads pings, answers nothing
            pass
        writer.close()

    server = await asyncio.start_server(mute_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = await SeawallTransport.connect(
            f"seawall://127.0.0.1:{port}", heartbeat=0.1, publish_timeout=0.5
        )
        # the publish tries again on a new link for publish_timeout, then says why it failed
        with pytest.raises(ConnectionLost, match=r"sent nothing for 0\.3 s"):
            async with asyncio.timeout(3.0):
                await client.publish("orders", make_message())
        await client.close()
        server.close()


# -- TLS --------------------------------------------------------------------------------


async def test_tls_carries_the_protocol_and_plain_clients_are_turned_away(
    backing: MemoryTransport, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    async with BrokerServer(backing, host="127.0.0.1", ssl=server_side) as server:
        client = await SeawallTransport.connect(
            f"seawalls://127.0.0.1:{server.port}", ssl=client_side
        )
        await round_trip(client, "orders")
        await client.close()
        with pytest.raises(ConnectionLost):
            await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}", connect_timeout=2)
        with pytest.raises(ConnectionLost, match="CERTIFICATE_VERIFY_FAILED"):
            await SeawallTransport.connect(f"seawalls://127.0.0.1:{server.port}")


async def test_closing_the_server_says_goodbye_and_returns_deliveries(
    server: BrokerServer, backing: MemoryTransport
) -> None:
    client = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
    await client.publish("orders", make_message())
    sub = await client.subscribe("orders", group="billing")
    async with Inbox(sub, patience=5.0) as inbox:
        await inbox.collect(1)
        await server.close()
        _, error = await inbox.finish()
    assert isinstance(error, ConnectionLost)
    assert "shutting down" in str(error)
    assert backing.unsettled() == 1  # returned, not acked
    await client.close()


HOLDER = """
import asyncio, sys
from seawall.transports.seawall import SeawallTransport

async def main() -> None:
    transport = await SeawallTransport.connect(sys.argv[1])
    sub = await transport.subscribe("orders", group="billing", prefetch=5)
    held = 0
    async for _ in sub:  # never settles
        held += 1
        if held == 5:
            print("holding", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_deliveries_of_a_killed_consumer_process_come_again(server: BrokerServer) -> None:
    url = f"seawall://127.0.0.1:{server.port}"
    client = await SeawallTransport.connect(url)
    sent = [make_message(i) for i in range(5)]
    for message in sent:
        await client.publish("orders", message)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        async with asyncio.timeout(20):
            assert await holder.stdout.readline() == b"holding\n"
        os.kill(holder.pid, signal.SIGKILL)
    finally:
        await holder.wait()
    sub = await client.subscribe("orders", group="billing", prefetch=5)
    async with Inbox(sub, patience=5.0) as inbox:
        again = await inbox.collect(5)
    assert sorted(d.message.id for d in again) == sorted(m.id for m in sent)
    assert {d.attempt for d in again} == {2}
    await client.close()


# -- batched frames ---------------------------------------------------------------------


async def test_a_batched_client_is_answered_with_oks_and_may_ack_with_acks(
    tmp_path: Path,
) -> None:
    """A client whose Hello says ``batched`` gets Oks; the server's Welcome says it reads
    Acks, and one Acks frame settles many deliveries of the durable broker."""
    backing = EmbeddedTransport(tmp_path / "data")
    async with BrokerServer(backing, host="127.0.0.1") as server:
        raw = await RawClient.open(server.port)
        raw.send(Hello(PROTOCOL_VERSION, "raw", batched=True))
        welcome = await raw.next()
        assert isinstance(welcome, Welcome), welcome
        assert welcome.batched
        raw.send(Subscribe(1, "orders", "billing", prefetch=8))
        assert await raw.next() == Ok(1, result=1)
        sent = [make_message(n) for n in range(3)]
        publishes = [Publish(2 + n, "orders", encode_message(m)) for n, m in enumerate(sent)]
        raw.writer.write(b"".join(map(encode_frame, publishes)))  # one read: held together
        answered: list[int] = []
        delivered: list[Deliver] = []
        while len(answered) < 3 or len(delivered) < 3:
            frame = await raw.next()
            assert not isinstance(frame, Ok | Error), frame  # publishes are answered by Oks
            if isinstance(frame, Oks):
                answered += frame.seqs
            elif isinstance(frame, Deliver):
                delivered.append(frame)
        assert sorted(answered) == [2, 3, 4]
        assert [decode_message(d.message) for d in delivered] == sent
        assert backing.unsettled() == 3
        raw.send(Acks(1, tuple(d.offset for d in delivered[:2])))
        raw.send(Acks(1, (delivered[2].offset, 12345)))  # a handle the server lacks: ignored
        for _ in range(500):
            if not backing.unsettled():
                break
            await asyncio.sleep(0.01)
        assert backing.unsettled() == 0
        raw.writer.close()
    await backing.close()
