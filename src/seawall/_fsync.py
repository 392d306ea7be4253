"""The fsync policy: one vocabulary for when an acknowledged write reaches the disk.

Below every layer that stores something: the embedded broker's store
(:mod:`seawall._broker.store`), the embedded transport and ``seawall broker
--sync``, ``seawall.toml``, and the event stores of :mod:`seawall.es` read a
policy with :func:`parse_sync` and nothing else.

``always``
    fsynced before the acknowledgement, each commit on its own.
``batch``
    fsynced before the acknowledgement, commits gathered so many writes share
    one fsync (the embedded broker waits up to its ``window`` for company; an
    event store shares the fsync among the appends that arrived meanwhile,
    which is what it does under ``always`` too).
``none``
    not fsynced before the acknowledgement: a crash (of the broker process, or
    of the machine for an event store) may lose the last acknowledged writes,
    never damage what was synced before.

The SQLite event store said ``full`` and ``normal`` before (after SQLite's
``PRAGMA synchronous``); those old spellings are still read, as ``always``
and ``none``, where they were accepted (``old_spellings=True``).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from ._exceptions import ConfigurationError

__all__ = ["OLD_SPELLINGS", "SYNC_POLICIES", "SyncPolicy", "parse_sync"]

SyncPolicy = Literal["always", "batch", "none"]
"""When an acknowledged write is fsynced; see the module docstring."""

SYNC_POLICIES: Final[tuple[SyncPolicy, ...]] = get_args(SyncPolicy)

OLD_SPELLINGS: Final[dict[str, SyncPolicy]] = {"full": "always", "normal": "none"}
"""The SQLite event store's words for the same policies, still accepted there."""


def parse_sync(value: object, *, where: str, old_spellings: bool = False) -> SyncPolicy:
    """``value`` as a policy, or a :class:`ConfigurationError` naming ``where`` it came from."""
    if old_spellings and isinstance(value, str):
        value = OLD_SPELLINGS.get(value, value)
    for policy in SYNC_POLICIES:
        if value == policy:
            return policy
    raise ConfigurationError(
        f"{where}: sync must be one of {', '.join(SYNC_POLICIES)} "
        f"(fsync before each acknowledgement, before it in shared batches, or not before it); "
        f"got {value!r}"
    )
