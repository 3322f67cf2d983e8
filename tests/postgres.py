"""A database of its own on the test machines' PostgreSQL server, for each test that needs one.

The server is the one `scripts/ensure-postgres` starts (127.0.0.1:5432, trust auth);
``SMSGW_TEST_POSTGRES`` names another admin DSN. Every database is created fresh and
dropped after (``WITH (FORCE)`` ends what a killed gateway left connected), so tests
running side by side never meet each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("SMSGW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def dsn_of(database: str) -> str:
    """The DSN of ``database`` on the admin DSN's server."""
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def create_database() -> str:
    """Create an empty database; its DSN."""
    name = f"smsgw_test_{secrets.token_hex(6)}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    return dsn_of(name)


async def drop_database(dsn: str) -> None:
    """Drop the database of ``dsn``, ending whatever is still connected to it."""
    await admin_execute(f'DROP DATABASE IF EXISTS "{database_of(dsn)}" WITH (FORCE)')


async def admin_execute(sql: str) -> None:
    """Run one statement on the server's admin database."""
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def database_of(dsn: str) -> str:
    return dsn.rpartition("/")[2]


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create an empty database, yield its DSN, drop it afterwards."""
    dsn = await create_database()
    try:
        yield dsn
    finally:
        await drop_database(dsn)


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """The DSN of a fresh, empty database for this test."""
    async with fresh_database() as dsn:
        yield dsn
