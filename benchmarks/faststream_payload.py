"""The benchmark payload as FastStream users declare it.

FastStream decodes a message body through pydantic, so its handlers take this
model where seawall's take :class:`benchmarks.workloads.Reading`; the fields
are the same. Imported only by the modules that run FastStream beside seawall.
"""

from __future__ import annotations

import pydantic

__all__ = ["ReadingModel"]


class ReadingModel(pydantic.BaseModel):
    """The ~100-byte reading, decoded and validated by pydantic."""

    sensor: str
    seq: int
    value: float
    unit: str
    site: str
