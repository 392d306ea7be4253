"""The README's code runs as shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_first_screen_shows_the_two_commands_then_a_short_service() -> None:
    text = README.read_text()
    first_screen = "\n".join(text.splitlines()[:12])
    assert "make demo" in first_screen
    assert "make test" in first_screen
    service = _blocks()[0]
    assert len(service.strip().splitlines()) <= 20


async def test_readme_service_request_and_test_example_run() -> None:
    service, usage, test = _blocks()[:3]
    namespace: dict[str, Any] = {}
    exec(service, namespace)
    body = "async def _usage():\n" + "".join(f"    {line}\n" for line in usage.splitlines())
    body += "    return receipt\n"
    exec(body, namespace)
    receipt = await namespace["_usage"]()
    assert receipt == namespace["Receipt"](order_id="o-1")
    exec(test, namespace)
    await namespace["test_place_order"]()
