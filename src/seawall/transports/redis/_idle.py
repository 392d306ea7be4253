"""Groups that expire once idle, on Redis: noted in a hash, swept by subscribers.

Redis keeps no time a consumer group was last used (before Redis 7.2 a
consumer's idle time counts from its last delivery, not its last read) and
runs no timer of its own, so the transport keeps both. The channel's ``idle``
hash (:attr:`~._keys.Keys.idle`) holds, per expiring group, its expiry and
the last time, by the server's clock, that a member noted it was in use
(``touch``): when it joins, every third of the expiry while it is read, and
when it leaves. A member killed stops noting; so a group whose note is older
than its expiry has had no member that long, and whoever subscribes to the
channel next sweeps it (``sweep``): destroys it on every stream, then deletes
its retry sets, locks and members' keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._exceptions import TransportError
from ._keys import RedisChannel
from ._wire import round_trip

if TYPE_CHECKING:
    from . import RedisTransport

__all__ = ["sweep", "touch"]


async def sweep(transport: RedisTransport, channel: RedisChannel) -> set[str]:
    """Destroy the channel's expiring groups unused for their expiry; the expiring
    groups that remain."""
    keys = channel.keys
    client = await transport.link()
    async with round_trip(f"sweeping idle groups of {channel.name!r}", transport.api_timeout):
        expiring = {_text(f) for f in await client.hkeys(keys.idle)}
    if not expiring:
        return expiring
    args: list[str] = []
    for group in sorted(expiring):
        args += (group, keys.group(group))
    streams = [keys.stream(lane) for lane in range(channel.lanes)]
    async with round_trip(f"sweeping idle groups of {channel.name!r}", transport.api_timeout):
        swept = await transport.script("sweep", [keys.idle, *streams], args)
    gone = {_text(f) for f in swept}
    if gone:
        doomed = [keys.retry(g, lane) for g in gone for lane in range(channel.lanes)]
        doomed += [keys.lock(g, p) for g in gone for p in range(channel.partitions)]
        doomed += [k for g in gone for k in (keys.members(g), keys.epochs(g))]
        async with round_trip(f"deleting idle groups of {channel.name!r}", transport.api_timeout):
            await client.unlink(*doomed)
    return expiring - gone


async def touch(
    transport: RedisTransport, channel: RedisChannel, group: str, expiry: float | None
) -> float | None:
    """Note that ``group`` is in use: with ``expiry`` (seconds), as a group that expires,
    else only if it expires already. Its expiry, or None if it has none."""
    ms = "" if expiry is None else str(max(1, round(expiry * 1000)))
    got = int(await transport.script("touch", [channel.keys.idle], [group, ms]))
    return got / 1000 if got else None


async def left(transport: RedisTransport, channel: RedisChannel, group: str) -> None:
    """A member of an expiring group left: its expiry counts from now (best effort: a
    member that could not say so leaves its consumer behind, which counts instead)."""
    try:
        async with round_trip(f"leaving group {group!r}", transport.api_timeout):
            await touch(transport, channel, group, None)
    except (TransportError, TimeoutError):
        pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
