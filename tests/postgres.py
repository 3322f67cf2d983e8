"""A database of its own on the test machines' PostgreSQL server, for each test that needs one.

The server is the one `scripts/ensure-postgres` starts (127.0.0.1:5432, trust auth);
``SMSGW_TEST_POSTGRES`` names another admin DSN. Every database is created fresh and
dropped after (``WITH (FORCE)`` ends what a killed gateway left connected), so tests
running side by side never meet each other's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

_T = TypeVar("_T")
# With SMSGW_TEST_BACKEND=postgres: the database standing in for each store path in the
# running test. Here, not in conftest: pytest imports conftest.py as ``conftest`` and
# the tests import it again as ``tests.conftest``, each with globals of its own.
_stand_ins: dict[str, str] = {}

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


def off_loop(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` to its end on a loop of its own (the caller's may be running, or closed)."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()


def database_for(path: str | Path) -> str:
    """The database standing in for the store at ``path`` in this test (its DSN)."""
    key = str(path)
    if key not in _stand_ins:
        _stand_ins[key] = off_loop(create_database())
    return _stand_ins[key]


def drop_stand_ins() -> None:
    """Drop every database `database_for` created (at the end of each test)."""
    dsns = list(_stand_ins.values())
    _stand_ins.clear()

    async def drop_all() -> None:
        for dsn in dsns:
            await drop_database(dsn)

    if dsns:
        off_loop(drop_all())
