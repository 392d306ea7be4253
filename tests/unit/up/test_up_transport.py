"""seawall.toml's [transport] table: the adapter's options, checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall import ConfigurationError
from seawall._up.config import load_up_config, parse_up_config
from seawall._up.processes import Up
from seawall.transports import EmbeddedOptions, NatsOptions

SERVICE = '[services.a]\ntarget = "m:a"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "seawall.toml"
    path.write_text(text + SERVICE)
    return load_up_config(path)


def test_a_url_with_a_table_of_options_gives_the_services_one_url(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[transport]\nurl = "nats://127.0.0.1:4222?ack_wait=9"\n'
        '[transport.options]\nreplicas = 3\npublish_timeout = "none"\nack_wait = 60\n',
    )
    url = config.transport  # type: ignore[attr-defined]
    assert url == "nats://127.0.0.1:4222?ack_wait=9&replicas=3&publish_timeout=none"
    options = NatsOptions.from_url(url)  # as every service process reads it
    assert (options.replicas, options.publish_timeout, options.ack_wait) == (3, None, 9.0)


def test_the_string_form_still_works(tmp_path: Path) -> None:
    config = load(tmp_path, 'transport = "nats://127.0.0.1:4222?replicas=2"\n')
    assert config.transport == "nats://127.0.0.1:4222?replicas=2"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            '[transport]\nurl = "nats://h:4222"\n[transport.options]\nreplica = 3\n',
            r"unknown option 'replica' in \[transport.options\]; the options of NatsOptions are "
            "ack_wait, api_timeout",
        ),
        (
            '[transport]\nurl = "nats://h:4222"\n[transport.options]\nreplicas = "three"\n',
            r"replicas in \[transport.options\] must be a whole number \(int\), got 'three'",
        ),
        (
            '[transport]\nurl = "nats://h:4222?replica=1"\n[transport.options]\nreplicas = 3\n',
            "unknown option 'replica' in nats://h:4222",
        ),
        ('[transport]\nurl = "nats://h:4222"\noptions = 3\n', "transport.options must be a table"),
        ('[transport]\nuri = "nats://h:4222"\n', "unknown key transport.uri"),
        ('[transport]\nurl = "nats"\n', "is not a URL"),
        ('[transport]\nurl = "kafka://h"\n[transport.options]\na = 1\n', "no transport for URL"),
        ('[transport.options]\nfsync = "always"\n', "unknown option 'fsync'.*EmbeddedOptions"),
        ('sync = "full"\n', "sync must be one of always, batch, none"),
        ('sync = "none"\n[transport.options]\nsync = "none"\n', "sync is given twice"),
        ("[transport.options]\nmax_message_bytes = 10\n", "max_message_bytes cannot be set"),
    ],
)
def test_transport_mistakes_name_the_file_and_the_option(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(ConfigurationError, match=error) as caught:
        load(tmp_path, text)
    assert str(tmp_path / "seawall.toml") in str(caught.value)


def test_credentials_in_the_url_stay_out_of_the_errors(tmp_path: Path) -> None:
    text = '[transport]\nurl = "amqp://guest:hunter2@h/"\n[transport.options]\nprefetch = 1\n'
    with pytest.raises(ConfigurationError, match="unknown option 'prefetch'") as caught:
        load(tmp_path, text)
    assert "hunter2" not in str(caught.value)


def test_the_embedded_broker_takes_its_options_on_its_command_line(tmp_path: Path) -> None:
    config = parse_up_config(
        {
            "transport": {"options": {"window": 0.01, "sync": "always", "tail": 128}},
            "services": {"a": {"target": "m:a"}},
        },
        where="test.toml",
        root=tmp_path,
    )
    assert config.broker == EmbeddedOptions(window=0.01, sync="always", tail=128)
    command = Up(config).broker_command(tmp_path / "data", "/tmp/b.sock")
    assert command[command.index("--sync") + 1] == "always"
    options = [command[i + 1] for i, arg in enumerate(command) if arg == "--option"]
    assert options == ["window=0.01", "tail=128"]


def test_the_top_level_sync_is_the_broker_option(tmp_path: Path) -> None:
    config = parse_up_config(
        {"sync": "none", "services": {"a": {"target": "m:a"}}}, where="t", root=tmp_path
    )
    assert config.broker.sync == "none"
    command = Up(config).broker_command(tmp_path, "/tmp/b.sock")
    assert "--option" not in command
