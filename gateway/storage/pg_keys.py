"""The PostgreSQL table of wrapped pseudonym keys, shared by every instance (`privacy.shared_keys`).

Rows hold keys sealed under the instances' key-encryption key, never a key in clear.
Each change that another instance must see is announced on `CHANNEL` in the same
transaction (PostgreSQL delivers a NOTIFY only once its transaction commits, so no
instance hears of a key that is not durable). A destruction is followed by
``VACUUM FULL``, which writes the table anew and drops the old file, so the deleted
row does not stay readable in a page of the live table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple

import asyncpg

from gateway.logs import log_event
from gateway.storage.pg_migrations import migrate

log = logging.getLogger(__name__)

CHANNEL: Final = "smsgw_keys"
# Lock for a first import of a key file, so two instances starting together import once.
_IMPORT_LOCK: Final = 0x6B657973  # "keys"

MIGRATIONS: Final = (
    """
    CREATE TABLE wrapped_keys (
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('registry', 'epoch')),
        epoch TEXT NOT NULL,
        kek_id TEXT NOT NULL,
        nonce BYTEA NOT NULL,
        sealed BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant, kind, epoch)
    )
    """,
)

_COLUMNS: Final = "tenant, kind, epoch, kek_id, nonce, sealed"


class WrappedKey(NamedTuple):
    """One row: a key sealed for ``(tenant, kind, epoch)``; ``epoch`` is "" for the registry key."""

    tenant: str
    kind: str
    epoch: str
    kek_id: str
    nonce: bytes
    sealed: bytes


def _row(record: asyncpg.Record) -> WrappedKey:
    return WrappedKey(*(record[name] for name in WrappedKey._fields))


async def create_table(conn: asyncpg.Connection) -> None:
    """Bring the ``keys`` component's schema up to this release."""
    await migrate(conn, "keys", MIGRATIONS)


async def wrapped_keys(conn: asyncpg.Connection, tenant: str | None = None) -> list[WrappedKey]:
    """Every row, or the rows of one tenant."""
    if tenant is None:
        records = await conn.fetch(f"SELECT {_COLUMNS} FROM wrapped_keys")
    else:
        records = await conn.fetch(f"SELECT {_COLUMNS} FROM wrapped_keys WHERE tenant = $1", tenant)
    return [_row(record) for record in records]


async def insert_key(conn: asyncpg.Connection, key: WrappedKey) -> WrappedKey:
    """Add ``key`` unless its slot is taken; the row in force either way (first writer wins)."""
    async with conn.transaction():
        inserted = await conn.fetchval(
            f"INSERT INTO wrapped_keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (tenant, kind, epoch) DO NOTHING RETURNING true",
            *key,
        )
        if inserted:
            await _announce(conn, "created", key.tenant)
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM wrapped_keys WHERE tenant = $1 AND kind = $2 AND epoch = $3",
            key.tenant,
            key.kind,
            key.epoch,
        )
    return _row(record)


async def delete_keys(conn: asyncpg.Connection, tenant: str, epoch: str | None) -> int:
    """Delete one epoch key of ``tenant`` (None: all its keys), announce it, then vacuum."""
    async with conn.transaction():
        if epoch is None:
            result = await conn.execute("DELETE FROM wrapped_keys WHERE tenant = $1", tenant)
        else:
            result = await conn.execute(
                "DELETE FROM wrapped_keys WHERE tenant = $1 AND kind = 'epoch' AND epoch = $2",
                tenant,
                epoch,
            )
        await _announce(conn, "destroyed", tenant)
    await vacuum(conn)
    return int(result.split()[-1])


async def vacuum(conn: asyncpg.Connection) -> bool:
    """Rewrite the table so deleted rows leave its pages; False if it had to wait too long.

    ``VACUUM FULL`` needs the table to itself: a backup reading it would make us wait
    for its end, so after two seconds we give up (the next destruction, or rotation,
    tries again; the row is deleted and useless without the KEK either way).
    """
    try:
        await conn.execute("SET lock_timeout = '2s'")
        await conn.execute("VACUUM FULL wrapped_keys")
    except asyncpg.LockNotAvailableError:
        log_event(log, "keys.vacuum_deferred", logging.WARNING)
        return False
    finally:
        await conn.execute("RESET lock_timeout")
    return True


async def import_keys(conn: asyncpg.Connection, keys: Sequence[WrappedKey]) -> int:
    """Insert ``keys`` if the table is empty (a one-time import); how many went in."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _IMPORT_LOCK)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM wrapped_keys)"):
            return 0
        await conn.executemany(
            f"INSERT INTO wrapped_keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)", keys
        )
        for tenant in sorted({key.tenant for key in keys}):
            await _announce(conn, "created", tenant)
    return len(keys)


async def rewrap_keys(conn: asyncpg.Connection, rewrap: Callable[[WrappedKey], WrappedKey]) -> int:
    """Replace every row by ``rewrap(row)`` in one transaction, then vacuum; rows changed."""
    changed = 0
    async with conn.transaction():
        records = await conn.fetch(f"SELECT {_COLUMNS} FROM wrapped_keys FOR UPDATE")
        for record in records:
            old = _row(record)
            new = rewrap(old)
            if new != old:
                await conn.execute(
                    "UPDATE wrapped_keys SET kek_id = $4, nonce = $5, sealed = $6"
                    " WHERE tenant = $1 AND kind = $2 AND epoch = $3",
                    *new,
                )
                changed += 1
    await vacuum(conn)
    return changed


async def _announce(conn: asyncpg.Connection, change: str, tenant: str) -> None:
    """Tell every instance that ``tenant``'s keys changed; delivered when this commits."""
    payload = json.dumps({"change": change, "tenant": tenant})
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
