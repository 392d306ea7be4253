"""``python -m benchmarks.console``: what the web console adds to ``make demo``'s wall time.

Each round runs ``python -m examples.ftgo`` (what ``make demo`` runs) as a child
process and times it from start to exit; rounds alternate between *plain* and
*with the console*, so load on the shared machine falls on both alike. With the
console, ``seawall console`` is attached to the demo's own broker (its unix
socket, found on the demo's ``seawall broker`` child as soon as it starts) and
one client reads the page's live stream (``/api/events``, what an open page
reads); the console reads the registry and holds a dead-letter view per
announced group, as under ``seawall up --console``. The console process is
started, its imports done, before the demo (as ``seawall up --console`` imports
its web stack before it starts the services). Printed: the medians of wall time
and of the CPU time of the demo's processes, plain and with the console, and
the console process's own CPU time (on a shared machine, CPU time is the
steadier figure).

``--screenshots DIR`` instead runs the demo once with the console and a headless
Chromium on the page, and saves ``console.png`` (the page mid-run) and
``console-dead-letter.png`` (the demo's malformed ticket command, opened) there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _broker_socket(demo: subprocess.Popen[bytes]) -> str | None:
    """The unix socket of the demo's broker, once its ``seawall broker`` child runs."""
    while demo.poll() is None:
        for child in _children(demo.pid):
            with contextlib.suppress(OSError):
                args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if b"broker" in args and b"--unix" in args:
                    return args[args.index(b"--unix") + 1].decode()
        time.sleep(0.05)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ``seawall console``, its imports done before the demo starts (as ``seawall up --console``
# does them before its services start), then told the demo's broker socket on stdin.
LAUNCH = """
import sys
from seawall._cli import main
import seawall.console.web
print("imported", flush=True)
sock, port = sys.stdin.readline().split()
main(["console", "--transport", "seawall+unix://" + sock, "--listen", "127.0.0.1:" + port])
"""


class _Console:
    """A ``seawall console`` process, started (and its imports done) ahead of the demo."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
        self.proc = subprocess.Popen(
            [PYTHON, "-c", LAUNCH],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "imported"

    @contextlib.contextmanager
    def serving(self, sock: str) -> Iterator[str]:
        """Serve the console of the broker on ``sock``; yields the page URL once it serves."""
        assert self.proc.stdin is not None
        assert self.proc.stderr is not None
        port = _free_port()
        self.proc.stdin.write(f"{sock} {port}\n")
        self.proc.stdin.flush()
        self.proc.stderr.readline()  # "seawall console: http://… for …": it serves
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def _console(sock: str) -> Iterator[str]:
    """``seawall console`` on the demo's broker; yields the page URL once it serves."""
    with _Console().serving(sock) as page:
        yield page


def _read_stream(url: str, stop: threading.Event) -> None:
    """What an open page reads: the live stream of the state."""
    import httpx

    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.stream("GET", url + "api/events", timeout=None) as r,
    ):
        for _ in r.iter_lines():
            if stop.is_set():
                return


