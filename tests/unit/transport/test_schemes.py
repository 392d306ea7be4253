"""connect() as a scheme table: built-ins imported by name, plugins through entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import seawall
from seawall import Command, ConfigurationError, Document, Service, System
from seawall._transport.schemes import BUILTIN, ENTRY_POINT_GROUP, options_type, schemes
from seawall.transports import EmbeddedOptions, NatsOptions, connect

TOY = '''
"""A third-party adapter, as a package outside seawall would ship it."""

from dataclasses import dataclass

from seawall.transports import MemoryTransport, TransportOptions

made = []


@dataclass(frozen=True, kw_only=True)
class ToyOptions(TransportOptions):
    colour: str = "grey"
    partitions: int = 1


class ToyTransport(MemoryTransport):
    """The memory transport under another name, remembering what it was built with."""

    options_type = ToyOptions

    def __init__(self, url, *, clock=None, options=None):
        chosen, self.url = ToyOptions.resolve(options, url=url)
        super().__init__(clock=clock, default_partitions=chosen.partitions)
        self.toy = chosen
        made.append(self)


def broken(url, *, clock=None, options=None):
    return "not a transport"
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A distribution ``toy`` on sys.path whose entry points add ``toy://`` and others."""
    (tmp_path / "toy_transport.py").write_text(TOY)
    info = tmp_path / "toy_transport-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-transport\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "toy = toy_transport:ToyTransport\n"
        "bent = toy_transport:broken\n"
        "gone = toy_transport_missing:Transport\n"
        "nats = toy_transport:ToyTransport\n"  # a built-in scheme: the built-in wins
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__("toy_transport")
    sys.modules.pop("toy_transport", None)


class Ping(Command):
    type_name = "toy.Ping"
    n: int


class Pong(Document):
    type_name = "toy.Pong"
    n: int


def pinger() -> Service:
    service = Service("pinger")

    @service.command
    async def ping(command: Ping) -> Pong:
        return Pong(n=command.n + 1)

    return service


async def test_a_plugin_scheme_runs_a_system(toy: object) -> None:
    async with System(pinger(), transport="toy://here?colour=red&partitions=2") as system:
        reply = await system.context().request("pinger", Ping(n=1), returns=Pong, timeout=5)
    assert reply == Pong(n=2)
    [made] = toy.made  # type: ignore[attr-defined]
    assert (made.toy.colour, made.toy.partitions, made.url) == ("red", 2, "toy://here")


def test_a_plugin_takes_its_options_from_the_url_a_mapping_or_refuses_them(toy: object) -> None:
    transport = connect("toy://", options={"colour": "blue"})
    assert transport.toy.colour == "blue"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"unknown option 'shade'.*colour, partitions"):
        connect("toy://?shade=dark")
    assert options_type("toy://").__name__ == "ToyOptions"  # type: ignore[union-attr]


def test_the_known_schemes_include_the_plugins(toy: object) -> None:
    known = schemes()
    assert known["toy"] == "toy_transport:ToyTransport"
    assert known["nats"] == "seawall.transports.nats:NatsTransport"
    with pytest.raises(ConfigurationError, match="no transport for URL 'kafka://h:9092'") as caught:
        connect("kafka://h:9092")
    assert "amqp, amqps, bent, embedded, gone, memory, nats" in str(caught.value)
    assert "toy" in str(caught.value)
    assert ENTRY_POINT_GROUP in str(caught.value)


def test_a_built_in_scheme_wins_over_a_plugin_of_the_same_name(toy: object) -> None:
    assert type(connect("nats://127.0.0.1:4222")).__name__ == "NatsTransport"
    assert options_type("nats://h") is NatsOptions


def test_a_plugin_that_cannot_load_or_builds_no_transport_is_a_clear_error(toy: object) -> None:
    with pytest.raises(ConfigurationError, match=r"gone:// is toy_transport_missing:Transport"):
        connect("gone://x")
    with pytest.raises(ConfigurationError, match="bent:// returned str, not a Transport"):
        connect("bent://x")


def test_every_built_in_scheme_names_a_factory_and_an_options_class() -> None:
    assert options_type("embedded://./data") is EmbeddedOptions
    for scheme, (factory, _options) in BUILTIN.items():
        assert factory.startswith("seawall.transports."), scheme
        assert options_type(f"{scheme}://h") is not None, scheme


@pytest.mark.parametrize(
    "module", ["seawall", "seawall._runtime.system", "seawall._transport.schemes"]
)
def test_importing_seawall_imports_no_broker_client(module: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import {module}
        clients = ("nats", "aio_pika", "aiormq", "redis", "seawall.transports.nats",
                   "seawall.transports.redis", "seawall.transports.rabbitmq")
        print(sorted(m for m in clients if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_runtime_and_the_scheme_table_import_no_adapter_module() -> None:
    src = Path(seawall.__file__).parent
    for path in [*(src / "_runtime").glob("*.py"), *(src / "_transport").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "transports" not in (node.module or ""), f"{path.name} imports {node.module}"
