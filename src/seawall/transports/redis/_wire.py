"""The Redis transport's edge with redis-py: its error table and command packing.

redis-py packs commands in Python; a publish is one script call with a score
of arguments (the CloudEvents fields), so packing took more time than the
round trip. When hiredis is installed (the ``redis`` extra brings it), the
connections pack with hiredis's C packer instead; answers are parsed by
hiredis either way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio
import redis.exceptions

from ..._exceptions import ConnectionLost, TransportError
from ..._transport.errors import ErrorMap, denied, lost, refused

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is part of the redis extra
    hiredis = None  # type: ignore[assignment]

__all__ = ["command", "connection_class", "round_trip", "translate", "translated"]


def _response(what: str, exc: BaseException) -> TransportError:
    # deleted behind our back (a blocked read says UNBLOCKED): subscribing recreates it
    if str(exc).startswith(("NOGROUP", "UNBLOCKED")):
        return ConnectionLost(
            f"{what}: the stream or its consumer group was deleted ({exc}); subscribe again"
        )
    return refused("Redis")(what, exc)


translated = ErrorMap(
    "Redis",
    (redis.exceptions.RedisError, OSError),
    [
        (
            (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError),
            denied("Redis"),
        ),
        (
            (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                redis.exceptions.BusyLoadingError,
                OSError,
            ),
            lost("Redis"),
        ),
        (redis.exceptions.ResponseError, _response),
    ],
)
"""``with translated(what):`` raises redis-py errors met while doing ``what`` as ours."""
translate = translated.translate


@contextlib.asynccontextmanager
async def round_trip(what: str, seconds: float) -> AsyncIterator[None]:
    """:func:`translated`, and a Redis that has not answered within ``seconds`` counts
    as a lost link (``TimeoutError`` is an ``OSError``)."""
    with translated(what):
        async with asyncio.timeout(seconds):
            yield


async def command(client: redis.asyncio.Redis, *args: Any) -> Any:
    """One raw Redis command (redis-py leaves ``execute_command`` untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _pack(args: tuple[Any, ...]) -> list[bytes]:
    name = args[0]
    if isinstance(name, str) and " " in name:  # redis-py sends e.g. "CONFIG GET" as one
        args = (*name.split(), *args[1:])
    return [hiredis.pack_command(args)]


class _HiredisConnection(redis.asyncio.Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


class _HiredisSSLConnection(redis.asyncio.SSLConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _pack(args)


def connection_class(url: str) -> type[redis.asyncio.Connection] | None:
    """The connection class for ``url`` that packs with hiredis, or None without it."""
    if hiredis is None or url.startswith("unix:"):
        return None
    return _HiredisSSLConnection if url.startswith("rediss:") else _HiredisConnection
