"""The public namespace is curated: everything in __all__ exists and is sorted."""

from __future__ import annotations

import inspect

import seawall
import seawall.es
import seawall.outbox
import seawall.testing

CURATED = (seawall, seawall.es, seawall.outbox, seawall.testing)


def test_all_is_sorted_and_complete() -> None:
    for module in CURATED:
        names = module.__all__
        assert names == sorted(names), f"{module.__name__}.__all__ is not sorted"
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name} is listed but missing"


def test_public_objects_say_they_come_from_seawall() -> None:
    public = [getattr(seawall, n) for n in seawall.__all__ if not n.startswith("__")]
    classes = [obj for obj in public if isinstance(obj, type)]
    assert all(obj.__module__.startswith("seawall") for obj in classes)


def test_every_public_class_and_function_has_a_docstring() -> None:
    # type aliases (Upcaster, Progress) are documented in the source, where __doc__ cannot reach
    missing = [
        f"{module.__name__}.{name}"
        for module in CURATED
        for name, obj in ((n, getattr(module, n)) for n in module.__all__)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and not (obj.__doc__ or "").strip()
    ]
    assert missing == []


def _subclasses(cls: type) -> set[type]:
    return {cls}.union(*(_subclasses(sub) for sub in cls.__subclasses__()))


def test_the_whole_exception_tree_is_exported() -> None:
    tree = {
        c.__name__
        for c in _subclasses(seawall.SeawallError)
        if c.__module__ == "seawall._exceptions"
    }
    assert tree - set(seawall.__all__) == set()


def test_the_event_store_errors_are_importable_where_event_sourcing_is() -> None:
    errors = ("EventStoreError", "ConcurrencyError", "AggregateNotFound", "EventLoadError")
    for name in errors:
        assert getattr(seawall.es, name) is getattr(seawall, name)
        assert name in seawall.es.__all__
    assert issubclass(seawall.es.ConcurrencyError, seawall.es.EventStoreError)


def test_the_outbox_error_is_importable_where_the_outbox_is() -> None:
    assert seawall.outbox.OutboxError is seawall.OutboxError
    assert "OutboxError" in seawall.outbox.__all__
