"""What one connection may do on the broker server: channels, groups, reply inboxes.

A session makes its :class:`Rights` once Hello is checked. On an open server
(no clients configured) everything is allowed and nothing is tracked. For a
connection authenticated as a :class:`~seawall._server.acl.Client`:

* publishing needs a ``publish`` pattern matching the channel, subscribing a
  ``subscribe`` pattern, declaring either;
* subscribing also needs a ``groups`` pattern matching the consumer group (the
  client's own name when it has none), so a client cannot join another
  service's group and take its messages;
* reply inboxes (:mod:`.inboxes`) are private on top of the patterns: an
  inbox may be subscribed to, with any group, and declared only by the client
  that owns it (the first to subscribe), and published to only by its owner
  or by a connection that was delivered a message whose ``replyto`` names it,
  until that message's deadline.

Every refusal raises :class:`~seawall.PermissionDenied` for that request only,
saying what was refused, to whom, and what would allow it.
"""

from __future__ import annotations

from .._clock import Clock
from .._exceptions import PermissionDenied
from .._messages.envelope import Message
from .._transport import is_reply_inbox
from .acl import Client
from .inboxes import InboxOwners, ReplyGrants

__all__ = ["Rights"]


class Rights:
    """The rights of one connection; see the module docstring."""

    def __init__(self, client: Client | None, owners: InboxOwners, clock: Clock) -> None:
        self.client = client
        self._owners = owners
        self._clock = clock
        self._grants = ReplyGrants()

    def check_publish(self, channel: str) -> None:
        """Refuse publishing to ``channel`` unless allowed."""
        client = self.client
        if client is None:
            return
        if not client.may_publish(channel):
            raise self._no_pattern("publish to", channel)
        if is_reply_inbox(channel) and not self._may_reply(client, channel):
            raise PermissionDenied(
                f"client {client.name!r} may not publish to reply inbox {channel!r}: it is not "
                "this client's, and no message delivered on this connection names it as "
                "replyto (or that message's deadline has passed); a reply goes only to the "
                "inbox of a request this connection received"
            )

    def check_declare(self, channel: str) -> None:
        """Refuse declaring ``channel`` unless allowed."""
        client = self.client
        if client is None:
            return
        if not client.may_declare(channel):
            raise self._no_pattern("declare", channel)
        if is_reply_inbox(channel) and self._owners.owner(channel, self._clock.time()) not in (
            None,
            client.name,
        ):
            raise self._taken(client, channel)

    def check_delete(self, channel: str) -> None:
        """Refuse deleting ``channel`` or a group of it unless this client may both publish
        to it and subscribe to it (and, for a reply inbox, owns it)."""
        client = self.client
        if client is None:
            return
        if not (client.may_publish(channel) and client.may_subscribe(channel)):
            raise PermissionDenied(
                f"client {client.name!r} may not delete channel {channel!r} or its groups: "
                "that takes both the publish and the subscribe right on it"
            )
        if is_reply_inbox(channel) and self._owners.owner(channel, self._clock.time()) not in (
            None,
            client.name,
        ):
            raise self._taken(client, channel)

    def subscribing(self, channel: str, group: str) -> None:
        """Refuse joining ``group`` on ``channel`` unless allowed; an inbox becomes this
        client's. Each call that returns is paired with one :meth:`unsubscribed`."""
        client = self.client
        if client is None:
            return
        if not client.may_subscribe(channel):
            raise self._no_pattern("subscribe to", channel)
        if is_reply_inbox(channel):  # the group of a private inbox is nobody else's business
            if not self._owners.claim(channel, client.name, self._clock.time()):
                raise self._taken(client, channel)
        elif not client.may_join(group):
            raise PermissionDenied(
                f"client {client.name!r} may not join group {group!r} (on channel "
                f"{channel!r}): its groups patterns {list(client.group_patterns)} do not match "
                "it; add a pattern to the client's groups in the broker's config"
            )

    def unsubscribed(self, channel: str) -> None:
        """A subscription to ``channel`` allowed by :meth:`subscribing` ended."""
        if self.client is not None and is_reply_inbox(channel):
            self._owners.release(channel, self.client.name, self._clock.time())

    def delivered(self, message: Message) -> None:
        """``message`` went to this connection: it may reply to the inbox it names."""
        replyto = message.replyto
        if self.client is not None and replyto is not None and is_reply_inbox(replyto):
            self._grants.grant(replyto, message.deadline_ts(), self._clock.time())

    def _may_reply(self, client: Client, inbox: str) -> bool:
        now = self._clock.time()
        return self._owners.owner(inbox, now) == client.name or self._grants.allows(inbox, now)

    @staticmethod
    def _taken(client: Client, inbox: str) -> PermissionDenied:
        return PermissionDenied(
            f"reply inbox {inbox!r} belongs to another client; client {client.name!r} may not "
            "subscribe to it or declare it. Each process subscribes to an inbox of its own "
            "(_inbox.<instance>, with a fresh instance id)"
        )

    def _no_pattern(self, action: str, channel: str) -> PermissionDenied:
        assert self.client is not None
        return PermissionDenied(
            f"client {self.client.name!r} may not {action} channel {channel!r}; its rights "
            "are the publish / subscribe patterns in the broker's config"
        )
