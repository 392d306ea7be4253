"""A durable reply cache on Redis: one key per answered request, expiring by itself.

Implements :class:`seawall.resilience.ReplyStore` for services that ask for
their replies to outlive the process (``Service(..., reply_store=...)``): a
request repeated after the responder restarted, or taken by another instance
of it, is still answered from here without running its handler again. Keys
are ``{prefix}:replies:{request id}``, set with an expiry of ``keep`` seconds,
so Redis bounds the cache itself.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from ..._exceptions import ConfigurationError

__all__ = ["RedisReplyStore"]


class RedisReplyStore:
    """Replies by request id in Redis, each kept ``keep`` seconds."""

    def __init__(
        self, client: redis.asyncio.Redis, *, prefix: str = "seawall", keep: float = 3600.0
    ) -> None:
        if keep <= 0:
            raise ConfigurationError(f"RedisReplyStore keep must be positive seconds, got {keep}")
        self._client = client
        self.prefix = prefix
        self.keep = keep

    @classmethod
    def connect(cls, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> RedisReplyStore:
        """A store on the Redis at ``url`` (the client connects on first use)."""
        return cls(redis.asyncio.Redis.from_url(url), **options)

    def _key(self, request_id: str) -> str:
        return f"{self.prefix}:replies:{request_id}"

    async def get(self, request_id: str) -> bytes | None:
        value = await self._client.get(self._key(request_id))
        return value.encode() if isinstance(value, str) else value

    async def put(self, request_id: str, reply: bytes, *, now: float) -> None:
        await self._client.set(self._key(request_id), reply, px=max(1, int(self.keep * 1000)))

    async def close(self) -> None:
        await self._client.aclose()
