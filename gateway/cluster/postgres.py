"""The cluster on the shared PostgreSQL database: instances, their SMPP binds, run locks.

Each instance has a row in ``instances`` and writes its heartbeat there every
``[cluster] heartbeat_interval``; one whose heartbeat is older than ``dead_after``
(by the database's clock) is dead, and the SMPP sessions it recorded in ``binds``
stop counting against their tenant's ``max_sessions``. An instance clears its own
old binds when it starts, deletes its row (and so its binds) when it stops, and at
each heartbeat deletes any bind row of its own that it no longer holds (a release
that failed while the database was away). A claim of a session slot counts the
tenant's live binds and inserts the new one in one transaction under an advisory
lock on the tenant, so two instances cannot both take the last slot.

A job that must run on one instance at a time (retention) takes a session-level
advisory lock on a pooled connection for the length of its run; the lock ends with
the run, or with the connection if the instance dies.

The cluster has its own small connection pool, beside the store's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Collection, Sequence

import asyncpg

from gateway.cluster.base import BindRecord, ClusterError, InstanceView
from gateway.cluster.leases import DATABASE_ERRORS, LeasedRates
from gateway.cluster.schema import COMPONENT, MIGRATIONS
from gateway.config import Config
from gateway.logs import log_event
from gateway.metrics import Metrics, smsgw_version
from gateway.storage.pg_migrations import migrate

log = logging.getLogger(__name__)

_NOW = "extract(epoch FROM clock_timestamp())"
# Instances silent this long are forgotten, with their binds, when another starts.
FORGET_AFTER = 86400.0
# The first key of the advisory locks taken here (the second is the tenant or job).
_BIND_LOCKS = 0x736D6201  # "smb" 1
_RUN_LOCKS = 0x736D6202
# Connections of the cluster's own pool: heartbeats, claims and leases are short; a
# run lock holds one for the length of the run.
POOL_SIZE = 4

FORGET_SILENT = f"DELETE FROM instances WHERE heartbeat_at < {_NOW} - $1"
REGISTER = (
    "INSERT INTO instances (id, run, started_at, heartbeat_at, version)"
    f" VALUES ($1, $2, {_NOW}, {_NOW}, $3)"
    " ON CONFLICT (id) DO UPDATE SET run = excluded.run, started_at = excluded.started_at,"
    " heartbeat_at = excluded.heartbeat_at, http_url = '', admin_url = '', smpp_port = 0,"
    " version = excluded.version"
)
REJOIN = (
    "INSERT INTO instances (id, run, started_at, heartbeat_at, http_url, admin_url,"
    f" smpp_port, version) VALUES ($1, $2, {_NOW}, {_NOW}, $3, $4, $5, $6)"
    " ON CONFLICT (id) DO NOTHING"
)
ANNOUNCE = (
    "UPDATE instances SET http_url = $3, admin_url = $4, smpp_port = $5 WHERE id = $1 AND run = $2"
)
HEARTBEAT = f"UPDATE instances SET heartbeat_at = {_NOW} WHERE id = $1 AND run = $2"
LEAVE = "DELETE FROM instances WHERE id = $1 AND run = $2"
LISTING = (
    "SELECT i.id, i.started_at, i.heartbeat_at, i.http_url, i.admin_url, i.smpp_port,"
    f" i.version, i.heartbeat_at > {_NOW} - $1 AS alive,"
    " (SELECT count(*) FROM binds b WHERE b.instance = i.id) AS sessions"
    " FROM instances i ORDER BY alive DESC, i.id"
)
LIVE_ADMIN_URLS = (
    "SELECT admin_url FROM instances"
    f" WHERE heartbeat_at > {_NOW} - $1 AND admin_url <> '' ORDER BY heartbeat_at DESC"
)
CLEAR_BINDS = "DELETE FROM binds WHERE instance = $1"
STALE_BINDS = "DELETE FROM binds WHERE instance = $1 AND NOT (session = ANY($2::bigint[]))"
LOCK_TENANT = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
LIVE_BINDS = (
    "SELECT count(*) FROM binds b JOIN instances i ON i.id = b.instance"
    f" WHERE b.tenant = $1 AND i.heartbeat_at > {_NOW} - $2"
)
INSERT_BIND = (
    "INSERT INTO binds (instance, session, tenant, system_id, bind_type, receives, bound_at)"
    f" VALUES ($1, $2, $3, $4, $5, $6, {_NOW})"
)
DELETE_BIND = "DELETE FROM binds WHERE instance = $1 AND session = $2"
RECEIVERS = (
    "SELECT DISTINCT b.instance FROM binds b JOIN instances i ON i.id = b.instance"
    f" WHERE b.tenant = $1 AND b.receives AND i.heartbeat_at > {_NOW} - $2 ORDER BY 1"
)
TRY_RUN_LOCK = "SELECT pg_try_advisory_lock($1, hashtext($2))"
RUN_UNLOCK = "SELECT pg_advisory_unlock($1, hashtext($2))"


class PgInstances:
    """This instance's row in ``instances``, and the list of them."""

    def __init__(self, pool: asyncpg.Pool, instance: str, dead_after: float) -> None:
        self._pool = pool
        self._id = instance
        self._dead_after = dead_after
        # Tells this process's row from that of another started under the same id.
        self._run = secrets.token_hex(8)
        self._where = ("", "", 0)  # http_url, admin_url, smpp_port as announced

    @property
    def id(self) -> str:
        return self._id

    async def register(self) -> None:
        """Take this id's row (a restart replaces its last run) and clear its old binds."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(FORGET_SILENT, FORGET_AFTER)
            await conn.execute(REGISTER, self._id, self._run, smsgw_version())
            await conn.execute(CLEAR_BINDS, self._id)

    async def announce(self, http_url: str, admin_url: str, smpp_port: int) -> None:
        self._where = (http_url, admin_url, smpp_port)
        try:
            await self._pool.execute(ANNOUNCE, self._id, self._run, *self._where)
        except DATABASE_ERRORS as exc:
            raise ClusterError(f"cannot record this instance's URLs: {exc}") from exc

    async def heartbeat(self, held: Collection[BindRecord]) -> None:
        """Say this instance is alive, and leave only the binds it holds in ``binds``.

        A row gone (forgotten after a long silence) is written again with the binds;
        one taken by another process under the same id is left to it, and logged.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.execute(HEARTBEAT, self._id, self._run) == "UPDATE 0":
                rejoined = await conn.execute(
                    REJOIN, self._id, self._run, *self._where, smsgw_version()
                )
                if rejoined == "INSERT 0 0":
                    log_event(
                        log, "cluster.duplicate_instance_id", logging.ERROR, instance=self._id
                    )
                    return
                await conn.executemany(INSERT_BIND, [_bind_row(self._id, b) for b in held])
                log_event(log, "cluster.rejoined", logging.WARNING, instance=self._id)
            await conn.execute(STALE_BINDS, self._id, [bind.session for bind in held])

    async def leave(self) -> None:
        await self._pool.execute(LEAVE, self._id, self._run)

    async def listing(self) -> list[InstanceView]:
        try:
            rows = await self._pool.fetch(LISTING, self._dead_after)
        except DATABASE_ERRORS as exc:
            raise ClusterError(f"cannot read the instance list: {exc}") from exc
        return [
            InstanceView(
                id=row["id"],
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                http_url=row["http_url"],
                admin_url=row["admin_url"],
                smpp_port=row["smpp_port"],
                version=row["version"],
                alive=row["alive"],
                sessions=row["sessions"],
            )
            for row in rows
        ]


