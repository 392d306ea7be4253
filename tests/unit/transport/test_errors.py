"""Driver errors as seawall errors (seawall._transport.errors): one table per broker,
the same meanings and wording for all."""

from __future__ import annotations

import pytest

from seawall import ConnectionLost, PermissionDenied, TransportClosed, TransportError
from seawall._transport.errors import ErrorMap, closed, denied, lost


class DriverError(Exception):
    pass


class Unreachable(DriverError):
    pass


class Closed(DriverError):
    pass


class BadAuth(DriverError):
    pass


DRIVER = ErrorMap(
    "Toy",
    (DriverError, OSError),
    [(Closed, closed("Toy")), ((Unreachable, OSError), lost("Toy")), (BadAuth, denied("Toy"))],
)


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (Unreachable("no route"), ConnectionLost, "retry once it is back"),
        (OSError("reset"), ConnectionLost, "Toy is down"),
        (Closed("closed"), TransportClosed, "connect a new transport"),
        (BadAuth("bad password"), PermissionDenied, "Toy refused this client: bad password"),
        (DriverError("no such stream"), TransportError, "Toy refused: DriverError"),
    ],
)
def test_each_driver_error_becomes_its_seawall_error(
    raised: Exception, expected: type[TransportError], words: str
) -> None:
    with pytest.raises(expected) as info, DRIVER("publishing m-1 to 'orders'"):
        raise raised
    assert type(info.value) is expected
    assert str(info.value).startswith("publishing m-1 to 'orders': ")
    assert words in str(info.value)
    assert info.value.__cause__ is raised


def test_errors_that_are_not_the_drivers_pass_through_untouched() -> None:
    with pytest.raises(KeyError), DRIVER("reading"):
        raise KeyError("not a driver error")
    with DRIVER("nothing raised"):
        pass
