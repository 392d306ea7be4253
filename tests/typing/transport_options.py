"""Checked by ``mypy --strict`` (not run by pytest): adapter options keep their types.

The constructors' keyword arguments are typed option by option, so a misspelt
or mistyped one is a type error, not only a ConfigurationError at run time;
each ``type: ignore[...]`` must stay necessary (strict mode warns on unused ones).
"""

from __future__ import annotations

from typing import assert_type

from seawall import Transport, connect
from seawall.transports import (
    EmbeddedOptions,
    EmbeddedTransport,
    MemoryTransport,
    NatsOptions,
    SyncPolicy,
    TransportOptions,
)
from seawall.transports.nats import NatsTransport
from seawall.transports.redis import RedisOptions, RedisTransport


def options_in_code() -> None:
    nats = NatsOptions(replicas=3, publish_timeout=None)
    assert_type(nats.replicas, int)
    assert_type(nats.publish_timeout, float | None)
    assert_type(nats.merged({"ack_wait": 60.0}, where="here"), NatsOptions)
    assert_type(NatsOptions.from_url("nats://h:4222?replicas=3"), NatsOptions)
    assert_type(RedisOptions.from_mapping({"prefix": "shop"}, where="seawall.toml"), RedisOptions)
    sync: SyncPolicy = EmbeddedOptions(sync="always").sync
    assert isinstance(nats, TransportOptions)
    assert sync
    NatsOptions(3)  # type: ignore[call-arg]
    EmbeddedOptions(sync="full")  # type: ignore[arg-type]


def constructors() -> None:
    NatsTransport("nats://h:4222", replicas=3, publish_timeout=None, options=NatsOptions())
    RedisTransport("redis://h/0", prefix="shop", ephemeral_ttl=None, options={"poll": 0.5})
    EmbeddedTransport("./data", sync="none", window=0.01)
    MemoryTransport(serialize=False)
    NatsTransport("nats://h:4222", replica=3)  # type: ignore[call-arg]
    NatsTransport("nats://h:4222", replicas="3")  # type: ignore[arg-type]
    EmbeddedTransport("./data", sync="full")  # type: ignore[arg-type]


def connecting() -> None:
    assert_type(connect("nats://h:4222?replicas=3", options={"ack_wait": 60}), Transport)
    assert_type(connect("memory://", options=NatsOptions()), Transport)