def _demo(orders: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SEAWALL_DEMO_ORDERS": str(orders), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [PYTHON, "-m", "examples.ftgo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _cpu() -> float:
    """CPU seconds of every child process waited for so far (and of theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(orders: int, *, console: bool) -> tuple[float, float, float]:
    """One demo run, plain or with the console attached: wall seconds, CPU seconds of the
    demo's processes, CPU seconds of the console's."""
    web = _Console() if console else None
    cpu = _cpu()
    started = time.perf_counter()
    demo = _demo(orders)
    console_cpu = 0.0
    if web is not None:
        sock = _broker_socket(demo)
        assert sock is not None, "the demo's broker did not start"
        with web.serving(sock) as page:
            stop = threading.Event()
            reader = threading.Thread(target=_read_stream, args=(page, stop), daemon=True)
            reader.start()
            code = demo.wait()
            seconds = time.perf_counter() - started
            demo_cpu = _cpu() - cpu
            stop.set()
        console_cpu = _cpu() - cpu - demo_cpu
    else:
        code = demo.wait()
        seconds = time.perf_counter() - started
        demo_cpu = _cpu() - cpu
    if code != 0:
        raise DemoFailed(f"the demo failed (exit {code})")
    return seconds, demo_cpu, console_cpu


class DemoFailed(Exception):
    """A demo run whose audit failed: its time is not comparable."""


def measured(orders: int, *, console: bool, tries: int = 3) -> tuple[float, float, float]:
    """One demo run that passed its audit (a failed one is said and run again)."""
    for _ in range(tries - 1):
        try:
            return run_once(orders, console=console)
        except DemoFailed as exc:
            print(f"  {exc} ({'with' if console else 'without'} the console); again", flush=True)
    return run_once(orders, console=console)


def screenshots(folder: Path, orders: int) -> None:
    """One demo run with the console open in headless Chromium; two PNGs in ``folder``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=DriverService(executable_path="/usr/bin/chromedriver")
    )
    demo = _demo(orders)
    try:
        sock = _broker_socket(demo)
        assert sock is not None, "the demo's broker did not start"
        with _console(sock) as page:
            driver.get(page)
            count = "return document.querySelectorAll(arguments[0]).length"
            rate = "return document.querySelector('#services tbody tr td:nth-child(4)').textContent"
            end = time.monotonic() + 120
            while time.monotonic() < end and not (
                driver.execute_script(count, "#services tbody tr") >= 8
                and driver.execute_script(count, "#dead-letters tbody tr") >= 1
                and driver.execute_script(rate) != "0"
            ):
                time.sleep(0.2)
            time.sleep(2.0)  # a few pushes of rates mid-run
            driver.save_screenshot(str(folder / "console.png"))
            driver.find_element(By.CSS_SELECTOR, "#dead-letters tbody tr button.show").click()
            time.sleep(0.5)
            section = driver.find_element(By.XPATH, "//section[h2[starts-with(., 'Dead letters')]]")
            driver.execute_script("arguments[0].scrollIntoView()", section)
            section.screenshot(str(folder / "console-dead-letter.png"))
            demo.wait()
    finally:
        driver.quit()
        if demo.poll() is None:
            demo.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.console", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating")
    parser.add_argument("--orders", type=int, default=2000, help="as make demo (2,000)")
    parser.add_argument("--quick", action="store_true", help="1 round of each, 500 orders")
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    if args.screenshots is not None:
        screenshots(args.screenshots, args.orders)
        return
    rounds, orders = (1, 500) if args.quick else (args.rounds, args.orders)
    plain: list[tuple[float, float, float]] = []
    consoled: list[tuple[float, float, float]] = []
    for n in range(rounds):
        plain.append(measured(orders, console=False))
        consoled.append(measured(orders, console=True))
        (a, ac, _), (b, bc, cc) = plain[-1], consoled[-1]
        print(
            f"round {n + 1}: plain {a:.1f} s ({ac:.1f} CPU s), with the console {b:.1f} s "
            f"({bc:.1f} CPU s, the console {cc:.1f} CPU s)",
            flush=True,
        )
    print(f"make demo ({orders:,} orders), median of {rounds} runs each, alternating:")
    for what, index in (("wall", 0), ("CPU, demo processes", 1)):
        a = statistics.median(r[index] for r in plain)
        b = statistics.median(r[index] for r in consoled)
        print(f"  {what}: plain {a:.1f} s, with the console {b:.1f} s: {(b / a - 1) * 100:+.1f} %")
    a = statistics.median(r[1] for r in plain)
    c = statistics.median(r[2] for r in consoled)
    print(f"  CPU of the console process: {c:.1f} s = {c / a * 100:.1f} % of the demo's")


if __name__ == "__main__":
    main()
