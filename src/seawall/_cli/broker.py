"""``seawall broker``: the embedded durable broker as a server for many processes.

Opens the broker on ``--data`` (see :mod:`seawall.transports.embedded`) and
serves it with :class:`~seawall._server.server.BrokerServer` on TCP and/or a unix
socket until SIGTERM or Ctrl-C; clients connect with ``seawall://host:port``
or ``seawall+unix:///path``. Tokens, channel rights and limits come from
``--config`` (the TOML format of :func:`~seawall._server.acl.load_server_config`);
``--sync`` and ``--option NAME=VALUE`` (repeatable) set the broker's
:class:`~seawall.transports.EmbeddedOptions` (``--option window=0.005``), except
its message size, which is ``max_message`` of ``--config``.
Under ``seawall up`` it also stops when ``seawall up`` dies (the hidden
``--lifeline`` option, see :mod:`seawall._up.lifeline`). The process's limit on
open files is raised, as far as the hard limit allows, to hold the config's
``max_connections`` with room to spare; a warning says so when it cannot.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import ssl
from pathlib import Path

import click

from .._exceptions import ConfigurationError
from .._fsync import SYNC_POLICIES, SyncPolicy
from .._server.acl import ServerConfig, load_server_config
from .._server.heap import settle_for_serving
from .._server.server import BrokerServer
from .._up.lifeline import hold
from ..transports.embedded import EmbeddedOptions, EmbeddedTransport

__all__ = ["broker_options", "make_room_for", "serve_broker", "split_listen", "tls_context"]

log = logging.getLogger("seawall.broker")

LIFELINE_BACKSTOP = 10.0
"""Seconds a broker started by ``seawall up`` may take to close after ``seawall up`` died."""
SPARE_FILES = 64
"""Open files the broker needs beyond its connections: listening sockets, its store, logs."""


def make_room_for(connections: int) -> str | None:
    """Raise the soft limit on open files to fit ``connections``; a warning if it cannot.

    Past the limit, accepting fails and asyncio stops accepting for a while: every client
    would be turned away, not only the ones over ``max_connections``.
    """
    needed = connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft != resource.RLIM_INFINITY and soft < needed:
        return (
            f"max_connections is {connections} but this process may open only {soft} files; "
            f"raise the limit (ulimit -n {needed}) or lower max_connections in the config"
        )
    return None


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` as a pair, with a clear error for anything else."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(f"--listen takes HOST:PORT (e.g. 127.0.0.1:4300), got {listen!r}")
    return host.strip("[]"), int(port)


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context from a certificate chain and its key, or None for plain TCP."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS certificate {cert}: {exc}") from exc
    return context


def broker_options(pairs: tuple[str, ...], sync: SyncPolicy | None) -> EmbeddedOptions:
    """The broker's options from ``--option NAME=VALUE`` pairs, ``--sync`` over them."""
    where = "seawall broker --option"
    table: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigurationError(f"{where} takes NAME=VALUE (e.g. window=0.005), got {pair!r}")
        table[name.strip()] = value.strip()
    if "max_message_bytes" in table:
        raise ConfigurationError(
            f"{where}: the broker's message size is max_message in the --config file"
        )
    if sync is not None:
        table["sync"] = sync
    return EmbeddedOptions.from_mapping(table, where=where)


async def serve_broker(
    data: Path,
    *,
    listen: str | None,
    unix: str | None,
    config: ServerConfig,
    options: EmbeddedOptions,
    tls: ssl.SSLContext | None,
) -> None:
    """Serve the broker on ``data`` until SIGTERM/SIGINT, then close it cleanly."""
    host, port = split_listen(listen) if listen else (None, 0)
    warning = make_room_for(config.max_connections)
    transport = EmbeddedTransport(data, options=options, max_message_bytes=config.max_message)
    await transport.broker()  # opens and recovers before the first client arrives
    settle_for_serving()  # this process only serves: see seawall._server.heap
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with BrokerServer(
            transport, host=host, port=port, path=unix, ssl=tls, config=config
        ) as server:
            access = "open to any client" if config.open else f"{len(config.tokens)} clients"
            click.echo(
                f"seawall broker: {data} (sync={options.sync}) listening on "
                f"{', '.join(server.addresses)}; {access}, at most "
                f"{config.max_connections} connections",
                err=True,
            )
            if warning is not None:  # after the line that says it listens, which tools wait for
                click.echo(f"seawall broker: warning: {warning}", err=True)
            await stop.wait()
    finally:
        await transport.close()


@click.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory holding the broker's files (created if missing).",
)
@click.option("--listen", default=None, help="HOST:PORT to accept TCP clients on.")
@click.option("--unix", default=None, help="Unix socket path to accept clients on.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file with client tokens, channel rights and limits.",
)
@click.option(
    "--sync",
    type=click.Choice(SYNC_POLICIES),
    default=None,
    help="When an acknowledged publish is fsynced  [default: batch]",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="An option of the embedded broker (EmbeddedOptions), e.g. window=0.005; repeatable.",
)
@click.option("--tls-cert", default=None, help="PEM certificate chain for TLS.")
@click.option("--tls-key", default=None, help="PEM private key for TLS.")
@click.option("--lifeline", type=int, default=None, hidden=True)  # from seawall up
def broker(
    data: Path,
    listen: str | None,
    unix: str | None,
    config_path: str | None,
    sync: SyncPolicy | None,
    options: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    lifeline: int | None,
) -> None:
    """Run the embedded durable broker as a server (seawall://) until SIGTERM or Ctrl-C."""
    if listen is None and unix is None:
        raise click.UsageError("give --listen HOST:PORT, --unix PATH, or both")
    if lifeline is not None:
        hold(lifeline, backstop=LIFELINE_BACKSTOP)
    try:
        config = load_server_config(config_path) if config_path else ServerConfig()
        tls = tls_context(tls_cert, tls_key)
        chosen = broker_options(options, sync)
        asyncio.run(
            serve_broker(data, listen=listen, unix=unix, config=config, options=chosen, tls=tls)
        )
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("seawall broker: stopped cleanly", err=True)
