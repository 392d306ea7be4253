"""Our PONG reader: one PONG per PING in order, a flush given up on is skipped, not set."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from seawall.transports.nats._pongs import install


async def test_a_pong_for_a_cancelled_flush_is_taken_without_raising() -> None:
    client = Client()
    install(client)
    given_up, waiting = asyncio.get_running_loop().create_future(), asyncio.Future[bool]()
    given_up.cancel()
    client._pongs = [given_up, waiting]
    await client._process_pong()  # nats-py 2.16's own raises InvalidStateError here
    assert client._pongs == [waiting], "the PONG answers the oldest PING, given up or not"
    assert not waiting.done()
    await client._process_pong()
    assert waiting.result() is True
    assert client._pongs_received == 2
    await client._process_pong()  # a PONG nobody waits for: nothing to do


async def test_nats_py_alone_raises_on_it() -> None:
    """What the reader is for: without it, the read loop meets this error and ends (once
    this fails, the nats-py in use reads such a PONG safely and the reader can go)."""
    client = Client()
    given_up = asyncio.get_running_loop().create_future()
    given_up.cancel()
    client._pongs = [given_up]
    with pytest.raises(asyncio.InvalidStateError):
        await client._process_pong()


def test_installing_on_a_client_replaces_its_pong_reader_only() -> None:
    client, other = Client(), Client()
    install(client)
    assert client.__dict__.get("_process_pong") is not None
    assert "_process_pong" not in other.__dict__
