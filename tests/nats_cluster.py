"""A private 3-node NATS JetStream cluster of a test's own, for the fail-over tests.

Each node is a real ``nats-server`` process on ports from :func:`tests.brokers.free_port`,
with its JetStream store under the test's ``tmp_path``; the tests SIGKILL one node (a
stream leader, the node holding the lease bucket) and start it again on the same store.
:meth:`Cluster.stop` ends every node this helper started, by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

from tests.brokers import free_port

__all__ = ["Cluster", "NATS_SERVER"]

NATS_SERVER = "/usr/sbin/nats-server"


class Node:
    """One node: its name, client and route ports, and store directory."""

    def __init__(self, name: str, store: Path) -> None:
        self.name = name
        self.port = free_port()
        self.route = free_port()
        self.store = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, routes: list[str]) -> None:
        command = [
            NATS_SERVER,
            *("-a", "127.0.0.1", "-p", str(self.port), "-n", self.name),
            *("-js", "-sd", str(self.store)),
            *("--cluster_name", "seawall-failover", "--cluster", f"nats://127.0.0.1:{self.route}"),
            *("--routes", ",".join(routes)),
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or peers."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


class Cluster:
    """Three JetStream nodes routed to each other."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.nodes = [Node(f"n{i}", root / f"n{i}") for i in range(size)]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (a client fails over between them)."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, node: Node | None = None) -> None:
        for each in self.nodes if node is None else [node]:
            others = [f"nats://127.0.0.1:{n.route}" for n in self.nodes if n is not each]
            each.start(others)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    async def ready(self, timeout: float = 30.0) -> None:
        """Return once JetStream answers on every running node (a meta leader is elected)."""
        import nats
        import nats.errors

        async with asyncio.timeout(timeout):
            for node in self.nodes:
                if node.proc is None:
                    continue
                while True:
                    with contextlib.suppress(OSError, nats.errors.Error):
                        client = await nats.connect(
                            node.url, allow_reconnect=False, connect_timeout=1
                        )
                        try:
                            await client.jetstream().account_info()
                            break
                        finally:
                            await client.close()
                    await asyncio.sleep(0.1)

    async def leader(self, stream: str, timeout: float = 20.0) -> str:
        """The name of the node leading ``stream``'s replicas, once one is elected."""
        import nats
        import nats.errors

        client = await nats.connect(self.url.split(","))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with contextlib.suppress(nats.errors.Error):  # not made yet, or electing
                        info = await client.jetstream().stream_info(stream)
                        if info.cluster is not None and info.cluster.leader is not None:
                            return info.cluster.leader
                    await asyncio.sleep(0.1)
        finally:
            await client.close()
