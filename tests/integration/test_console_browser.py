"""The web console in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium), served by ``seawall up --console``.

* The FTGO system shows its seven services and their channels, and a malformed
  ticket command shows as a dead letter within 2 s of being sent.
* A dead letter of the ledger service (:mod:`tests.apps.console_app`) is
  refused a redrive without the operator token, and with it, once the cause is
  fixed, is delivered once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from examples.ftgo.demo import malformed
from tests.brokers import free_port
from tests.commands import ROOT, Command

from seawall import System

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
TOKEN = "night-shift-7"
# The seven services of examples/ftgo/seawall.toml as they announce themselves: each of
# the two courier processes is a service of its own (courier-1, courier-2: its own channel).
FTGO_SERVICES = [
    "accounting",
    "consumer",
    "courier-1",
    "courier-2",
    "delivery",
    "kitchen",
    "order",
    "restaurant",
]
T = TypeVar("T")


def _browser() -> object:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
        message = (
            "chromium and chromium-driver are not installed (apt-get install them; .ci/run does)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1100")
    return webdriver.Chrome(options=options, service=DriverService(executable_path=DRIVER))


@pytest.fixture
def browser() -> Iterator[object]:
    driver = _browser()
    try:
        yield driver
    finally:
        driver.quit()  # type: ignore[attr-defined]


def until(check: Callable[[], T], seconds: float = 20.0, what: str = "") -> T:
    """``check()`` once it is truthy; fails after ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def rows(driver: object, table: str, attribute: str) -> list[str]:
    """The ``attribute`` of every row of ``table``, read at one instant in the page."""
    script = (
        f"return [...document.querySelectorAll('#{table} tbody tr')]"
        f".map(row => row.getAttribute('{attribute}'))"
    )
    found: list[str] = driver.execute_script(script)  # type: ignore[attr-defined]
    return found


def text_of(driver: object, selector: str) -> str:
    script = "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';"
    found: str = driver.execute_script(script, selector)  # type: ignore[attr-defined]
    return found


def up_with_console(
    tmp_path: Path, toml: str, *, token: str | None, env: dict[str, str]
) -> tuple[Command, str, str]:
    """``seawall up`` on ``toml`` with its console; the command, page URL and broker URL."""
    console_port, broker_port = free_port(), free_port()
    path = tmp_path / "seawall.toml"
    path.write_text(
        f'state = "{tmp_path / "state"}"\ngrace = 2.0\nlisten = "127.0.0.1:{broker_port}"\n{toml}'
    )
    args = ["up", str(path), "--status-every", "1", "--console", f"127.0.0.1:{console_port}"]
    command = Command(*args, env={**env, **({"SEAWALL_CONSOLE_TOKEN": token} if token else {})})
    return command, f"http://127.0.0.1:{console_port}/", f"seawall://127.0.0.1:{broker_port}"


def ftgo_toml() -> str:
    """The FTGO system's services as examples/ftgo/seawall.toml has them (its own state)."""
    text = (ROOT / "examples" / "ftgo" / "seawall.toml").read_text()
    kept = [
        line for line in text.splitlines() if not line.startswith(("state", "transport", "grace"))
    ]
    return "\n".join(kept) + "\n"


def test_ftgo_under_seawall_up_shows_its_services_channels_and_a_dead_letter_within_2_s(
    tmp_path: Path, browser: object
) -> None:
    env = {"FTGO_STATE": str(tmp_path / "ftgo"), "FTGO_PREFIX": ""}
    up, page, broker = up_with_console(tmp_path, ftgo_toml(), token=None, env=env)
    with up:
        up.wait_for(r"^seawall up: console on http://")
        browser.get(page)  # type: ignore[attr-defined]
        until(
            lambda: sorted(set(rows(browser, "services", "data-service"))) == FTGO_SERVICES,
            120,
            "the seven FTGO services on the page",
        )
        channels = rows(browser, "channels", "data-channel")
        toml_services = {"accounting", "consumer", "courier", "delivery", "kitchen", "order"}
        assert toml_services | {"restaurant"} == {n.split("-")[0] for n in FTGO_SERVICES}
        assert {"kitchen", "accounting", "order", "consumer", "restaurant"} <= set(channels)
        assert {"order.events", "delivery.offers", "courier-1", "courier-2"} <= set(channels)
        message = malformed()
        sent = time.monotonic()
        asyncio.run(_publish(broker, "kitchen", message))
        until(
            lambda: message.id in rows(browser, "dead-letters", "data-id"),
            2.0,
            "the malformed ticket command as a dead letter",
        )
        waited = time.monotonic() - sent
        assert waited <= 2.0
        assert text_of(browser, "#readonly") == "read-only"


async def _publish(url: str, channel: str, message: object) -> None:
    async with System(transport=url) as client:
        await client.transport.publish(channel, message)  # type: ignore[arg-type]


def test_redrive_from_the_page_is_refused_without_the_token_and_delivers_once_with_it(
    tmp_path: Path, browser: object
) -> None:
    from selenium.webdriver.common.by import By

    broken, out = tmp_path / "broken", tmp_path / "out.txt"
    broken.touch()
    out.touch()
    env = {"CONSOLE_TEST_BROKEN": str(broken), "CONSOLE_TEST_OUT": str(out)}
    toml = '[services.ledger]\ntarget = "tests.apps.console_app:ledger"\n'
    up, page, broker = up_with_console(tmp_path, toml, token=TOKEN, env=env)
    with up:
        up.wait_for(r"^seawall up: console on http://")
        browser.get(page)  # type: ignore[attr-defined]
        until(lambda: rows(browser, "services", "data-service") == ["ledger"], 30, "ledger")
        with Command("send", "ledger", "ledger.Post", '{"n": 41}', "--transport", broker) as send:
            assert send.wait(30) == 0, send.text()
        [key] = until(lambda: rows(browser, "dead-letters", "data-key"), 10, "a dead letter")
        assert "closed for the night" in text_of(browser, f'tr[data-key="{key}"]')
        redrive = f'tr[data-key="{key}"] button.redrive'

        broken.unlink()  # the cause is fixed; but without the token, nothing moves
        browser.find_element(By.CSS_SELECTOR, redrive).click()  # type: ignore[attr-defined]
        notice = until(lambda: text_of(browser, "#notice"), 5, "a notice")
        assert "refused" in notice
        assert "operator token" in notice
        time.sleep(1.0)
        assert out.read_text() == ""
        assert len(rows(browser, "dead-letters", "data-key")) == 1

        browser.find_element(By.ID, "token").send_keys(TOKEN)  # type: ignore[attr-defined]
        browser.find_element(By.CSS_SELECTOR, redrive).click()  # type: ignore[attr-defined]
        until(lambda: out.read_text() == "41\n", 10, "the entry posted")
        until(lambda: rows(browser, "dead-letters", "data-key") == [], 5, "the dead letter gone")
        time.sleep(1.0)  # a second delivery would be here by now
        assert out.read_text() == "41\n"
        assert any(
            "redrive of 1 dead letter(s) of ledger.dlq by 127.0.0.1" in line for line in up.err
        )