def _bind_row(instance: str, bind: BindRecord) -> tuple[object, ...]:
    return (
        instance,
        bind.session,
        bind.tenant,
        bind.system_id,
        bind.bind_type,
        bind.receives,
    )


class PgBinds:
    """This instance's SMPP sessions in ``binds``; the tenants' limits over every instance."""

    def __init__(
        self, pool: asyncpg.Pool, instance: str, dead_after: float, metrics: Metrics
    ) -> None:
        self._pool = pool
        self._instance = instance
        self._dead_after = dead_after
        self._metrics = metrics
        # Every bind this process holds or is claiming: the heartbeat keeps only these.
        self.held: dict[int, BindRecord] = {}

    async def claim(self, bind: BindRecord, limit: int) -> bool:
        self.held[bind.session] = bind  # before the insert, so no heartbeat deletes it
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(LOCK_TENANT, _BIND_LOCKS, bind.tenant)
                if await conn.fetchval(LIVE_BINDS, bind.tenant, self._dead_after) >= limit:
                    del self.held[bind.session]
                    return False
                await conn.execute(INSERT_BIND, *_bind_row(self._instance, bind))
        except DATABASE_ERRORS as exc:
            self.held.pop(bind.session, None)
            self._metrics.cluster_errors.labels("claim").inc()
            raise ClusterError(f"cannot claim a session slot: {exc}") from exc
        return True

    async def release(self, bind: BindRecord) -> None:
        if self.held.pop(bind.session, None) is None:
            return
        try:
            await self._pool.execute(DELETE_BIND, self._instance, bind.session)
        except DATABASE_ERRORS as exc:  # the next heartbeat deletes it
            self._metrics.cluster_errors.labels("release").inc()
            log_event(log, "cluster.release_failed", logging.WARNING, error=type(exc).__name__)

    async def receivers(self, tenant: str) -> Sequence[str]:
        try:
            rows = await self._pool.fetch(RECEIVERS, tenant, self._dead_after)
        except DATABASE_ERRORS as exc:
            raise ClusterError(f"cannot read the tenant's receivers: {exc}") from exc
        return [row["instance"] for row in rows]


