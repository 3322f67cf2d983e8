"""The cluster's tables in the shared PostgreSQL database: the ``cluster`` migration track.

Applied by `gateway.storage.pg_migrations.migrate` (whichever instance starts first);
a new migration is appended, never edited. Times are Unix seconds of the database's
clock, so instances whose clocks differ still agree on who is alive.
"""

from __future__ import annotations

COMPONENT = "cluster"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        run TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL,
        http_url TEXT NOT NULL DEFAULT '',
        admin_url TEXT NOT NULL DEFAULT '',
        smpp_port INTEGER NOT NULL DEFAULT 0,
        version TEXT NOT NULL
    );
    CREATE TABLE binds (
        instance TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
        session BIGINT NOT NULL,
        tenant TEXT NOT NULL,
        system_id TEXT NOT NULL,
        bind_type TEXT NOT NULL,
        receives BOOLEAN NOT NULL,
        bound_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (instance, session)
    );
    CREATE INDEX binds_by_tenant ON binds (tenant, receives);
    CREATE TABLE rate_buckets (
        tenant TEXT PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        stamp DOUBLE PRECISION NOT NULL,
        granted DOUBLE PRECISION NOT NULL
    );
    """,
)
