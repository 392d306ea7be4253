"""Opening an event store from a URL, and naming a service's projections for tools.

``sqlite:///abs/path.db`` or ``sqlite://relative/path.db`` opens a
:class:`~seawall.es.sqlite.SQLiteEventStore`; ``postgresql://...`` (or
``postgres://``) a :class:`~seawall.es.postgres.PostgresEventStore`, with an
optional ``?prefix=name_`` for its table names. The CLI reads
``SEAWALL_ES_STORE`` for it; code passes URLs explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .._exceptions import ConfigurationError
from ._codec import EventCodec
from ._projection import Projection
from ._records import EventStore

__all__ = ["ProjectionSet", "open_store"]


async def open_store(url: str) -> EventStore:
    """The event store at ``url`` (see the module docstring for the forms)."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite" and rest:
        from .sqlite import SQLiteEventStore

        return await SQLiteEventStore.open(rest)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresEventStore

        parts = urlsplit(url)
        prefix = parse_qs(parts.query).get("prefix", [""])[0]
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return await PostgresEventStore.open(dsn, prefix=prefix)
    raise ConfigurationError(
        f"event store URL {url!r} is not understood; use sqlite:///path/to/events.db or "
        "postgresql://user@host:5432/dbname[?prefix=name_]"
    )


@dataclass(frozen=True)
class ProjectionSet:
    """A service's projections and the codec that reads their events (for the CLI)."""

    codec: EventCodec
    projections: tuple[Projection, ...] = field(default_factory=tuple)

    def find(self, name: str) -> Projection:
        """The projection called ``name``; a clear error lists the known ones."""
        for projection in self.projections:
            if (projection.name or type(projection).__name__) == name:
                return projection
        known = sorted(p.name or type(p).__name__ for p in self.projections)
        raise ConfigurationError(f"no projection named {name!r}; known: {known or 'none'}")
