"""What a running system knows of the others: the roster and its routing (sans-IO).

A :class:`Registry` joins a :class:`~seawall.discovery.roster.Roster` (who is
live, who was ever announced) and a :class:`~seawall.discovery.routing.Router`
(this caller's outstanding requests and reply times) behind the two questions
the runtime asks before it sends:

* :meth:`Registry.check`: may a request go to this channel? A channel no
  instance has ever announced (as its service name or as a channel it handles)
  fails at once with :class:`~seawall.UnknownService`; a known one whose
  instances are all gone is fine: the request waits in the channel (location
  transparency). "Ever announced" means heard by this process's roster, which
  replays the known channel (a week of entries, one per instance start and one
  a day while it runs: ``KNOWN_RETENTION``) when it starts; until it has caught
  up (read its own entry back, or listened for one expiry period on a transport
  that cannot replay), nothing is refused, so a fresh caller never refuses a
  service that exists.
* :meth:`Registry.targets`: the channels a routed message goes to.
"""

from __future__ import annotations

from .._clock import Clock
from .._exceptions import UnknownService
from .._transport import is_reply_inbox
from .announcement import Announcement
from .roster import Roster
from .routing import Router, check_route, instance_channel

__all__ = ["Registry"]


class Registry:
    """One process's view of the registry, asked before a request is sent."""

    def __init__(self, clock: Clock, *, host: str = "", roster: Roster | None = None) -> None:
        self.clock = clock
        self.roster = roster or Roster()
        self.router = Router(host=host)
        self._generation = -1

    def check(self, channel: str) -> None:
        """Raise :class:`~seawall.UnknownService` if no instance ever announced ``channel``."""
        roster = self.roster
        if roster.known(channel) or is_reply_inbox(channel):  # the common case: one lookup
            return
        now = self.clock.time()
        if roster.judge(now, channel) == "unknown":
            raise UnknownService(
                f"no instance of a service taking {channel!r} has ever announced itself on "
                "the registry (this process replayed the last week of it and listens to "
                "it); the request was not sent. Check the service name, or start "
                "the service: once it has announced itself, requests to it queue while it is "
                "down"
            )

    def targets(self, channel: str, route: str, key: str | None) -> list[tuple[str, str]]:
        """``(channel, instance)`` pairs to send to for ``route``; ``[(channel, "")]`` to
        use the shared channel (the route is ``shared``, or no instance of a service named
        ``channel`` is live: the message waits there for the next one). An instance's own
        channel takes what its service's command channel takes, so only a service's name
        is routed."""
        chosen = check_route(route)
        if chosen == "shared":
            return [(channel, "")]
        now = self.clock.time()
        live = [e.announcement for e in self.roster.live(now, channel)]  # its command channel
        if self.roster.generation != self._generation:
            self._generation = self.roster.generation
            self.router.forget([a.instance for a in live])
        picked = self.router.pick(chosen, [a for a in live if a.inbox], key)
        if not picked:
            return [(channel, "")]
        return [(a.inbox, a.instance) for a in picked]

    def live(self, service: str | None = None) -> list[Announcement]:
        """The live instances (of ``service``)."""
        return [e.announcement for e in self.roster.live(self.clock.time(), service)]

    @staticmethod
    def inbox(service: str, instance: str) -> str:
        """The channel of one instance of a service."""
        return instance_channel(service, instance)
