"""Driver errors as seawall errors: the translation every broker adapter does, written once.

An adapter describes its driver once, as an :class:`ErrorMap`: which exception types are
the driver's (``caught``) and, in order, which of them mean what. The meanings are few and
shared by every broker, so their wording is too:

* :func:`lost` — the link broke or the broker did not answer: :class:`ConnectionLost`,
  retried by publishers and answered by subscriptions resubscribing;
* :func:`closed` — the adapter's own connection was closed: :class:`TransportClosed`;
* :func:`denied` — the broker refused this client: :class:`PermissionDenied`;
* anything else — the broker refused the operation: :class:`TransportError`.

``with errors("publishing m-1 to 'orders'"):`` then raises the translated error from the
driver's, so the cause stays in the traceback and the message says what was being done.
Entering and leaving costs about what an empty ``with`` does: the map is consulted only
when something was raised, which keeps it off the cost of every publish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType

from .._exceptions import ConnectionLost, PermissionDenied, TransportClosed, TransportError

__all__ = ["ErrorMap", "Rule", "closed", "denied", "lost", "refused"]

Translate = Callable[[str, BaseException], TransportError]
Rule = tuple[type[BaseException] | tuple[type[BaseException], ...], Translate]
"""Driver exception types, and the seawall error they become (given what was being done)."""


class ErrorMap:
    """One broker's table from driver errors to seawall errors."""

    def __init__(
        self, broker: str, caught: tuple[type[BaseException], ...], rules: Sequence[Rule]
    ) -> None:
        self.broker = broker
        self.caught = caught
        self.rules = tuple(rules)

    def translate(self, what: str, exc: BaseException) -> TransportError:
        """The seawall error for ``exc``, met while doing ``what``."""
        for kinds, make in self.rules:
            if isinstance(exc, kinds):
                return make(what, exc)
        return refused(self.broker)(what, exc)

    def __call__(self, what: str) -> _Translated:
        """A context manager raising the driver's errors met while doing ``what`` as ours."""
        return _Translated(self, what)


class _Translated:
    # A class rather than a generator context manager: every publish and reply enters one.
    __slots__ = ("map", "what")

    def __init__(self, map: ErrorMap, what: str) -> None:
        self.map = map
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and isinstance(exc, self.map.caught):
            raise self.map.translate(self.what, exc) from exc


def lost(broker: str, why: str = "the link broke or it did not answer") -> Translate:
    """The link to ``broker`` is gone for now: retry once it is back."""

    def make(what: str, exc: BaseException) -> TransportError:
        return ConnectionLost(
            f"{what}: {why} ({type(exc).__name__}: {exc}); {broker} is down, unreachable or "
            "electing a leader: retry once it is back"
        )

    return make


def closed(broker: str) -> Translate:
    """This transport's own connection to ``broker`` was closed."""

    def make(what: str, exc: BaseException) -> TransportError:
        return TransportClosed(
            f"{what}: the {broker} connection is closed; connect a new transport"
        )

    return make


def denied(broker: str) -> Translate:
    """``broker`` refused this client (credentials or rights)."""

    def make(what: str, exc: BaseException) -> TransportError:
        return PermissionDenied(f"{what}: {broker} refused this client: {exc}")

    return make


def refused(broker: str) -> Translate:
    """``broker`` refused the operation itself."""

    def make(what: str, exc: BaseException) -> TransportError:
        return TransportError(f"{what}: {broker} refused: {exc!r}")

    return make
