"""``import seawall`` loads the runtime's core; the rest loads when it is first used.

Each check runs in a fresh interpreter: this test process has imported everything already.
A new eager import of one of the modules below (in ``seawall/__init__.py``, a subpackage's
``__init__`` or a runtime module) fails the first test; the issue-14 benchmark
(``python -m benchmarks.instructions``) says what it costs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

LOADED_ON_FIRST_USE = [
    "importlib.metadata",  # seawall.__version__, plugin schemes
    "seawall._broker",  # the memory and embedded brokers
    "seawall._runtime.guarded",  # call policies: the first System start
    "seawall._runtime.health",  # System.health()
    "seawall._runtime.presence",  # the registry channel: the first System start
    "seawall._runtime.supervisor",  # the first System
    "seawall._transport.options",  # adapter options
    "seawall._transport.ownership",  # partitioned channels
    "seawall._wire",
    "seawall.console",
    "seawall.contract",
    "seawall.discovery.channel",
    "seawall.discovery.registry",
    "seawall.discovery.routing",
    "seawall.es",
    "seawall.gateway",
    "seawall.observability",
    "seawall.outbox",
    "seawall.resilience.breaker",
    "seawall.resilience.bulkhead",
    "seawall.resilience.guard",
    "seawall.resilience.policy",
    "seawall.resilience.replies",  # the first command channel's consumer
    "seawall.sagas",
    "seawall.testing",
    "seawall.transports",
    "sqlite3",
]


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_import_seawall_leaves_the_optional_parts_unloaded() -> None:
    out = _fresh(
        f"""
        import json, sys
        import seawall
        print(json.dumps(sorted(m for m in {LOADED_ON_FIRST_USE!r} if m in sys.modules)))
        """
    )
    assert json.loads(out) == []


@pytest.mark.parametrize("package", ["seawall", "seawall.discovery", "seawall.resilience"])
def test_every_exported_name_imports_from_a_fresh_interpreter(package: str) -> None:
    out = _fresh(
        f"""
        import importlib, json
        package = importlib.import_module({package!r})
        found = {{}}
        for name in package.__all__:
            exec(f"from {package} import {{name}} as value")
            found[name] = value is getattr(package, name)
        print(json.dumps([found, sorted(set(package.__all__) - set(dir(package)))]))
        """
    )
    found, missing_from_dir = json.loads(out)
    assert found != {}
    assert [name for name, same in found.items() if not same] == []
    assert missing_from_dir == []


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import seawall
    import seawall.discovery
    import seawall.resilience

    for package in (seawall, seawall.discovery, seawall.resilience):
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            _ = package.Nope


def test_a_system_on_the_default_transport_loads_what_it_needs_on_first_use() -> None:
    out = _fresh(
        """
        import asyncio, json, sys
        import seawall

        class Ping(seawall.Command, frozen=True):
            n: int

        class Pong(seawall.Document, frozen=True):
            n: int

        svc = seawall.Service("pinger")

        @svc.command
        async def ping(cmd: Ping) -> Pong:
            return Pong(n=cmd.n + 1)

        async def main() -> int:
            async with seawall.System(svc) as system:
                reply = await system.context().request("pinger", Ping(n=1), returns=Pong)
                assert system.health().ready
                return reply.n

        n = asyncio.run(main())
        print(json.dumps([n, "seawall.transports.memory" in sys.modules]))
        """
    )
    assert json.loads(out) == [2, True]
