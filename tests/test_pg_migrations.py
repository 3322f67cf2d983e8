"""Migration tracks on PostgreSQL: applied once, even by instances starting together."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.storage.pg_migrations import migrate, version
from tests.postgres import postgres_dsn

__all__ = ["postgres_dsn"]

pytestmark = pytest.mark.postgres

TRACK = (
    "CREATE TABLE first (id INTEGER PRIMARY KEY)",
    "CREATE TABLE second (id INTEGER PRIMARY KEY)",
)


async def test_instances_starting_together_apply_each_migration_once(postgres_dsn: str) -> None:
    connections = [await asyncpg.connect(postgres_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, "demo", TRACK) for c in connections))
        assert results == [2, 2, 2]
        assert await version(connections[0], "demo") == 2
        assert await version(connections[0], "other") == 0
        # A later release adds one migration; an older one refuses a newer schema.
        assert await migrate(connections[1], "demo", (*TRACK, "CREATE TABLE third (x INT)")) == 3
        with pytest.raises(RuntimeError, match="newer than this release"):
            await migrate(connections[2], "demo", TRACK)
    finally:
        for connection in connections:
            await connection.close()


async def test_version_of_an_empty_database_is_zero(postgres_dsn: str) -> None:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await version(connection, "store") == 0
    finally:
        await connection.close()
