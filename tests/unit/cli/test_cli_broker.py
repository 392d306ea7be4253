"""``seawall broker`` as a real process: clients share it, tokens hold, data survives kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.broker_process import ROOT, start_broker, stop
from tests.brokers import free_port

from seawall import ConfigurationError, PermissionDenied
from seawall._cli.broker import broker_options
from seawall.testing._conformance import Inbox, ids, make_message
from seawall.transports import EmbeddedOptions, connect

TOKEN = "orders-secret-token-0123456789"


async def test_clients_share_the_broker_and_acked_messages_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc = start_broker(data, port)
    url = f"seawall://127.0.0.1:{port}"
    messages = [make_message(i) for i in range(50)]
    try:
        producer = connect(url)
        for message in messages:
            await producer.publish("jobs", message)
        await producer.close()
    finally:
        stop(proc, signal.SIGKILL)

    proc = start_broker(data, port)
    try:
        consumer = connect(url)
        sub = await consumer.subscribe("jobs", group="workers")
        async with Inbox(sub, patience=5.0) as inbox:
            got = await inbox.collect(len(messages))
        assert ids(got) == ids(messages)
        await consumer.close()
    finally:
        err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err


async def test_tokens_and_channel_rights_come_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        f'[[client]]\nname = "orders"\ntoken = "{TOKEN}"\npublish = ["orders.*"]\n'
        'subscribe = ["orders.*"]\n'
    )
    port = free_port()
    proc = start_broker(tmp_path / "data", port, "--config", str(config))
    try:
        allowed = connect(f"seawall://{TOKEN}@127.0.0.1:{port}")
        await allowed.publish("orders.created", make_message(1))
        with pytest.raises(PermissionDenied):
            await allowed.publish("payments", make_message(2))
        await allowed.publish("orders.created", make_message(3))  # the link goes on
        await allowed.close()
        stranger = connect(f"seawall://127.0.0.1:{port}")
        with pytest.raises(PermissionDenied):
            await asyncio.wait_for(stranger.publish("orders.created", make_message(4)), 5)
        await stranger.close()
    finally:
        err = stop(proc, signal.SIGTERM)
    assert TOKEN not in err, "a secret reached the broker's log"


def test_bad_listen_address_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "seawall", "broker", "--data", str(tmp_path), "--listen", "nowhere"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "--listen takes HOST:PORT" in out.stderr


def test_broker_options_come_from_option_pairs_with_sync_over_them() -> None:
    options = broker_options(("window=0.01", "tail = 64", "sync=none"), "always")
    assert options == EmbeddedOptions(window=0.01, tail=64, sync="always")
    assert broker_options((), None) == EmbeddedOptions()
    with pytest.raises(ConfigurationError, match="takes NAME=VALUE"):
        broker_options(("window",), None)
    with pytest.raises(ConfigurationError, match="unknown option 'windw' in seawall broker"):
        broker_options(("windw=1",), None)
    with pytest.raises(ConfigurationError, match="max_message in the --config file"):
        broker_options(("max_message_bytes=10",), None)


async def test_the_broker_runs_with_its_options(tmp_path: Path) -> None:
    port = free_port()
    proc = start_broker(tmp_path / "data", port, "--sync", "none", "--option", "window=0.01")
    try:
        client = connect(f"seawall://127.0.0.1:{port}")
        await client.publish("jobs", make_message(1))
        await client.close()
    finally:
        err = stop(proc, signal.SIGTERM)
    assert "stopped cleanly" in err


def test_a_bad_broker_option_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "seawall", "broker", "--data", str(tmp_path)]
    command += ["--listen", "127.0.0.1:0", "--option", "window=soon"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "window in seawall broker --option must be a number of seconds" in out.stderr
