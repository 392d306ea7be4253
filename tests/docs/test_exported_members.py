"""The public namespace is curated: everything in __all__ exists and is sorted."""

from __future__ import annotations

import seawall
import seawall.testing


def test_all_is_sorted_and_complete() -> None:
    for module in (seawall, seawall.testing):
        names = module.__all__
        assert names == sorted(names), f"{module.__name__}.__all__ is not sorted"
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name} is listed but missing"


def test_public_objects_say_they_come_from_seawall() -> None:
    public = [getattr(seawall, n) for n in seawall.__all__ if not n.startswith("__")]
    classes = [obj for obj in public if isinstance(obj, type)]
    assert all(obj.__module__.startswith("seawall") for obj in classes)


def test_everything_public_has_a_docstring() -> None:
    missing = [
        n
        for n in seawall.__all__
        if callable(getattr(seawall, n)) and not (getattr(seawall, n).__doc__ or "").strip()
    ]
    assert missing == []
