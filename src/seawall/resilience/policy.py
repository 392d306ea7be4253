"""Call policies: how a caller protects itself when it sends to or asks a target.

A :class:`CallPolicy` names a deadline, a limit on outstanding calls (and
whether the call past it waits or is shed), a circuit breaker, a retry
schedule for requests and the routing strategy that picks the instance a
call goes to (:mod:`seawall.discovery.routing`). :class:`Policies` holds a
system-wide default and one policy per target (a service's command channel, or
any channel); a call may bring its own on top. Layers combine field by field: a field left ``None``
is taken from the layer below, so a per-target policy that only sets
``max_outstanding`` keeps the default's breaker. A routed call (one instance
picked) is a call to its service, under the service's policy, breaker and
bulkhead; a call addressed to an instance's own channel (``orders.@<instance>``)
takes its service's policy too, unless that channel has one of its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from .._exceptions import ConfigurationError
from .._messages.envelope import RETRY_HEADER
from .._transport.routes import Route, check_route, service_of
from .breaker import BreakerPolicy

__all__ = ["RETRY_HEADER", "CallPolicy", "Overflow", "Policies", "RequestRetry"]


Overflow = Literal["wait", "shed"]
"""What the call past ``max_outstanding`` does: wait for a slot within its deadline, or
fail at once with :class:`~seawall.Overloaded`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestRetry:
    """Retries of a request that got no reply in time: same message id, backoff between.

    The responder keeps the replies it gave by request id and answers a repeat
    from there, so a retried request runs its handler once.
    """

    attempts: int = 3
    """Sends in all, the first one included."""
    attempt_timeout: float = 1.0
    """Seconds to wait for a reply to one send before the next (within the call's deadline)."""
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.attempt_timeout <= 0:
            raise ConfigurationError(
                f"RequestRetry: need attempts >= 1 and attempt_timeout > 0, got "
                f"{self.attempts} and {self.attempt_timeout}"
            )
        if not 0 <= self.initial_backoff <= self.max_backoff or not 0 <= self.jitter < 1:
            raise ConfigurationError(
                f"RequestRetry: need 0 <= initial_backoff <= max_backoff and 0 <= jitter < 1, "
                f"got {self.initial_backoff}, {self.max_backoff}, {self.jitter}"
            )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after send number ``attempt`` (1-based) got no reply."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1 + self.jitter * (2 * self.random() - 1)))


@dataclass(frozen=True, kw_only=True, slots=True)
class CallPolicy:
    """How calls to a target are protected; ``None`` fields come from the layer below."""

    timeout: float | None = None
    """Seconds a request waits for its reply in all (the call's deadline)."""
    max_outstanding: int | None = None
    """Calls to the target in flight at once from this process (a bulkhead)."""
    overflow: Overflow | None = None
    """What the call past ``max_outstanding`` does (default ``"wait"``)."""
    breaker: BreakerPolicy | None = None
    retry: RequestRetry | None = None
    domain_errors: tuple[str, ...] | None = None
    """Error type names (a remote handler's exception class) that are answers, not
    failures of the target: they do not count against its breaker."""
    route: Route | None = None
    """How ``ctx.request`` and ``ctx.send`` without ``route=`` pick the instance (default
    ``"shared"``: the broker's choice on the service's shared channel); see
    :mod:`seawall.discovery.routing`. ``"sticky"`` needs each call's ``key=``;
    ``"broadcast"`` is a per-call choice only."""

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(f"CallPolicy timeout must be positive, got {self.timeout}")
        if self.max_outstanding is not None and self.max_outstanding < 1:
            raise ConfigurationError(
                f"CallPolicy max_outstanding must be at least 1, got {self.max_outstanding}"
            )
        if self.overflow not in (None, "wait", "shed"):
            raise ConfigurationError(
                f"CallPolicy overflow={self.overflow!r}: say 'wait' (for a slot, within the "
                "deadline) or 'shed' (fail at once with Overloaded)"
            )
        if isinstance(self.domain_errors, str):
            raise ConfigurationError(
                f"CallPolicy domain_errors takes a tuple of error type names, got the string "
                f"{self.domain_errors!r}; write ({self.domain_errors!r},)"
            )
        if self.route is not None:
            _check_policy_route(self.route)

    def over(self, below: CallPolicy) -> CallPolicy:
        """This policy on top of ``below``: each field of this one unless it is None."""
        values = {}
        for each in fields(self):
            mine = getattr(self, each.name)
            values[each.name] = getattr(below, each.name) if mine is None else mine
        return CallPolicy(**values)

    @property
    def guarded(self) -> bool:
        """Whether calls under it need a guard (a breaker or a bulkhead)."""
        return self.breaker is not None or self.max_outstanding is not None


@dataclass(frozen=True, kw_only=True)
class Policies:
    """A system's call policies: the default, and one per target channel on top of it."""

    default: CallPolicy = field(default_factory=CallPolicy)
    targets: Mapping[str, CallPolicy] = field(default_factory=dict)
    _routes: dict[str, Route | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.default, CallPolicy):
            raise ConfigurationError(
                f"Policies default is a {type(self.default).__name__}; give a CallPolicy"
            )
        for name, policy in self.targets.items():
            if not isinstance(policy, CallPolicy):
                raise ConfigurationError(
                    f"Policies targets[{name!r}] is a {type(policy).__name__}; give a CallPolicy"
                )

    def for_target(self, target: str) -> CallPolicy:
        """The policy of calls to ``target``: its own on top of the default (an instance
        channel without one of its own: its service's)."""
        own = self.targets.get(target)
        if own is None and (service := service_of(target)) is not None:
            own = self.targets.get(service)
        return self.default if own is None else own.over(self.default)

    @property
    def routes(self) -> bool:
        """Whether any policy names a routing strategy other than the shared channel."""
        return any(p.route not in (None, "shared") for p in (self.default, *self.targets.values()))

    def route_for(self, target: str) -> Route | None:
        """The routing strategy of calls to ``target`` without ``route=`` (None: shared)."""
        try:
            return self._routes[target]
        except KeyError:
            route = self.for_target(target).route
            found = self._routes[target] = None if route == "shared" else route
            return found


def _check_policy_route(route: object) -> None:
    """A policy's route: a known strategy that applies to every call (not broadcast)."""
    check_route(route, "CallPolicy route")
    if route == "broadcast":
        raise ConfigurationError(
            "CallPolicy route='broadcast' would send every call to every instance and a "
            "request takes one reply; broadcast per call instead: ctx.send(..., "
            "route='broadcast') or ctx.gather(..., route='broadcast')"
        )
