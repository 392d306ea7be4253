"""``seawall channels delete``: asks first, deletes a channel or one group, says what it did."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from seawall import ChannelSpec
from seawall._cli import main
from seawall.testing._conformance import make_message
from seawall.transports.embedded import EmbeddedTransport


def _make(data: Path) -> None:
    """A channel ``orders`` with a message and the groups ``billing`` and ``audit``."""

    async def make() -> None:
        transport = EmbeddedTransport(data)
        await transport.declare(ChannelSpec(name="orders"))
        await transport.publish("orders", make_message(1))
        for group in ("billing", "audit"):
            await (await transport.subscribe("orders", group=group)).close()
        await transport.close()

    asyncio.run(make())


def _groups(data: Path) -> set[str] | None:
    """The groups of ``orders``, or None once the channel is gone."""

    async def read() -> set[str] | None:
        transport = EmbeddedTransport(data)
        broker = await transport.broker()
        channel = broker._channels.get("orders")
        await transport.close()
        return None if channel is None else set(channel.groups)

    return asyncio.run(read())


def test_it_asks_first_and_deletes_nothing_when_told_no(tmp_path: Path) -> None:
    _make(tmp_path)
    url = f"embedded://{tmp_path}"
    result = CliRunner().invoke(main, ["channels", "delete", "orders", "--transport", url], "n\n")
    assert result.exit_code == 1
    assert "Delete channel 'orders' on embedded://" in result.output
    assert "with its messages and every group of it?" in result.output
    assert _groups(tmp_path) == {"billing", "audit"}


def test_yes_deletes_a_group_then_the_channel(tmp_path: Path) -> None:
    _make(tmp_path)
    url = f"embedded://{tmp_path}"
    args = ["channels", "delete", "orders", "--transport", url]
    result = CliRunner().invoke(main, [*args, "--group", "billing", "--yes"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted group 'billing' of channel 'orders' on embedded://")
    assert _groups(tmp_path) == {"audit"}
    result = CliRunner().invoke(main, args, "y\n")
    assert result.exit_code == 0, result.output
    assert "deleted channel 'orders'" in result.output
    assert _groups(tmp_path) is None


def test_a_transport_is_required_and_failures_are_explained(tmp_path: Path) -> None:
    unset = {"SEAWALL_TRANSPORT": None}
    result = CliRunner().invoke(main, ["channels", "delete", "orders", "--yes"], env=unset)
    assert result.exit_code == 2
    assert "--transport" in result.output
    url = "nats://127.0.0.1:1"  # nobody listens there
    result = CliRunner().invoke(main, ["channels", "delete", "orders", "--transport", url, "-y"])
    assert result.exit_code == 1
    assert "could not delete channel 'orders' on nats://127.0.0.1:1" in result.output
