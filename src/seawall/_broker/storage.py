"""What the embedded broker needs of its durable store, and the channel layouts it keeps.

:class:`Storage` is the broker's side of :class:`~seawall._broker.store_writer.StoreWriter`
(the SQLite group-commit writer); the broker depends on this protocol only,
and keeps everything in memory when it has no store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from .._transport import ChannelSpec
from .store import ChannelLayout, Entry

__all__ = ["Storage", "layout_of", "spec_of"]


class Storage(Protocol):
    """What the broker needs of its durable store (a :class:`~.store_writer.StoreWriter`).

    Writes keep call order; awaited ones resolve once durable per the store's policy.
    """

    @property
    def full(self) -> bool: ...

    @property
    def acks_before_commit(self) -> bool: ...

    async def room(self) -> None: ...

    def declare(self, name: str, layout: ChannelLayout) -> Awaitable[None]: ...

    def append(
        self,
        channel: str,
        partition: int,
        offset: int,
        time: float,
        body: bytes,
        then: Callable[[], None] | None = None,
        fsync: bool = True,
        dedupe: str | None = None,
    ) -> Awaitable[None]:
        """Resolves once durable per policy; ``then`` runs as soon as it is committed.

        ``fsync=False``: committed without an fsync of its own (a request on a channel
        that does not sync requests), unless another write of its group needs one.
        ``dedupe``: the publish's key in the duplicate window, stored with it."""
        ...

    def append_calling(
        self,
        channel: str,
        partition: int,
        offset: int,
        time: float,
        body: bytes,
        then: Callable[[], None] | None,
        fsync: bool,
        done: Callable[[BaseException | None], None],
        dedupe: str | None = None,
    ) -> None:
        """:meth:`append`, calling ``done(None)`` once durable per policy (after ``then``),
        or ``done(error)`` if the write failed, instead of returning an awaitable."""
        ...

    def schedule(
        self,
        id: str,
        channel: str,
        due: float,
        body: bytes,
        time: float = 0.0,
        dedupe: str | None = None,
    ) -> Awaitable[None]: ...

    def move_due(
        self,
        id: str,
        channel: str,
        partition: int,
        offset: int,
        time: float,
        body: bytes,
        then: Callable[[], None] | None = None,
    ) -> Awaitable[None]: ...

    def delete_channel(self, name: str) -> Awaitable[None]: ...

    def delete_group(self, channel: str, group: str) -> Awaitable[None]: ...

    def set_position(self, channel: str, group: str, partition: int, committed: int) -> None: ...

    def trim(self, channel: str, partition: int, below: int) -> None: ...

    def forget_ids(self, before: float) -> None:
        """Forget the duplicate window's ids stored before ``before`` (lazily)."""
        ...

    def read(self, channel: str, partition: int, start: int, limit: int) -> list[Entry]: ...

    def offset_at_time(self, channel: str, partition: int, t: float) -> int: ...

    def offset_keeping_bytes(self, channel: str, partition: int, max_bytes: int) -> int: ...

    async def close(self) -> None: ...


def layout_of(spec: ChannelSpec) -> ChannelLayout:
    """How the store records a channel's layout."""
    return ChannelLayout(
        partitions=spec.partitions,
        max_messages=spec.max_messages,
        priorities=spec.priorities,
        max_age=spec.max_age,
        max_bytes=spec.max_bytes,
        sync_requests=spec.sync_requests,
        requests=spec.requests,
    )


def spec_of(name: str, layout: ChannelLayout) -> ChannelSpec:
    """The channel a stored layout describes."""
    return ChannelSpec(
        name=name,
        partitions=layout.partitions,
        max_messages=layout.max_messages,
        priorities=layout.priorities,
        max_age=layout.max_age,
        max_bytes=layout.max_bytes,
        sync_requests=layout.sync_requests,
        requests=layout.requests,
    )
