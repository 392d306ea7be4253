"""A gateway unit in ``seawall.toml``: ``listen`` on a ``[services.NAME]`` table, checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from seawall import ConfigurationError
from seawall._up.config import parse_up_config


def _parse(edge: dict[str, Any]) -> Any:
    data = {"services": {"edge": {"target": "shop.edge:gateway", **edge}}}
    return parse_up_config(data, where="seawall.toml", root=Path("."))


def test_listen_makes_a_gateway_unit() -> None:
    (spec,) = _parse({"listen": "127.0.0.1:8080"}).services
    assert spec.listen == "127.0.0.1:8080"
    (plain,) = _parse({}).services
    assert plain.listen is None


@pytest.mark.parametrize(
    ("edge", "message"),
    [
        ({"listen": "8080"}, r'services.edge.listen must be "HOST:PORT"'),
        ({"listen": 8080}, r'services.edge.listen must be "HOST:PORT"'),
        ({"listen": "127.0.0.1:8080", "instances": 2}, "a gateway unit runs one process"),
    ],
)
def test_a_listen_that_cannot_work_is_refused(edge: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _parse(edge)
