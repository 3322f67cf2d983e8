"""The cluster of one: the gateway on its SQLite store, which no other process shares.

Everything the PostgreSQL cluster asks the database is known here in memory, and
nothing awaits anything: the instance list is this instance, a session slot is a
count, retention always runs, and the rate limits are this process's buckets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from gateway.cluster.base import BindRecord, InstanceView
from gateway.config import Config
from gateway.metrics import Metrics, smsgw_version
from gateway.rates import LocalRates


class LocalInstances:
    def __init__(self, instance: str, clock: Callable[[], float], metrics: Metrics) -> None:
        self._id = instance
        self._clock = clock
        self._started_at = clock()
        self._http_url = self._admin_url = ""
        self._smpp_port = 0
        self.sessions = 0  # kept by LocalBinds
        metrics.instance_info.labels(instance, smsgw_version()).set(1)

    @property
    def id(self) -> str:
        return self._id

    async def announce(self, http_url: str, admin_url: str, smpp_port: int) -> None:
        self._http_url, self._admin_url, self._smpp_port = http_url, admin_url, smpp_port

    async def listing(self) -> list[InstanceView]:
        return [
            InstanceView(
                id=self._id,
                started_at=self._started_at,
                heartbeat_at=self._clock(),
                http_url=self._http_url,
                admin_url=self._admin_url,
                smpp_port=self._smpp_port,
                version=smsgw_version(),
                alive=True,
                sessions=self.sessions,
            )
        ]


class LocalBinds:
    """The tenants' bound sessions, counted."""

    def __init__(self, instances: LocalInstances) -> None:
        self._instances = instances
        self._binds: dict[str, set[BindRecord]] = {}

    async def claim(self, bind: BindRecord, limit: int) -> bool:
        held = self._binds.setdefault(bind.tenant, set())
        if len(held) >= limit:
            return False
        held.add(bind)
        self._instances.sessions += 1
        return True

    async def release(self, bind: BindRecord) -> None:
        held = self._binds.get(bind.tenant, set())
        if bind in held:
            held.discard(bind)
            self._instances.sessions -= 1

    async def receivers(self, tenant: str) -> Sequence[str]:
        receiving = any(bind.receives for bind in self._binds.get(tenant, ()))
        return [self._instances.id] if receiving else []


class LocalRunLocks:
    """Each job runs here; the job's own lock keeps two runs of it apart."""

    def __init__(self, instance: str) -> None:
        self.instance = instance

    @contextlib.asynccontextmanager
    async def hold(self, job: str) -> AsyncIterator[bool]:
        yield True


class LocalCluster:
    def __init__(
        self, config: Config, instance: str, metrics: Metrics, clock: Callable[[], float]
    ) -> None:
        self.instances = LocalInstances(instance, clock, metrics)
        self.binds = LocalBinds(self.instances)
        self.rates = LocalRates(config.tenants)
        self.runs = LocalRunLocks(instance)

    async def close(self) -> None:
        """Nothing is held outside this process."""
