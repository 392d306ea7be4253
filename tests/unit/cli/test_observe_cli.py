"""The observability options of the real commands: --log-level, --log-format json, --metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.brokers import free_port

ROOT = Path(__file__).resolve().parents[3]
SEAWALL = [sys.executable, "-m", "seawall"]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "UP_TEST_OUT": "/dev/null"}
    for name in ("SEAWALL_TRANSPORT", "SEAWALL_LOG_LEVEL", "SEAWALL_LOG_FORMAT", "SEAWALL_METRICS"):
        env.pop(name, None)
    return {**env, **extra}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            if _get(f"{url}/readyz")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)
    raise AssertionError(f"{url}/readyz never said 200")


@pytest.mark.parametrize("command", ["run", "up"])
@pytest.mark.parametrize("where", ["option", "environment"])
def test_a_bad_log_level_is_a_usage_error_not_a_traceback(command: str, where: str) -> None:
    args = [*SEAWALL, command, "tests.apps.up_app:echo" if command == "run" else "none.toml"]
    env = _env()
    if where == "option":
        args += ["--log-level", "verbose"]
    else:
        env["SEAWALL_LOG_LEVEL"] = "verbose"
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "Invalid value for '--log-level': 'verbose' is not one of" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_metrics_address_is_a_usage_error() -> None:
    args = [*SEAWALL, "run", "tests.apps.up_app:echo", "--metrics", "9464"]
    done = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "expected HOST:PORT" in done.stderr


def test_seawall_run_serves_metrics_and_probes_and_logs_json() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [*SEAWALL, "run", "tests.apps.up_app:echo", "--log-format", "json"]
    args += ["--metrics", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_ready(url, proc)
        status, body = _get(f"{url}/healthz")
        assert status == 200
        assert json.loads(body)["live"] is True
        text = _get(f"{url}/metrics")[1]
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        handled = [s for s in samples if s.name == "seawall_messages_total"]
        assert {s.labels["service"] for s in handled} == {"echo"}
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any("running" in r["message"] and r["logger"] == "seawall.system" for r in records)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


@pytest.mark.integration
def test_seawall_up_serves_one_metrics_endpoint_for_every_child(tmp_path: Path) -> None:
    toml = tmp_path / "seawall.toml"
    toml.write_text(
        f'state = "{tmp_path / "state"}"\ngrace = 2.0\n'
        '[services.echo]\ntarget = "tests.apps.up_app:echo"\ninstances = 2\n'
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [*SEAWALL, "up", str(toml), "--metrics", f"127.0.0.1:{port}"]
    args += ["--log-format", "json", "--log-level", "info"]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_ready(url, proc)
        text = _get(f"{url}/metrics")[1]
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        processes = {s.labels["process"] for s in samples if s.name == "seawall_messages_total"}
        assert processes == {"echo-1", "echo-2"}
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert f"metrics on {url}/metrics" in stdout
    child_log = (tmp_path / "state" / "logs" / "echo-1.log").read_text().splitlines()
    records = [json.loads(line) for line in child_log if line.startswith("{")]
    assert any(r["logger"] == "seawall.up" and "subscribed" in r["message"] for r in records)
    assert all(json.loads(line) for line in stderr.splitlines() if line.startswith("{"))
