"""Who owns each reply inbox, and where a connection may send replies: sans-IO tables.

A reply inbox is a channel named ``_inbox.<instance>``: the runtime makes one per
process (:class:`~seawall._runtime.node.Node`), declares it ephemeral, subscribes
to it, and names it as ``replyto`` in its requests. On a broker server with
clients configured, :mod:`.rights` keeps inboxes private with two tables, both
bounded and fed ``now``:

* :class:`InboxOwners`, one per server: the client that subscribed to an inbox
  first owns it while it holds a subscription to it, from any of its
  connections, and for :data:`HOLD` seconds after its last one ended, so a
  client that lost its connection can subscribe again from a new one before
  anybody else may.
* :class:`ReplyGrants`, one per connection: the inboxes named by the
  ``replyto`` of messages delivered to that connection, each until the
  message's deadline plus :data:`CLOCK_SLACK` (the requester's clock is not
  the broker's), or :data:`NO_DEADLINE` seconds after delivery for a message
  without one. A connection may publish replies to those inboxes.
"""

from __future__ import annotations

__all__ = [
    "CLOCK_SLACK",
    "HOLD",
    "MAX_GRANTS",
    "MAX_HELD",
    "NO_DEADLINE",
    "InboxOwners",
    "ReplyGrants",
]

HOLD = 300.0
"""Seconds an inbox stays its owner's after the owner's last subscription to it ended."""
MAX_HELD = 16_384
"""Inboxes held for owners with no subscription to them; past this the oldest go first."""
CLOCK_SLACK = 10.0
"""Seconds a reply grant outlives its request's deadline."""
NO_DEADLINE = 60.0
"""Seconds a reply grant lasts when the request has no deadline."""
MAX_GRANTS = 1024
"""Inboxes one connection may reply to at once; past this the least recently granted go."""


class InboxOwners:
    """Which client owns each reply inbox; see the module docstring."""

    def __init__(self, *, hold: float = HOLD, max_held: int = MAX_HELD) -> None:
        self.hold = hold
        self.max_held = max_held
        self._active: dict[str, tuple[str, int]] = {}  # inbox: (owner, its subscriptions)
        self._held: dict[str, tuple[str, float]] = {}  # inbox: (owner, until); oldest first

    def __len__(self) -> int:
        return len(self._active) + len(self._held)

    def owner(self, inbox: str, now: float) -> str | None:
        """The client owning ``inbox`` at ``now``, or None."""
        active = self._active.get(inbox)
        if active is not None:
            return active[0]
        held = self._held.get(inbox)
        if held is None:
            return None
        if held[1] <= now:
            del self._held[inbox]
            return None
        return held[0]

    def claim(self, inbox: str, client: str, now: float) -> bool:
        """Count one more subscription of ``client`` to ``inbox``; False if another owns it."""
        owner = self.owner(inbox, now)
        if owner is not None and owner != client:
            return False
        self._held.pop(inbox, None)
        _, count = self._active.get(inbox, (client, 0))
        self._active[inbox] = (client, count + 1)
        return True

    def release(self, inbox: str, client: str, now: float) -> None:
        """One subscription of ``client`` to ``inbox`` ended; after its last, hold it a while."""
        owner, count = self._active.get(inbox, (None, 0))
        if owner != client:
            return
        if count > 1:
            self._active[inbox] = (client, count - 1)
            return
        del self._active[inbox]
        self._held[inbox] = (client, now + self.hold)
        self._expire(now)

    def _expire(self, now: float) -> None:
        """Forget held inboxes past their time, and the oldest beyond ``max_held``."""
        held = self._held
        while held:
            inbox, (_, until) = next(iter(held.items()))
            if until > now and len(held) <= self.max_held:
                return
            del held[inbox]


class ReplyGrants:
    """The inboxes one connection may publish replies to; see the module docstring."""

    def __init__(self, *, limit: int = MAX_GRANTS) -> None:
        self.limit = limit
        self._until: dict[str, float] = {}  # inbox: until; least recently granted first

    def __len__(self) -> int:
        return len(self._until)

    def grant(self, inbox: str, deadline: float | None, now: float) -> None:
        """A message naming ``inbox`` as ``replyto`` was delivered at ``now``."""
        until = (now + NO_DEADLINE if deadline is None else deadline) + CLOCK_SLACK
        until = max(until, self._until.pop(inbox, until))  # re-inserted: now the most recent
        self._until[inbox] = until
        if len(self._until) > self.limit:
            del self._until[next(iter(self._until))]

    def allows(self, inbox: str, now: float) -> bool:
        """Whether a reply to ``inbox`` may be published at ``now``."""
        until = self._until.get(inbox)
        if until is None:
            return False
        if until <= now:
            del self._until[inbox]
            return False
        return True
