"""The PostgreSQL side that the outbox and the log tailing relay share (sans-IO but for
asyncpg's error types): the tables, the function that writes rows, the columns a relay
reads, and the translation of the driver's errors at the edge."""

from __future__ import annotations

import re
from typing import Any

from .._exceptions import OutboxError

__all__ = ["PREFIX", "ROW_COLUMNS", "Translate", "driver_errors", "schema"]

PREFIX = re.compile(r"^[a-z_][a-z0-9_]*$|^$")
"""What a table prefix may be (it is written into SQL)."""
ROW_COLUMNS = (
    "id::text, aggregatetype, aggregateid, type, payload, headers::text, channel, partition"
)
"""The columns of :class:`~seawall.outbox._rows.OutboxRow`, as text where asyncpg would not."""


def schema(p: str) -> str:
    """The outbox, its buckets, the inbox, and the function that writes outbox rows."""
    return f"""
    CREATE TABLE IF NOT EXISTS {p}outbox (
        id uuid PRIMARY KEY,
        aggregatetype text NOT NULL,
        aggregateid text NOT NULL,
        type text NOT NULL,
        payload bytea NOT NULL,
        headers jsonb NOT NULL,
        channel text NOT NULL,
        partition smallint NOT NULL,
        position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        published_at double precision
    );
    CREATE INDEX IF NOT EXISTS {p}outbox_waiting ON {p}outbox (partition, position)
        WHERE published_at IS NULL;
    CREATE INDEX IF NOT EXISTS {p}outbox_published ON {p}outbox (published_at)
        WHERE published_at IS NOT NULL;
    CREATE TABLE IF NOT EXISTS {p}outbox_partitions (partition smallint PRIMARY KEY);
    CREATE TABLE IF NOT EXISTS {p}inbox (
        consumer text NOT NULL,
        message_id text NOT NULL,
        handled_at double precision NOT NULL,
        reply_type text,
        reply bytea,
        PRIMARY KEY (consumer, message_id)
    );
    CREATE INDEX IF NOT EXISTS {p}inbox_age ON {p}inbox (handled_at);
    CREATE OR REPLACE FUNCTION {p}outbox_write(
        ids uuid[], atypes text[], aids text[], types text[], payloads bytea[],
        headers jsonb[], channels text[], partitions smallint[]
    ) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        aggregate text;
    BEGIN
        -- one writer per aggregate from here to its commit: positions follow commit order
        FOR aggregate IN SELECT DISTINCT a FROM unnest(aids) AS a ORDER BY a LOOP
            PERFORM pg_advisory_xact_lock(hashtext('{p}outbox'), hashtext(aggregate));
        END LOOP;
        INSERT INTO {p}outbox
            (id, aggregatetype, aggregateid, type, payload, headers, channel, partition)
        SELECT * FROM unnest(ids, atypes, aids, types, payloads, headers, channels, partitions);
    END $$;
    """


def driver_errors() -> tuple[type[BaseException], ...]:
    """asyncpg's error types (imported on first use): what the edge translates."""
    import asyncpg

    return (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Translate:
    """``with Translate(what):`` raises asyncpg's errors (and lost links) as OutboxError.

    A class rather than a generator context manager: it wraps every statement."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is not None and isinstance(exc, driver_errors()):
            raise OutboxError(f"{self.what}: {exc}") from exc
