"""The AMQP connection under a RabbitMQ transport, and the channel it publishes on.

The link half of :mod:`seawall.transports.rabbitmq` (whose docstring gives
the design), kept apart so each module stays small. The connection opens on
first use and again on the first use after it broke; a break is reported once,
to the transport, which ends its subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aio_pika.abc
import aiormq
import aiormq.abc
import aiormq.exceptions

from ..._exceptions import ConnectionLost
from ._topology import translated

__all__ = ["Link"]

Broke = Callable[[BaseException | None], Awaitable[None]]
"""Told that the current connection broke (the link is reset already)."""


class Link:
    """One AMQP connection at a time, and its publishing channel (publisher confirms on)."""

    def __init__(self, url: str, *, name: str, connect_timeout: float, broke: Broke) -> None:
        self.url = url
        self.name = name
        self.connect_timeout = connect_timeout
        self._broke_callback = broke
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._publisher: aiormq.abc.AbstractChannel | None = None
        self._connecting = asyncio.Lock()
        self._opening_publisher = asyncio.Lock()
        self._broke = asyncio.Event()

    async def connection(self) -> aio_pika.abc.AbstractConnection:
        """The AMQP connection, opened first if there is none."""
        connection = self._connection
        if connection is None or connection.is_closed:
            async with self._connecting:
                if self._connection is None or self._connection.is_closed:
                    self._connection = await self._open()
                connection = self._connection
        return connection

    async def _open(self) -> aio_pika.abc.AbstractConnection:
        try:
            connection = await aio_pika.connect(
                self.url,
                timeout=self.connect_timeout,
                client_properties={"connection_name": self.name},
            )
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            where = self.url.split("@")[-1]  # keep the password out of the message
            raise ConnectionLost(
                f"cannot connect to RabbitMQ at {where} ({exc!r}); is rabbitmq-server running "
                "there, and are the user and password right?"
            ) from exc
        self._broke.clear()

        async def closed(_: object, exc: BaseException | None) -> None:
            await self._closed(connection, exc)

        connection.close_callbacks.add(closed)
        return connection

    async def _closed(
        self, connection: aio_pika.abc.AbstractConnection, exc: BaseException | None
    ) -> None:
        if connection is not self._connection:
            return  # an older connection, or the one close() let go of
        self._connection = None
        self._publisher = None
        self._broke.set()
        await self._broke_callback(exc)

    async def publisher(self) -> aiormq.abc.AbstractChannel:
        """The AMQP channel publishes go through (publisher confirms on)."""
        channel = self._publisher
        if channel is None or channel.is_closed:
            async with self._opening_publisher:
                channel = self._publisher
                if channel is None or channel.is_closed:
                    connection = await self.connection()
                    with translated("opening the publishing channel"):
                        wrapper = await connection.channel(publisher_confirms=True)
                        channel = self._publisher = await wrapper.get_underlay_channel()
        return channel

    async def drop_for_tests(self) -> None:
        """Cut the TCP connection under aiormq, as a network failure would."""
        connection = await self.connection()
        underlay: Any = connection.transport
        amqp = underlay.connection
        # aiormq keeps the stream writer only in its writer task's frame
        frame = getattr(amqp._writer_task.get_coro(), "cr_frame", None)
        writer = frame.f_locals.get("writer") if frame is not None else None
        assert writer is not None, "aiormq changed: no socket to cut"
        writer.transport.abort()
        async with asyncio.timeout(5.0):
            await self._broke.wait()

    async def close(self) -> None:
        """Close the connection, if open, without reporting a break."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(aiormq.exceptions.AMQPError, OSError, asyncio.TimeoutError):
                await connection.close()