class PgRunLocks:
    """One run of a job at a time over every instance: a session-level advisory lock."""

    def __init__(self, pool: asyncpg.Pool, instance: str) -> None:
        self._pool = pool
        self.instance = instance

    @contextlib.asynccontextmanager
    async def hold(self, job: str) -> AsyncIterator[bool]:
        try:
            conn = await self._pool.acquire()
        except DATABASE_ERRORS as exc:
            raise ClusterError(f"cannot take the {job} lock: {exc}") from exc
        try:
            try:
                held = bool(await conn.fetchval(TRY_RUN_LOCK, _RUN_LOCKS, job))
            except DATABASE_ERRORS as exc:
                raise ClusterError(f"cannot take the {job} lock: {exc}") from exc
            yield held
            if held:
                await conn.fetchval(RUN_UNLOCK, _RUN_LOCKS, job)
        finally:
            # The pool's reset on release unlocks whatever the connection still holds.
            await self._pool.release(conn)


class PgCluster:
    """The parts over one pool, and the heartbeat task that keeps this instance alive."""

    def __init__(self, pool: asyncpg.Pool, config: Config, instance: str, metrics: Metrics) -> None:
        self._pool = pool
        self._config = config.cluster
        self._metrics = metrics
        dead_after = config.cluster.dead_after
        self.instances = PgInstances(pool, instance, dead_after)
        self.binds = PgBinds(pool, instance, dead_after, metrics)
        self.rates = LeasedRates(pool, config.tenants, config.cluster.rate_lease, metrics)
        self.runs = PgRunLocks(pool, instance)
        self._heartbeat: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, config: Config, instance: str, metrics: Metrics) -> PgCluster:
        """Connect, migrate the cluster's tables, register this instance, start beating."""
        try:
            pool = await asyncpg.create_pool(config.storage.dsn, min_size=1, max_size=POOL_SIZE)
        except DATABASE_ERRORS as exc:
            raise ClusterError(f"cannot connect: {exc}") from exc
        cluster = cls(pool, config, instance, metrics)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, COMPONENT, MIGRATIONS)
            await cluster.instances.register()
            await cluster.rates.open()
            await cluster.show_live()
        except DATABASE_ERRORS as exc:
            await pool.close()
            raise ClusterError(f"cannot register this instance: {exc}") from exc
        except BaseException:
            await pool.close()
            raise
        cluster._heartbeat = asyncio.create_task(cluster._beat(), name="cluster-heartbeat")
        return cluster

    async def show_live(self) -> None:
        """``smsgw_instance_info``: one series per live instance."""
        live = [view for view in await self.instances.listing() if view.alive]
        info = self._metrics.instance_info
        info.clear()
        for view in live:
            info.labels(view.id, view.version).set(1)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._config.heartbeat_interval)
            try:
                await self.instances.heartbeat(list(self.binds.held.values()))
                await self.show_live()
            except (ClusterError, *DATABASE_ERRORS) as exc:
                self._metrics.cluster_errors.labels("heartbeat").inc()
                log_event(
                    log, "cluster.heartbeat_failed", logging.WARNING, error=type(exc).__name__
                )

    async def close(self) -> None:
        """Stop beating and leave the list (binds go with the row), then disconnect."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        try:
            await self.instances.leave()
        except DATABASE_ERRORS as exc:  # the others see it dead after dead_after
            log_event(log, "cluster.leave_failed", logging.WARNING, error=type(exc).__name__)
        await self._pool.close()


async def live_admin_urls(config: Config) -> list[str]:
    """The admin URLs of the live instances on ``[storage] dsn``, freshest heartbeat first.

    For the operator CLI, which has no lock file beside a PostgreSQL store to find a
    running gateway by. None if no instance ever started there.
    """
    try:
        conn = await asyncpg.connect(config.storage.dsn)
    except DATABASE_ERRORS as exc:
        raise ClusterError(f"cannot connect: {exc}") from exc
    try:
        if await conn.fetchval("SELECT to_regclass('instances') IS NULL"):
            return []
        rows = await conn.fetch(LIVE_ADMIN_URLS, config.cluster.dead_after)
        return [row["admin_url"] for row in rows]
    except DATABASE_ERRORS as exc:
        raise ClusterError(f"cannot read the instance list: {exc}") from exc
    finally:
        await conn.close()
