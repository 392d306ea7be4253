"""One workload under pyinstrument: where the time per message goes.

The profiler samples the whole thread (``async_mode="disabled"``), so the
event loop's own scheduling shows next to seawall's code. pyinstrument comes
with the ``dev`` extra and is imported only here.
"""

from __future__ import annotations

import asyncio
import gc

from .workloads import Settings, Workload

__all__ = ["profile"]


def profile(workload: Workload, settings: Settings, *, flat: bool = False) -> str:
    """Run ``workload`` once under the profiler and return the text report."""
    from pyinstrument import Profiler

    asyncio.run(workload(settings))  # warm-up, unprofiled
    gc.collect()
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    try:
        asyncio.run(workload(settings))
    finally:
        profiler.stop()
    return profiler.output_text(unicode=True, flat=flat, time="percent_of_total")
