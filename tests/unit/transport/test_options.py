"""Adapter options from a URL query, a TOML table and code: one table of readings for all."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from seawall import ConfigurationError
from seawall._transport.options import TransportOptions, option_text, redact, with_options
from seawall.transports import (
    EmbeddedOptions,
    EmbeddedTransport,
    MemoryOptions,
    MemoryTransport,
    NatsOptions,
    RabbitMQOptions,
    RedisOptions,
    SeawallOptions,
    SeawallTransport,
    connect,
)
from seawall.transports import _options as adapter_options

TOML = "seawall.toml [transport.options]"


# -- a URL query -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "url", "expected"),
    [
        (NatsOptions, "nats://h:4222?replicas=3", {"replicas": 3}),  # int
        (NatsOptions, "nats://h:4222?ack_wait=2.5&lease=4", {"ack_wait": 2.5, "lease": 4.0}),
        (NatsOptions, "nats://h:4222?publish_timeout=none", {"publish_timeout": None}),
        (NatsOptions, "nats://a:4222,nats://b:4222?name=orders%20svc", {"name": "orders svc"}),
        (RedisOptions, "redis://h:6379/0?claim_idle=5&prefix=shop", {"claim_idle": 5.0}),
        (RabbitMQOptions, "amqp://g:g@h:5672/?publish_timeout=1", {"publish_timeout": 1.0}),
        (EmbeddedOptions, "embedded://./data?sync=always", {"sync": "always"}),  # Literal
        (EmbeddedOptions, "embedded://./d?window=0&tail=16", {"window": 0.0, "tail": 16}),
        (MemoryOptions, "memory://?serialize=false", {"serialize": False}),  # bool
        (MemoryOptions, "memory://?serialize=on", {"serialize": True}),
        (SeawallOptions, "seawall://h:4300?name=none&pipeline=8", {"name": None, "pipeline": 8}),
        (NatsOptions, "nats://h:4222?replicas=1&replicas=2", {"replicas": 2}),  # the last wins
    ],
)
def test_a_url_query_is_read_by_the_options_types(
    cls: type[TransportOptions], url: str, expected: dict[str, object]
) -> None:
    options = cls.from_url(url)
    for name, value in expected.items():
        got = getattr(options, name)
        assert got == value, name
        assert type(got) is type(value), name


def test_options_not_in_the_url_keep_their_defaults() -> None:
    assert NatsOptions.from_url("nats://h:4222") == NatsOptions()
    assert NatsOptions.from_url("nats://h:4222?replicas=3").changes() == {"replicas": 3}


def test_the_url_handed_to_the_driver_keeps_only_its_own_keys() -> None:
    values, rest = RedisOptions.read_url("redis://:pw@h:6379/0?prefix=x&socket_timeout=3&db=1")
    assert values == {"prefix": "x"}
    assert rest == "redis://:pw@h:6379/0?socket_timeout=3&db=1"
    _, rest = RabbitMQOptions.read_url("amqp://g:g@h/?heartbeat=5&name=orders")
    assert rest == "amqp://g:g@h/?heartbeat=5"
    _, rest = NatsOptions.read_url("nats://h:4222?replicas=3")
    assert rest == "nats://h:4222"


@pytest.mark.parametrize(
    ("url", "known"),
    [
        ("nats://h:4222?replica=3", "ack_wait, api_timeout, connect_timeout, lease"),
        ("embedded://./data?fsync=always", "retention_interval, sync, tail, window"),
        ("redis://h:6379/0?prefx=a", "redis-py reads "),
        ("amqp://g:g@h/?prefetch=64", "aio-pika reads "),
    ],
)
def test_an_unknown_option_is_refused_with_the_known_ones(url: str, known: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown option") as caught:
        connect(url)
    message = str(caught.value)
    assert repr(url.partition("?")[2].partition("=")[0]) in message  # names the option
    assert known in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://h:4222?replicas=three", "replicas in nats://h:4222 must be a whole number (int)"),
        ("nats://h:4222?ack_wait=soon", "ack_wait in nats://h:4222 must be a number of seconds"),
        ("nats://h:4222?ack_wait=inf", "must be a number of seconds (float), got 'inf'"),
        ("nats://h:4222?ack_wait=none", "ack_wait in nats://h:4222 must be a number of"),
        ("memory://?serialize=maybe", "serialize in memory:// must be true or false (bool)"),
        ("embedded://./d?sync=full", "sync in embedded://./d must be one of always, batch, none"),
        ("redis://h/0?max_message_bytes=1e6", "must be a whole number of bytes (int)"),
    ],
)
def test_a_badly_typed_value_names_the_option_the_url_and_the_type(url: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        connect(url)


def test_a_value_out_of_range_names_the_option_and_where_it_came_from() -> None:
    with pytest.raises(ConfigurationError, match=r"NatsOptions.replicas must be 1 to 5") as caught:
        connect("nats://h:4222?replicas=9")
    assert "(from nats://h:4222)" in str(caught.value)
    with pytest.raises(ConfigurationError, match="ephemeral_ttl must be a positive"):
        connect("redis://h:6379/0?ephemeral_ttl=0")


@pytest.mark.parametrize(
    "url",
    [
        "nats://alice:s3cr3t-pass@h:4222?replicas=three",
        "nats://alice:s3cr3t-pass@a:4222,nats://bob:s3cr3t-pass@b:4222?bogus=1",
        "amqp://guest:s3cr3t-pass@h:5672/?prefetch=1",
        "redis://:s3cr3t-pass@h:6379/0?password=s3cr3t-pass&nope=1",
        "seawall://s3cr3t-pass@h:4300?pipeline=0",
        "seawall://s3cr3t-pass@h:4300?heartbeat=-1",
        "kafka://user:s3cr3t-pass@h:9092",
    ],
)
def test_errors_never_show_credentials(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        connect(url)
    assert "s3cr3t" not in str(caught.value)


def test_redact_drops_user_parts_and_the_query() -> None:
    assert redact("amqp://u:p@h:5672/v?x=1#f") == "amqp://h:5672/v"
    assert redact("nats://u:p@a:1,nats://v:q@b:2?x") == "nats://a:1,nats://b:2"
    assert redact("redis://:p@ss/w@rd@h/0") == "redis://h/0"  # unescaped, still hidden
    assert redact("embedded://./data") == "embedded://./data"


# -- a TOML table --------------------------------------------------------------------------
def test_a_toml_table_gives_typed_values_and_strings_read_as_url_text() -> None:
    options = NatsOptions.from_mapping(
        {"replicas": 3, "ack_wait": 60, "publish_timeout": "none", "name": "orders"}, where=TOML
    )
    assert options == NatsOptions(replicas=3, ack_wait=60.0, publish_timeout=None, name="orders")
    assert type(options.ack_wait) is float  # an integer where a number is wanted


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"replica": 3}, "unknown option 'replica' in seawall.toml"),
        ({"replicas": 2.5}, "replicas in seawall.toml .* must be a whole number .* got 2.5"),
        ({"replicas": True}, "replicas in seawall.toml .* must be a whole number .* got True"),
        ({"replicas": "three"}, "must be a whole number \\(int\\), got 'three'"),
        ({"name": 7}, "name in seawall.toml .* must be text \\(str\\), got 7"),
        ({"replicas": 0}, "replicas must be 1 to 5 .*from seawall.toml"),
    ],
)
def test_a_toml_table_is_checked_like_a_url(table: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        NatsOptions.from_mapping(table, where=TOML)


def test_option_text_reads_back_to_the_same_value() -> None:
    options = SeawallOptions(name=None, heartbeat=2.5, pipeline=3)
    memory = MemoryOptions(serialize=False, publish_timeout=None)
    for value in (options, memory):
        query = "&".join(f"{k}={option_text(v)}" for k, v in dataclasses.asdict(value).items())
        assert type(value).from_url(f"x://h?{query}") == value


def test_with_options_adds_what_the_query_does_not_give() -> None:
    assert with_options("nats://h:4222", {"replicas": 3}) == "nats://h:4222?replicas=3"
    assert with_options("nats://h?replicas=1", {"replicas": 3, "name": "a b"}) == (
        "nats://h?replicas=1&name=a+b"
    )
    assert with_options("memory://", {"serialize": False}) == "memory://?serialize=false"


# -- in code -------------------------------------------------------------------------------
def test_options_are_frozen_keyword_only_and_checked() -> None:
    options = NatsOptions(replicas=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.replicas = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        NatsOptions(3)  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match=r"NatsOptions.replicas must be a whole number"):
        NatsOptions(replicas="3")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"RedisOptions.prefix must be non-empty"):
        RedisOptions(prefix="")


def test_options_then_url_then_keywords_each_override_the_one_before() -> None:
    given = NatsOptions(replicas=3, lease=9.0, ack_wait=7.0)
    chosen, rest = NatsOptions.resolve(
        given, url="nats://h:4222?lease=5&ack_wait=6", settings={"ack_wait": 1.0}
    )
    assert (chosen.replicas, chosen.lease, chosen.ack_wait) == (3, 5.0, 1.0)
    assert rest == "nats://h:4222"


def test_constructors_take_options_their_url_query_and_their_old_keywords(tmp_path: Path) -> None:
    from seawall.transports.nats import NatsTransport
    from seawall.transports.rabbitmq import RabbitMQTransport
    from seawall.transports.redis import RedisTransport

    nats = NatsTransport("nats://h:4222?ack_wait=9", options={"replicas": 3}, lease=4.0)
    assert (nats.replicas, nats.ack_wait, nats.lease, nats.url) == (3, 9.0, 4.0, "nats://h:4222")
    assert nats.options == NatsOptions(replicas=3, ack_wait=9.0, lease=4.0)
    redis = RedisTransport("redis://h/0?prefix=p", options=RedisOptions(poll=1.0), lease=2.0)
    assert (redis.prefix, redis.poll, redis.lease) == ("p", 1.0, 2.0)
    rabbit = RabbitMQTransport("amqp://g:g@h/?name=orders", publish_timeout=None)
    assert (rabbit.name, rabbit.publish_timeout, rabbit.url) == ("orders", None, "amqp://g:g@h/")
    client = SeawallTransport("seawall://h:4300?name=me", pipeline=5)
    assert (client.name, client.options.pipeline, client.where) == ("me", 5, "h:4300")
    embedded = EmbeddedTransport(tmp_path, sync="none", options=EmbeddedOptions(window=0.01))
    assert (embedded.sync, embedded.window) == ("none", 0.01)
    memory = MemoryTransport(max_message_bytes=10, options={"serialize": False})
    assert memory.capabilities.max_message_bytes == 10
    assert not memory.options.serialize


def test_connect_passes_options_as_an_object_or_a_mapping(tmp_path: Path) -> None:
    transport = connect(f"embedded://{tmp_path}?window=0.01", options={"sync": "none"})
    assert isinstance(transport, EmbeddedTransport)
    assert (transport.sync, transport.window) == ("none", 0.01)
    memory = connect("memory://", options=MemoryOptions(default_partitions=4))
    assert isinstance(memory, MemoryTransport)
    assert memory.options.default_partitions == 4
    with pytest.raises(ConfigurationError, match="takes a MemoryOptions or a mapping"):
        connect("memory://", options=NatsOptions())
    with pytest.raises(ConfigurationError, match="names no directory"):
        connect("embedded://?sync=none")


# -- the options classes themselves --------------------------------------------------------
PAIRS = [
    (MemoryOptions, adapter_options.MemorySettings),
    (EmbeddedOptions, adapter_options.EmbeddedSettings),
    (SeawallOptions, adapter_options.SeawallSettings),
    (NatsOptions, adapter_options.NatsSettings),
    (RedisOptions, adapter_options.RedisSettings),
    (RabbitMQOptions, adapter_options.RabbitMQSettings),
]


@pytest.mark.parametrize(("options", "settings"), PAIRS)
def test_the_keyword_arguments_spell_the_same_options(options: type[Any], settings: Any) -> None:
    fields = {f.name: typing.get_type_hints(options)[f.name] for f in dataclasses.fields(options)}
    keywords = typing.get_type_hints(settings)
    if options is RedisOptions:  # None: as if not given, as the constructor always took it
        assert keywords.pop("ephemeral_ttl") == float | None
        fields.pop("ephemeral_ttl")
    assert keywords == fields


@pytest.mark.parametrize(("options", "settings"), PAIRS)
def test_every_option_has_a_default_and_the_defaults_pass_the_checks(
    options: type[TransportOptions], settings: Any
) -> None:
    defaults = options()
    assert defaults.changes() == {}
    assert options.from_mapping(dataclasses.asdict(defaults), where=TOML) == defaults


def test_the_options_classes_are_exported_where_their_adapters_are() -> None:
    import seawall.transports as package
    from seawall.transports import embedded, memory, nats, rabbitmq, redis
    from seawall.transports import seawall as client

    for module, name in [
        (memory, "MemoryOptions"),
        (embedded, "EmbeddedOptions"),
        (client, "SeawallOptions"),
        (nats, "NatsOptions"),
        (redis, "RedisOptions"),
        (rabbitmq, "RabbitMQOptions"),
    ]:
        assert name in module.__all__
        assert name in package.__all__
        assert getattr(module, name) is getattr(package, name)


def test_the_redis_driver_keys_cover_what_redis_py_reads_from_a_url() -> None:
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

    assert set(URL_QUERY_ARGUMENT_PARSERS) <= RedisOptions.driver_keys
    assert not RedisOptions.driver_keys & set(RedisOptions.names())


def test_an_options_class_refuses_a_type_it_cannot_read() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Odd(TransportOptions):
        hosts: list[str] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="float, int, bool, str or Literal"):
        Odd()
