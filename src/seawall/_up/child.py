"""One service instance under ``seawall up``: ``python -m seawall._up.child MODULE:ATTR``.

Part of the edges layer. It runs the target like ``seawall run`` does and, on
the side, writes its counters to a small JSON status file (``SEAWALL_UP_STATUS``)
a few times a second, replaced atomically, so the supervising process can show
them without a second channel to the child. Once the services have subscribed,
the file says ``"ready": true``. The file also holds each endpoint's snapshot
(:mod:`seawall.observability.metrics`), with handler timings when ``seawall up
--metrics`` asked for them (``SEAWALL_UP_METRICS``), so the supervisor serves one
``/metrics`` for every child; ``SEAWALL_LOG_FORMAT=json`` makes its log lines
JSON. A gateway unit (``listen`` in its ``seawall.toml`` table, passed as
``SEAWALL_GATEWAY_LISTEN``) loads a :class:`seawall.gateway.Gateway` instead and
serves it over HTTP while its system runs. SIGTERM or SIGINT drain the services, and so
does the death of ``seawall up`` itself (:mod:`seawall._up.lifeline`: the
child holds the pipe named by ``SEAWALL_UP_LIFELINE``); a system whose own
supervisor gave up ends the process with status 1, so ``seawall up`` restarts it;
a target that does not load ends it with status 78 (``EXIT_UNLOADABLE``), the
error alone on stderr, so that ``seawall up`` shows it and restarts nothing. A
second Ctrl-C (SIGINT) ends the process at once (:mod:`seawall._runtime.interrupts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError, SeawallError
from .._runtime.interrupts import interrupts
from .._runtime.system import System
from .._runtime.target import load_system
from ..observability.http import parse_listen
from ..observability.logs import LEVELS, LogContext, configure_logging
from ..observability.metrics import Metrics, snapshot
from .exits import EXIT_UNLOADABLE
from .lifeline import hold
from .processes import KILL_MARGIN, InstanceReport, write_report

__all__ = ["main", "serve"]

log = logging.getLogger("seawall.up")

REPORT_INTERVAL = 0.2


def _report(system: System, metrics: Metrics | None = None) -> InstanceReport:
    stats = system.stats().values()
    return InstanceReport(
        pid=os.getpid(),
        ready=True,
        handled=sum(s.handled for s in stats),
        failed=sum(s.failed for s in stats),
        retried=sum(s.retried for s in stats),
        dead_lettered=sum(s.dead_lettered for s in stats),
        endpoints=snapshot(system, metrics),
    )


async def serve(
    system: System,
    status: Path | None,
    metrics: Metrics | None = None,
    http: tuple[Any, str] | None = None,
) -> int:
    """Run ``system`` until a signal (0) or until its supervisor gives up (1).

    ``http``: a gateway unit's ASGI application and ``HOST:PORT``, served while the
    system runs (and stopped before it drains).
    """
    stop = asyncio.Event()
    code = 0
    second = f"{system.instance}: a second Ctrl-C: exiting now, without draining"
    with interrupts(stop.set, second=second):
        async with system, contextlib.AsyncExitStack() as stack:
            if http is not None:
                from ..gateway import serving

                host, port = parse_listen(http[1])
                await stack.enter_async_context(serving(http[0], host, port))
            log.info("%s subscribed: %s", system.instance, ", ".join(system.stats()))
            while not stop.is_set():
                if status is not None:
                    write_report(status, _report(system, metrics))
                if not system.healthy:
                    code = 1
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REPORT_INTERVAL)
    if status is not None and code == 0:
        write_report(status, _report(system, metrics))
    return code


def main(argv: list[str]) -> int:
    """Entry point: ``MODULE:ATTR``; settings from the environment ``seawall up`` gives it."""
    level = os.environ.get("SEAWALL_LOG_LEVEL", "WARNING").upper()
    json_logs = os.environ.get("SEAWALL_LOG_FORMAT") == "json"
    prefix = f"{os.environ.get('SEAWALL_UP_INSTANCE', '?')} "
    configure_logging(
        level if level in LEVELS else "WARNING", "json" if json_logs else "text", prefix=prefix
    )
    if len(argv) != 1:
        print("usage: python -m seawall._up.child MODULE:ATTR", file=sys.stderr)
        return 2
    lifeline = os.environ.pop("SEAWALL_UP_LIFELINE", None)  # the fd is not for grandchildren
    grace = float(os.environ.get("SEAWALL_GRACE", "5"))
    if lifeline is not None:
        hold(int(lifeline), backstop=grace + KILL_MARGIN)
    sys.path.insert(0, ".")
    status = os.environ.get("SEAWALL_UP_STATUS")
    listen = os.environ.get("SEAWALL_GATEWAY_LISTEN")
    http = None
    try:
        transport = os.environ.get("SEAWALL_TRANSPORT", "memory://")
        instance = os.environ.get("SEAWALL_UP_ID")
        if listen:  # a gateway unit
            from ..gateway._load import load_gateway

            gateway, system = load_gateway(
                argv[0], transport=transport, grace=grace, instance=instance
            )
            http = (gateway.app(system), listen)
        else:
            system = load_system(argv[0], transport=transport, grace=grace, instance=instance)
    except ConfigurationError as exc:
        print(exc, file=sys.stderr, flush=True)  # seawall up shows it on its terminal
        return EXIT_UNLOADABLE
    try:
        metrics = Metrics() if os.environ.get("SEAWALL_UP_METRICS") else None
        if metrics is not None:
            system.use(metrics)
        if json_logs:
            system.use(LogContext())
        return asyncio.run(serve(system, Path(status) if status else None, metrics, http))
    except SeawallError as exc:
        log.error("%s: %s", argv[0], exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
