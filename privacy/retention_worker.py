"""Retention's worker process: reads old traffic rows and computes their replacements.

Pseudonymising a row is pure CPU (an HMAC a number, a few roundings): 3,500 rows/s
on the event loop, where it took turns with the submits. A child process of the
gateway does it on the other core with its own GIL, reading through a read-only
connection of its own (WAL lets it read beside the writer; on PostgreSQL, a read-only
session on the shared database). It never writes: the
replacements go back to the gateway, whose one writer commits them, so "one process
owns the store" still holds for every write. It holds only the epoch keys it is
given, for one retention run (`Retention` starts it for a run and stops it after).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

import asyncpg

from gateway.numbers import is_numeric_address
from gateway.storage.base import Pseudonymised
from gateway.storage.dialect import POSTGRES, SQLITE, Dialect
from gateway.storage.pg_engine import CONNECT_TIMEOUT, pg_sql
from gateway.storage.traffic import Fetch, identifiable_rows
from privacy.keys import epoch_of
from privacy.pseudonyms import pseudonymise

# The worker's read-only connection, per database (one run, one database), as a query
# function with ``?`` placeholders, and the dialect it speaks.
_connections: dict[str, tuple[Fetch, Dialect]] = {}


def _connect(database: str) -> tuple[Fetch, Dialect]:
    """``database`` is a file: URI (SQLite, opened read-only) or a PostgreSQL DSN."""
    if not database.startswith(("postgresql://", "postgres://")):
        db = sqlite3.connect(f"{database}?mode=ro", uri=True)

        def fetch_sqlite(sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
            return db.execute(sql, params).fetchall()

        return fetch_sqlite, SQLITE
    # asyncpg needs a loop: one of the worker's own, run for each query.
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(
        asyncpg.connect(
            database,
            timeout=CONNECT_TIMEOUT,
            server_settings={"default_transaction_read_only": "on"},
        )
    )

    def fetch_postgres(sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        rows = loop.run_until_complete(conn.fetch(pg_sql(sql), *params))
        return [tuple(row) for row in rows]

    return fetch_postgres, POSTGRES


class Batch(NamedTuple):
    """One batch's replacements; ``last`` is where the next batch starts (None: done).

    ``missing`` names the keys (tenant, epoch) the batch needs and was not given: the
    gateway creates them and asks for the same batch again.
    """

    rows: list[Pseudonymised]
    last: str | None
    missing: list[tuple[str, str]]


def pseudonymise_batch(
    database: str,
    cutoff: float,
    after: str,
    limit: int,
    keys: dict[tuple[str, str], bytes],
    months_per_epoch: int,
    coarsen_to: float,
) -> Batch:
    """Replacements for up to ``limit`` identifiable rows after id ``after`` (in the child)."""
    connection = _connections.get(database)
    if connection is None:
        connection = _connections[database] = _connect(database)
    rows, last = identifiable_rows(*connection, cutoff, after, limit)
    epochs = [(row.tenant, epoch_of(row.submitted_at, months_per_epoch)) for row in rows]
    missing = sorted({pair for pair in epochs if pair not in keys})
    if missing:
        return Batch([], after, missing)

    def coarse(timestamp: float) -> float:
        return timestamp - timestamp % coarsen_to

    updates = []
    for row, pair in zip(rows, epochs, strict=True):
        key = keys[pair]
        sender = row.sender
        updates.append(
            Pseudonymised(
                recipient=pseudonymise(key, row.recipient),
                sender=pseudonymise(key, sender) if is_numeric_address(sender) else sender,
                client_ref=(
                    pseudonymise(key, row.client_ref, number=False) if row.client_ref else None
                ),
                submitted_at=coarse(row.submitted_at),
                enroute_at=None if row.enroute_at is None else coarse(row.enroute_at),
                final_at=None if row.final_at is None else coarse(row.final_at),
                epoch=pair[1],
                id=row.id,
            )
        )
    return Batch(updates, last, [])
