"""Broker server configuration: tokens, channel rights, limits, the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall import ConfigurationError
from seawall._server.acl import Client, ServerConfig, load_server_config

TOKEN = "orders-token-0123456789"


def test_rights_are_glob_patterns_and_declare_needs_either() -> None:
    client = Client(name="orders", token=TOKEN, publish=("orders.*",), subscribe=("inbox.?",))
    assert client.may_publish("orders.created")
    assert not client.may_publish("orders")
    assert not client.may_publish("Orders.created")  # case sensitive
    assert client.may_subscribe("inbox.7")
    assert not client.may_subscribe("inbox.77")
    assert client.may_declare("orders.x")
    assert client.may_declare("inbox.1")
    assert not client.may_declare("billing")


def test_tokens_never_show_in_reprs() -> None:
    config = ServerConfig(tokens=(Client(name="orders", token=TOKEN),))
    assert TOKEN not in repr(config)
    assert "orders" in repr(config)


def test_authenticate_finds_the_holder_of_a_token_only() -> None:
    a, b = Client(name="a", token="a" * 16), Client(name="b", token="b" * 16)
    config = ServerConfig(tokens=(a, b))
    assert config.authenticate("b" * 16) is b
    assert config.authenticate("b" * 15) is None
    assert config.authenticate(None) is None
    assert not config.open
    assert ServerConfig().open


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"max_message": 4096, "max_frame": 4096}, "leave 1024 bytes"),
        ({"heartbeat": 0.0}, "heartbeat must be"),
        (
            {"tokens": (Client(name="a", token=TOKEN), Client(name="a", token=TOKEN + "x"))},
            "unique",
        ),
        (
            {"tokens": (Client(name="a", token=TOKEN), Client(name="b", token=TOKEN))},
            "share a token",
        ),
    ],
)
def test_configs_that_cannot_work_are_refused(settings: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        ServerConfig(**settings)  # type: ignore[arg-type]


def test_short_tokens_are_refused_without_showing_them() -> None:
    with pytest.raises(ConfigurationError, match="shorter than 16") as info:
        Client(name="ci", token="hunter2")
    assert "hunter2" not in str(info.value)


def test_the_toml_file_gives_limits_and_clients(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(
        f"""
max_frame = 65536
max_message = 32768
heartbeat = 2
auto_create = false

[[client]]
name = "orders"
token = "{TOKEN}"
publish = ["orders", "orders.*"]
subscribe = ["inbox.*"]

[[client]]
name = "billing"
token = "billing-token-0123456789"
"""
    )
    config = load_server_config(path)
    assert (config.max_frame, config.max_message, config.heartbeat) == (65536, 32768, 2)
    assert config.auto_create is False
    orders, billing = config.tokens
    assert orders == Client(
        name="orders", token=TOKEN, publish=("orders", "orders.*"), subscribe=("inbox.*",)
    )
    assert (billing.name, billing.publish, billing.subscribe) == ("billing", (), ())


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("max_frames = 10", r"unknown keys \['max_frames'\]"),
        ("heartbeat = 'soon'", "heartbeat must be a number"),
        ("[[client]]\nname = 'x'", "needs a text 'token'"),
        (f"[[client]]\nname = 'x'\ntoken = '{TOKEN}'\npublish = 'orders'", "list of glob"),
        (f"[[client]]\nname = 'x'\ntoken = '{TOKEN}'\nsubscibe = []", "unknown keys"),
        ("max_frame = ", "not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=complaint) as info:
        load_server_config(path)
    assert str(path) in str(info.value)
    assert TOKEN not in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read broker config .*nope\.toml"):
        load_server_config(tmp_path / "nope.toml")
