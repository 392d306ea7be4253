"""Health: is a system alive, is it ready for work, and if not, why.

Part of the runtime layer. :func:`assess` is pure: fed what a
:class:`~seawall.System` knows (whether it runs or drains, its supervisor's
verdict, which consumers are subscribed right now) it returns a
:class:`Health`. *Live* is false once a supervisor gave up (restarting the
process is the cure); *ready* also needs the system running, not draining,
and every consumer and the reply inbox subscribed — a consumer whose link
broke is not subscribed until its supervisor has subscribed it again. The
HTTP probes (``/healthz``, ``/readyz``) of :mod:`seawall.observability`
answer from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import msgspec

from ..discovery import BreakerState

__all__ = ["Health", "Phase", "assess"]

Phase = Literal["stopped", "starting", "running", "draining"]


@dataclass(frozen=True, slots=True)
class Health:
    """A system's health: live, ready, and the reasons when either is false."""

    live: bool
    ready: bool
    reasons: tuple[str, ...] = ()
    breakers: tuple[BreakerState, ...] = ()
    """The circuit breakers the system holds as a caller (an open one is not a reason
    to be unready: the system is fine, a target it calls is not)."""

    def to_dict(self) -> dict[str, object]:
        """As a JSON-able mapping (the probes' body)."""
        body: dict[str, object] = {
            "live": self.live,
            "ready": self.ready,
            "reasons": list(self.reasons),
        }
        if self.breakers:
            body["breakers"] = list(msgspec.to_builtins(self.breakers))
        return body


def assess(
    phase: Phase, gave_up: str | None, unsubscribed: Iterable[str], name: str = "system"
) -> Health:
    """The health of a system in ``phase`` whose supervisor gave up (why) or not (None)."""
    reasons: list[str] = []
    if gave_up is not None:
        reasons.append(gave_up)
    if phase != "running":
        reasons.append(f"{name} is {phase}")
    reasons += [f"{consumer} is not subscribed" for consumer in unsubscribed]
    return Health(live=gave_up is None, ready=not reasons, reasons=tuple(reasons))
