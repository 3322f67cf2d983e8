"""Group commit on PostgreSQL (asyncpg): the same units and batches as on SQLite.

One writer connection commits whatever accumulated while the previous commit ran, in
one transaction; a unit is acknowledged only after that COMMIT returned, and its
``after_commit`` hook runs after. Batched statements run as one ``executemany`` each
(asyncpg sends every row's Bind/Execute in one round trip), plain ones in unit order.
If the transaction fails it is rolled back and the batch replayed unit by unit, each
in a savepoint, so a value the server refuses fails only the unit that brought it.
A writer connection the server dropped is replaced at the next batch; the batch that
met the drop is refused whole (its outcome is unknown, so nothing of it is
acknowledged).

Repositories write ``?`` placeholders, as for SQLite; `pg_sql` numbers them (``$1``,
``$2``...). No statement of theirs holds a ``?`` inside a string literal. Reads go to
two pools: one for the short reads on the path of traffic, one for long scans, as
SQLite's two readers do; a pool replaces a connection that died on the next acquire.

`checkpoint` is a plain VACUUM of the store's tables, beside the writer: dead row
versions (the content an erasure or retention replaced or deleted) are pruned and
their space reused, not zeroed. It does not reach the server's WAL, archives or
backups: see docs/privacy.md.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from gateway.metrics import Metrics
from gateway.storage.base import Batched, Rows, Statement
from gateway.storage.dialect import POSTGRES
from gateway.storage.engine import Batch, GroupCommit, Phases, Unit, in_phases
from gateway.storage.pg_migrations import migrate, version

# The migration track of the store's tables in smsgw_schema (other components have theirs).
COMPONENT = "store"
# A server that does not answer a connect within this long counts as unreachable.
CONNECT_TIMEOUT = 5.0
# How long /readyz waits for the database before it says not ready.
READY_TIMEOUT = 2.0
# Connections per pool: the short reads of traffic, and the long scans.
READERS = 4
BULK_READERS = 2

_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """``sql`` with its ``?`` placeholders numbered as PostgreSQL's ``$1, $2, ...``."""
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", sql)


@functools.lru_cache(maxsize=256)
def _row_sql(statement: Batched, width: int) -> str:
    """A batched statement for one row of ``width`` values, typed where it says."""
    types = statement.types or ("",) * width
    group = ", ".join(f"${n}::{t}" if t else f"${n}" for n, t in enumerate(types, start=1))
    return statement.sql.format(values=f"({group})")


def describe(dsn: str) -> str:
    """A DSN without its credentials, for messages: host, port and database."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


class PostgresGroupCommit(GroupCommit):
    """Group commit on a PostgreSQL database shared with other instances."""

    dialect = POSTGRES

    def __init__(
        self,
        dsn: str,
        writer: asyncpg.Connection,
        reader: asyncpg.Pool,
        bulk: asyncpg.Pool,
        phases: Phases,
        metrics: Metrics,
        schema_version: int,
        vacuum: Sequence[str],
    ) -> None:
        self._dsn = dsn
        self._writer = writer
        self._reader = reader
        self._bulk = bulk
        self._schema_version = schema_version
        self._vacuum = f"VACUUM {', '.join(vacuum)}"
        super().__init__(phases, metrics)

    @classmethod
    async def open(
        cls,
        dsn: str,
        phases: Phases,
        metrics: Metrics,
        migrations: Sequence[str],
        vacuum: Sequence[str],
    ) -> PostgresGroupCommit:
        """Connect, bring the store's track up to ``migrations``, open the reader pools.

        ``vacuum`` names the tables whose dead rows `checkpoint` prunes.
        """
        writer = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
        pools: list[asyncpg.Pool] = []
        try:
            schema_version = await migrate(writer, COMPONENT, migrations)
            for size in (READERS, BULK_READERS):
                pool = await asyncpg.create_pool(
                    dsn, min_size=1, max_size=size, timeout=CONNECT_TIMEOUT
                )
                pools.append(pool)
        except BaseException:
            for pool in pools:
                await pool.close()
            await writer.close()
            raise
        return cls(dsn, writer, pools[0], pools[1], phases, metrics, schema_version, vacuum)

    async def ready(self) -> bool:
        """Whether a reader reaches the database now and finds this release's schema."""
        if not self.healthy:
            return False
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                async with self._reader.acquire() as conn:
                    found = await version(conn, COMPONENT)
        # InternalClientError: a reader whose query an earlier timeout cut short can be
        # handed out still busy ("cannot switch to state 12"), seen under load; the pool
        # replaces it, and until then the answer is "not ready", never a 500.
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ):
            return False
        return found == self._schema_version

    # --- writes -------------------------------------------------------------------------

    async def checkpoint(self) -> None:
        """VACUUM the store's tables once everything queued so far is committed.

        On a bulk reader's connection, not the writer's: a VACUUM of a large table takes
        a while, and commits (and the submits waiting for them) must not wait for it.
        """
        await self.flush()
        async with self._bulk.acquire() as conn:
            await conn.execute(self._vacuum)

    async def _write(self, batch: Batch) -> None:
        """One group commit: the fast path in one transaction, else unit by unit."""
        if self._writer.is_closed():  # the server dropped it since the last batch
            self._writer = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
        writer = self._writer
        try:
            async with writer.transaction():
                for statement, rows in in_phases(batch.units, self._phases):
                    await _execute(writer, statement, rows)
        except Exception:
            if writer.is_closed():
                raise
            await self._write_apart(writer, batch.units)

    async def _write_apart(self, writer: asyncpg.Connection, units: Sequence[Unit]) -> None:
        """Replay ``units`` in the order they were queued, each in a savepoint of its own."""
        async with writer.transaction():
            for unit in units:
                try:
                    async with writer.transaction():  # nested: a savepoint
                        for statement, rows in unit.steps:
                            await _execute(writer, statement, rows)
                except Exception as exc:
                    if writer.is_closed():
                        raise
                    unit.error = type(exc).__name__

    async def _close(self) -> None:
        await self._reader.close()
        await self._bulk.close()
        await self._writer.close()

    # --- reads --------------------------------------------------------------------------

    async def fetch_one(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = await self._reader.fetchrow(pg_sql(sql), *params)
        return None if row is None else tuple(row)

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return [tuple(row) for row in await self._reader.fetch(pg_sql(sql), *params)]

    async def fetch_bulk(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return [tuple(row) for row in await self._bulk.fetch(pg_sql(sql), *params)]

    async def count(self, sql: str, params: Sequence[object] = ()) -> int:
        return int(await self._bulk.fetchval(pg_sql(sql), *params) or 0)


async def _execute(writer: asyncpg.Connection, statement: Statement, rows: Rows) -> None:
    """A step's statement once per row: one row as one call, more as one executemany."""
    if not rows:
        return
    sql = _row_sql(statement, len(rows[0])) if isinstance(statement, Batched) else pg_sql(statement)
    if len(rows) == 1:
        await writer.execute(sql, *rows[0])
    else:
        await writer.executemany(sql, rows)
