"""Channel names of one run: every name carries the run's prefix (``FTGO_PREFIX``).

On the embedded broker a run has a fresh data directory and the prefix is
empty; on a shared NATS server each run uses its own prefix, so runs never
read each other's streams, and the demo deletes its streams afterwards.
"""

from __future__ import annotations

import os

__all__ = ["channel", "prefix"]


def prefix() -> str:
    return os.environ.get("FTGO_PREFIX", "")


def channel(name: str) -> str:
    """``name`` with the run's prefix: ``kitchen`` -> ``run42-kitchen``."""
    return f"{prefix()}{name}"
