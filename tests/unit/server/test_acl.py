"""Broker server configuration: tokens, channel rights, limits, the TOML file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seawall import ConfigurationError
from seawall._server.acl import Client, ServerConfig, load_server_config

TOKEN = "orders-token-0123456789"
README = Path(__file__).resolve().parents[3] / "README.md"


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


def test_groups_default_to_the_client_s_own_name() -> None:
    client = Client(name="orders", token=TOKEN)
    assert client.group_patterns == ("orders",)
    assert client.may_join("orders")
    assert not client.may_join("orders-eu")
    assert not client.may_join("billing")
    assert not Client(name="orders", token=TOKEN, groups=()).may_join("orders")


def test_groups_are_glob_patterns() -> None:
    client = Client(name="orders", token=TOKEN, groups=("orders", "orders-*"))
    assert client.may_join("orders-eu")
    assert not client.may_join("Orders-eu")
    assert not client.may_join("billing")


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"max_message": 4096, "max_frame": 4096}, "leave 1024 bytes"),
        ({"heartbeat": 0.0}, "heartbeat must be"),
        ({"hello_timeout": 0.0}, "hello_timeout must be"),
        ({"hello_timeout": 301.0}, "hello_timeout must be"),
        ({"max_connections": 0}, "max_connections must be at least 1"),
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


def test_tokens_a_hello_cannot_carry_are_refused_without_showing_them() -> None:
    token = "x" * 1025
    with pytest.raises(ConfigurationError, match="longer than 1024 bytes") as info:
        Client(name="ci", token=token)
    assert token not in str(info.value)


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"groups": ("orders", "")}, "empty or non-text pattern"),
        ({"max_connections": 0}, "'ci': max_connections must be at least 1"),
    ],
)
def test_client_entries_that_cannot_work_are_refused(
    settings: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        Client(name="ci", token=TOKEN, **settings)  # type: ignore[arg-type]


def test_the_readme_s_example_config_loads(tmp_path: Path) -> None:
    section = README.read_text().split("### The broker server", 1)[1]
    [example] = re.findall(r"```toml\n(.*?)```", section.split("\n### ", 1)[0], flags=re.S)
    path = tmp_path / "broker.toml"
    path.write_text(example)
    config = load_server_config(path)
    [orders] = config.tokens
    assert orders.may_publish("_inbox.0190c4d2")
    assert orders.may_subscribe("_inbox.0190c4d2")
    assert orders.may_join("orders")


def test_the_toml_file_gives_limits_and_clients(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(
        f"""
max_frame = 65536
max_message = 32768
heartbeat = 2
auto_create = false
hello_timeout = 2.5
max_connections = 50

[[client]]
name = "orders"
token = "{TOKEN}"
publish = ["orders", "orders.*"]
subscribe = ["inbox.*"]
groups = ["orders", "orders-*"]
max_connections = 4

[[client]]
name = "billing"
token = "billing-token-0123456789"
"""
    )
    config = load_server_config(path)
    assert (config.max_frame, config.max_message, config.heartbeat) == (65536, 32768, 2)
    assert config.auto_create is False
    assert (config.hello_timeout, config.max_connections) == (2.5, 50)
    orders, billing = config.tokens
    assert orders == Client(
        name="orders",
        token=TOKEN,
        publish=("orders", "orders.*"),
        subscribe=("inbox.*",),
        groups=("orders", "orders-*"),
        max_connections=4,
    )
    assert (billing.name, billing.publish, billing.subscribe) == ("billing", (), ())
    assert (billing.groups, billing.max_connections) == (None, None)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("max_frames = 10", r"unknown keys \['max_frames'\]"),
        ("heartbeat = 'soon'", "heartbeat must be a number"),
        ("max_connections = true", "max_connections must be a whole number"),
        ("hello_timeout = '5s'", "hello_timeout must be a number"),
        (f"[[client]]\nname = 'x'\ntoken = '{TOKEN}'\ngroups = 'x'", "groups must be a list"),
        (
            f"[[client]]\nname = 'x'\ntoken = '{TOKEN}'\nmax_connections = 1.5",
            "max_connections must be a whole number",
        ),
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
