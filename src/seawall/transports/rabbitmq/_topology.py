"""Declaring the exchanges and queues of a seawall channel on RabbitMQ.

The declaring half of :mod:`seawall.transports.rabbitmq` (whose docstring
gives the design). Each operation (declaring a channel, joining a group,
deleting, ...) runs on an "admin" AMQP channel of its own: :meth:`Topology.admin`
lends it the idle one, or opens one, and takes it back for the next operation
only if the operation ended cleanly. An AMQP channel cannot be trusted after
an operation that did not: a refused declaration (404, 406) closes the channel
it was sent on, and aiormq closes the channel of an RPC whose caller was
cancelled (a subscribe cancelled by a stopping System, say), answering every
later RPC on it with "Channel closed by RPC timeout" until the broker confirms
the close. Shared, such a channel would fail the next declaration of whoever
came next, or of a concurrent operation; lent to one operation at a time, it
only ends the operation whose caller went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aio_pika
import aio_pika.exceptions
import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, ExchangeType

from ..._exceptions import ConfigurationError, TransportClosed, TransportError
from ..._transport import ChannelSpec
from ..._transport.errors import ErrorMap, lost
from ._layout import (
    Layout,
    channel_queue_arguments,
    delay_names,
    delay_queue_arguments,
    group_queue_arguments,
    inbox_queue,
)
from ._shield import finished

if TYPE_CHECKING:
    from . import RabbitMQTransport

__all__ = ["Topology", "translated"]

_ONE_RECORD = {"x-max-length": 1, "x-overflow": "reject-publish"}
_EXPIRING = "seawall-expiring"
"""Header of a name in a channel's groups queue whose group's queues expire."""
_NOT_FOUND = (aio_pika.exceptions.ChannelNotFoundEntity,)


def _differs(what: str, exc: BaseException) -> TransportError:
    return TransportError(
        f"{what}: RabbitMQ refused a declaration that differs from the existing one "
        f"({exc}); delete the old object or use another channel name"
    )


translated = ErrorMap(
    "RabbitMQ",
    (TimeoutError, ConnectionError, aiormq.exceptions.AMQPError),
    [
        (aiormq.exceptions.ChannelPreconditionFailed, _differs),
        (
            (
                TimeoutError,
                aiormq.exceptions.ConnectionClosed,
                aiormq.exceptions.ChannelInvalidStateError,
                aiormq.exceptions.AMQPConnectionError,
                ConnectionError,
            ),
            lost("RabbitMQ"),
        ),
    ],
)
"""``with translated(what):`` raises aio-pika / aiormq errors met while doing ``what`` as
seawall errors."""


class Topology:
    """Declares and looks up channel layouts, group queues and delay queues."""

    def __init__(self, transport: RabbitMQTransport) -> None:
        self.transport = transport
        self._idle: AbstractChannel | None = None  # see admin()
        self._delays: set[str] = set()  # delay exchanges known to exist
        self.made: set[tuple[str, str]] = set()
        """("queue" | "exchange", name) of every channel object declared (for cleanup)."""

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[AbstractChannel]:
        """An AMQP channel (publisher confirms on) for one operation alone.

        The idle channel if there is one, else a new one; kept as the idle one
        afterwards only if the operation raised nothing and left it open, and
        closed otherwise (see the module docstring).
        """
        channel, self._idle = self._idle, None
        if channel is None or channel.is_closed:
            channel = await self._open()
        try:
            yield channel
        except BaseException:
            await _discard(channel)
            raise
        if self._idle is None and not channel.is_closed:
            self._idle = channel
        else:
            await _discard(channel)

    async def _open(self) -> AbstractChannel:
        connection = await self.transport.connection()
        with translated("opening an AMQP channel"):
            return await connection.channel(publisher_confirms=True)

    def forget(self) -> None:
        """The link broke: the idle channel went with it."""
        self._idle = None
        self._delays.clear()

    async def _exists(self, queue: str) -> bool:
        """Whether ``queue`` exists (a 404 closes the channel asked on: it is not kept)."""
        with translated(f"looking up queue {queue!r}"):
            try:
                async with self.admin() as channel:
                    await channel.declare_queue(queue, passive=True)
            except _NOT_FOUND:
                return False
        return True

    # -- durable channels ------------------------------------------------------
    async def layout(
        self, spec: ChannelSpec, *, create: bool = True, repair: bool = False
    ) -> Layout | None:
        """The channel's layout as recorded on the broker; created from ``spec`` if missing.

        ``repair`` declares every object again (declarations are idempotent), for a
        channel part of which was deleted behind this process's back.
        """
        wanted = Layout(spec.name, spec.partitions, spec.priorities)
        if spec.partitions < 1:
            raise ConfigurationError(
                f"channel {spec.name!r} needs at least one partition, got {spec.partitions}"
            )
        if repair or not await self._exists(wanted.meta):
            if not create:
                return None
            await self._create(wanted, spec)
        return await self._read(wanted, spec)

    async def _create(self, layout: Layout, spec: ChannelSpec) -> None:
        with translated(f"declaring channel {spec.name!r}"):
            async with self.admin() as channel:
                await self._declare(channel, layout, spec)
        self.made.update({("queue", layout.unclaimed), ("queue", layout.meta)})
        self.made.add(("queue", layout.groups))
        self.made.update({("exchange", layout.unclaimed), ("exchange", layout.exchange)})
        await self._record(layout, spec)

    @staticmethod
    async def _declare(channel: AbstractChannel, layout: Layout, spec: ChannelSpec) -> None:
        unclaimed = await channel.declare_exchange(
            layout.unclaimed, ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(
            layout.unclaimed,
            durable=True,
            arguments=channel_queue_arguments(spec.max_messages, layout.priorities),
        )
        await queue.bind(unclaimed)
        await channel.declare_exchange(
            layout.exchange,
            ExchangeType.DIRECT,
            durable=True,
            arguments={"alternate-exchange": layout.unclaimed},
        )
        await channel.declare_queue(
            layout.meta,
            durable=True,
            arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
        )
        await channel.declare_queue(layout.groups, durable=True)

    async def _record(self, layout: Layout, spec: ChannelSpec) -> None:
        """Store the layout message; the first one stored wins (the queue holds one)."""
        record = {"partitions": layout.partitions, "priorities": layout.priorities}
        body = json.dumps({**record, "max_messages": spec.max_messages})
        message = aio_pika.Message(body.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        with (
            translated(f"recording the layout of channel {spec.name!r}"),
            contextlib.suppress(aio_pika.exceptions.DeliveryError),
        ):
            async with self.admin() as channel:
                await channel.default_exchange.publish(message, layout.meta, mandatory=False)

    async def _read(self, wanted: Layout, spec: ChannelSpec) -> Layout:
        """Read the layout message (and put it back); record ours if a creator died early."""
        for attempt in range(200):
            with translated(f"reading the layout of channel {spec.name!r}"):
                async with self.admin() as channel:
                    queue = await channel.get_queue(wanted.meta, ensure=False)
                    got = await queue.get(no_ack=False, fail=False)
                    if got is not None:
                        await got.reject(requeue=True)
            if got is not None:
                record = json.loads(got.body)
                levels = int(record.get("priorities", 1))
                return Layout(spec.name, int(record["partitions"]), levels)
            if attempt == 20:  # nobody holds it for long: its creator died before recording
                await self._record(wanted, spec)
            await asyncio.sleep(0.005)
        raise TransportError(
            f"channel {spec.name!r}: its layout record {wanted.meta!r} stayed unreadable; "
            "delete that queue to let the channel be declared again"
        )

    async def group(
        self, layout: Layout, group: str, max_messages: int, expiry: float | None = None
    ) -> list[str]:
        """The group's partition queues, declared if the group is new, and bound.

        Binding again is a no-op for a healthy channel and mends one whose exchange
        was deleted and declared anew. ``expiry`` (seconds) makes a new group's queues
        expire once unused that long (``x-expires``).
        """
        queues = [layout.queue(group, p) for p in range(layout.partitions)]
        new = not await self._exists(queues[-1])
        arguments = group_queue_arguments(
            max_messages,
            partitioned=layout.partitions > 1,
            priorities=layout.priorities,
            expiry=expiry,
        )
        with translated(f"joining group {group!r} on channel {layout.channel!r}"):
            if new:
                await self._register(layout, group, expiring=expiry is not None)
                for name in queues:
                    await self._group_queue(name, arguments)
            async with self.admin() as channel:
                amqp = await channel.get_underlay_channel()
                for partition, name in enumerate(queues):
                    await amqp.queue_bind(name, layout.exchange, routing_key=str(partition))
        return queues

    async def _group_queue(self, name: str, arguments: dict[str, Any]) -> None:
        """Declare a group's queue. One that another process declared meanwhile with other
        arguments (say, without an expiry) is refused by RabbitMQ and taken as it is, as
        a group found existing is."""
        try:
            async with self.admin() as channel:
                await channel.declare_queue(name, durable=True, arguments=arguments)
        except aio_pika.exceptions.ChannelPreconditionFailed:
            if not await self._exists(name):
                raise
        self.made.add(("queue", name))

    async def _register(self, layout: Layout, group: str, *, expiring: bool) -> None:
        """Add the group's name to the channel's groups queue, before its queues exist
        (marked if they expire, so that deleting a group may forget it once they have)."""
        message = aio_pika.Message(
            group.encode(),
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={_EXPIRING: True} if expiring else None,
        )
        async with self.admin() as channel:
            await channel.declare_queue(layout.groups, durable=True)  # older channels lack it
            await channel.default_exchange.publish(message, layout.groups)

    async def groups(
        self, layout: Layout, *, forget: str | None = None, expired: bool = False
    ) -> set[str]:
        """The names in the channel's groups queue; ``forget`` is taken out of it, and
        with ``expired`` every expiring group whose last queue RabbitMQ deleted.

        Read with gets on an AMQP channel of its own, then put back by closing it
        (the names to forget acked first).
        """
        if not await self._exists(layout.groups):
            return set()
        connection = await self.transport.connection()
        names: set[str] = set()
        last = layout.partitions - 1
        with translated(f"listing the groups of channel {layout.channel!r}"):
            channel = await connection.channel(publisher_confirms=False)
            try:
                queue = await channel.get_queue(layout.groups, ensure=False)
                while (got := await queue.get(no_ack=False, fail=False)) is not None:
                    name = got.body.decode(errors="replace")
                    gone = expired and bool((got.headers or {}).get(_EXPIRING))
                    if name == forget or (
                        gone and not await self._exists(layout.queue(name, last))
                    ):
                        await got.ack()
                    else:
                        names.add(name)
            finally:
                await channel.close()  # what was not acked goes back
        return names

    async def delete_channel(self, layout: Layout) -> None:
        """Delete every object of the channel: its exchanges, its queues and its groups'."""
        groups = await self.groups(layout)
        self._delays.difference_update(layout.every_delay())
        with translated(f"deleting channel {layout.channel!r}"):
            async with self.admin() as channel:
                amqp = await channel.get_underlay_channel()
                await amqp.exchange_delete(layout.exchange)  # nothing is routed to it any more
                for group in sorted(groups):
                    await self._delete_group(amqp, layout, group)
                for name in [layout.unclaimed, *layout.every_delay()]:
                    await amqp.exchange_delete(name)
                    await amqp.queue_delete(name)
                for name in (layout.groups, layout.meta):
                    await amqp.queue_delete(name)

    async def delete_group(self, layout: Layout, group: str) -> None:
        """Delete the group's partition queues and its members' exchange (and forget the
        names of the channel's expiring groups whose queues RabbitMQ deleted)."""
        await self.groups(layout, forget=group, expired=True)
        with translated(f"deleting group {group!r} of channel {layout.channel!r}"):
            async with self.admin() as channel:
                await self._delete_group(await channel.get_underlay_channel(), layout, group)

    @staticmethod
    async def _delete_group(amqp: aiormq.abc.AbstractChannel, layout: Layout, group: str) -> None:
        for partition in range(layout.partitions):
            await amqp.queue_delete(layout.queue(group, partition))
        await amqp.exchange_delete(layout.members(group))

    # -- ephemeral channels and delays -------------------------------------------
    async def inbox(self, channel_name: str) -> str:
        """An ephemeral channel's queue: not durable, gone when its last consumer leaves."""
        name = inbox_queue(channel_name)
        with translated(f"declaring reply inbox {channel_name!r}"):
            async with self.admin() as channel:
                await channel.declare_queue(name, durable=False, auto_delete=True)
        return name

    async def delay(self, step_ms: int) -> str:
        """The fanout exchange in front of the delay queue for ``step_ms`` (declared once)."""
        name = delay_names(step_ms)
        if name not in self._delays:
            await finished(self._delay_queue(name, step_ms, ""))
        return name

    async def scheduled(self, layout: Layout, step_ms: int) -> str:
        """The fanout exchange holding messages for ``layout``'s channel ``step_ms``."""
        name = layout.scheduled(step_ms)
        if name not in self._delays:
            await finished(self._delay_queue(name, step_ms, layout.exchange))
            self.made.update({("queue", name), ("exchange", name)})
        return name

    async def _delay_queue(self, name: str, step_ms: int, target: str) -> None:
        with translated(f"declaring delay queue {name!r}"):
            async with self.admin() as channel:
                exchange = await channel.declare_exchange(name, ExchangeType.FANOUT, durable=True)
                queue = await channel.declare_queue(
                    name, durable=True, arguments=delay_queue_arguments(step_ms, target)
                )
                await queue.bind(exchange)
        self._delays.add(name)

    async def close(self) -> None:
        channel, self._idle = self._idle, None
        if channel is not None:
            await _discard(channel)


async def _discard(channel: AbstractChannel) -> None:
    """Close an admin channel no operation will use again (at once if it is closing)."""
    if not channel.is_closed:
        with contextlib.suppress(aiormq.exceptions.AMQPError, TransportClosed, OSError):
            await channel.close()
