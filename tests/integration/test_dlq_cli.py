"""The ``seawall request|send`` and ``seawall dlq`` commands against a running ``seawall up``.

``seawall up`` runs the echo service of :mod:`tests.apps.up_app` in real
processes behind a ``listen`` address; each command runs as click runs it, in
the test's process, as a client of that broker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result
from tests.brokers import free_port
from tests.commands import Command

from seawall._cli import main

pytestmark = pytest.mark.slow


def seawall(*args: str, stdin: str = "") -> Result:
    """One ``seawall`` command, run to its end (in this process: the CLI as click runs it)."""
    return CliRunner().invoke(main, list(args), input=stdin)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``seawall up`` running the echo service; its broker's URL for clients outside."""
    folder = tmp_path_factory.mktemp("up")
    port = free_port()
    toml = folder / "seawall.toml"
    toml.write_text(
        f'state = "{folder / "state"}"\ngrace = 2.0\nlisten = "127.0.0.1:{port}"\n'
        '[services.echo]\ntarget = "tests.apps.up_app:echo"\n'
    )
    with Command("up", str(toml), "--status-every", "0.2", env={"UP_TEST_OUT": "/dev/null"}) as cmd:
        cmd.wait_for(r"^seawall up: [\d.]+ s: echo 1/1 running")
        yield f"seawall://127.0.0.1:{port}"


def test_request_prints_the_reply_of_the_running_service(up: str) -> None:
    done = seawall("request", "echo", "Ping", '{"n": 7}', "--transport", up)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("Pong from echo:"), done.stdout
    assert '"n": 7' in done.stdout
    assert '"pid": ' in done.stdout


def test_request_with_a_body_that_is_not_json_is_refused_before_sending(up: str) -> None:
    done = seawall("request", "echo", "Ping", "{n: 7}", "--transport", up)
    assert done.exit_code == 2
    assert "Invalid value for JSON: not JSON" in done.output


def test_a_malformed_send_is_listed_shown_redriven_once_and_purged(up: str) -> None:
    sent = seawall("send", "echo", "Ping", '{"n": "seven"}', "--transport", up)
    assert sent.exit_code == 0, sent.output
    message_id = sent.stdout.split()[2]
    listed = _until(lambda: seawall("dlq", "ls", "echo", "--transport", up), "1 dead letter")
    assert "echo.dlq: 1 dead letter(s) (1 decode-error); oldest " in listed.stdout

    shown = seawall("dlq", "show", "echo", "--app", "tests.apps.up_app:echo", "--transport", up)
    assert f'"id": "{message_id}"' in shown.stdout
    assert '"reason": "decode-error"' in shown.stdout
    assert '"body_as": "json"' in shown.stdout  # it does not decode as a Ping: shown as it is
    assert '"n": "seven"' in shown.stdout

    key = re.search(r'"key": "([^"]+)"', shown.stdout)
    assert key is not None
    assert key[1].startswith(message_id)
    # by its key: the message id would also take the dead letter its next failure makes
    first = seawall("dlq", "redrive", "echo", "--id", key[1], "--transport", up)
    again = seawall("dlq", "redrive", "echo", "--id", key[1], "--transport", up)
    assert first.stdout.splitlines()[-1] == "1 dead letter(s) of echo.dlq sent back", first
    assert again.stdout.splitlines()[-1] == "0 dead letter(s) of echo.dlq sent back", again
    # still malformed, so the echo service dead-letters it again: once, not twice
    listed = _until(lambda: seawall("dlq", "ls", "echo", "--transport", up), "1 dead letter")
    time.sleep(0.5)
    assert "echo.dlq: 1 dead letter(s)" in seawall("dlq", "ls", "echo", "--transport", up).stdout

    refused = seawall("dlq", "purge", "echo", "--transport", up, stdin="n\n")
    assert refused.exit_code == 1
    assert "Aborted" in refused.output
    purged = seawall("dlq", "purge", "echo", "--yes", "--transport", up)
    assert purged.stdout.strip() == "1 dead letter(s) of echo.dlq purged"
    assert seawall("dlq", "ls", "echo", "--transport", up).stdout.strip() == "echo.dlq: empty"


def _until(run: Callable[[], Result], wanted: str, seconds: float = 20.0) -> Result:
    end = time.monotonic() + seconds
    while True:
        done = run()
        if wanted in done.stdout or time.monotonic() > end:
            return done
