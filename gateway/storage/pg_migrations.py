"""Versioned PostgreSQL migrations: one track per component, run by whichever instance starts.

Several instances share one database, and any of them may be the first to start on a new
release: each component's migrations (``store``, ``cluster``, ``keys``...) run in one
transaction under a transaction-scoped advisory lock, so two instances starting together
apply each migration once, and the loser sees the winner's version. ``smsgw_schema``
records how far each component is, as SQLite's ``PRAGMA user_version`` does for its one.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

# Any constant shared by every instance; it only needs to differ from other users' locks.
_MIGRATION_LOCK = 0x736D7367  # "smsg"


async def migrate(conn: asyncpg.Connection, component: str, migrations: Sequence[str]) -> int:
    """Apply ``component``'s migrations not yet applied, oldest first; returns its version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS smsgw_schema"
            " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        version = await conn.fetchval(
            "SELECT version FROM smsgw_schema WHERE component = $1", component
        )
        current = int(version or 0)
        if current > len(migrations):
            raise RuntimeError(
                f"the database's {component} schema is version {current}, newer than this"
                f" release's {len(migrations)}: upgrade this instance"
            )
        for script in migrations[current:]:
            await conn.execute(script)
        if len(migrations) > current:
            await conn.execute(
                "INSERT INTO smsgw_schema (component, version) VALUES ($1, $2)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                component,
                len(migrations),
            )
        return len(migrations)


async def version(conn: asyncpg.Connection, component: str) -> int:
    """How far ``component``'s migrations are (0 if none ran), for readiness checks."""
    exists = await conn.fetchval("SELECT to_regclass('smsgw_schema') IS NOT NULL")
    if not exists:
        return 0
    found = await conn.fetchval("SELECT version FROM smsgw_schema WHERE component = $1", component)
    return int(found or 0)
