"""Throughput and latency benchmarks of the seawall runtime on the memory transport.

``python -m benchmarks`` (``make bench``) runs, side by side in one process:

(a) an anchor: a bare ``asyncio.Queue`` producer/consumer passing one payload
    object, the ceiling of what one event loop moves;
(b) publish → subscribed handler through the public API, envelope and payload
    encoding included;
(c) sequential request/reply round trips, with their latency percentiles.

It prints a table of median rates against the targets and writes the figures,
with the machine and versions they came from, to ``benchmarks/results/``.
``--profile publish`` (or ``request``) runs one workload under pyinstrument
instead.
"""
