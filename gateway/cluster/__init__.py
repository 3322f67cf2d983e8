"""Several gateway instances on one PostgreSQL store, behaving as one gateway.

Each instance has an id (`instance.instance_id`). What one instance did and another must
know (a bind, an opt-out, a notice for a receiver bound elsewhere, an event) goes
through the shared database and its notifications; with the SQLite store there is one
instance and `local.LocalCluster` answers everything from memory. `open_cluster` picks
the one the store's backend needs; the interfaces are in `base`.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.cluster.base import Cluster
from gateway.cluster.local import LocalCluster
from gateway.cluster.postgres import PgCluster
from gateway.config import Config, StorageBackend
from gateway.metrics import Metrics


async def open_cluster(
    config: Config, instance: str, metrics: Metrics, clock: Callable[[], float]
) -> Cluster:
    """The cluster of the store's backend: ClusterError if the database does not answer."""
    if config.storage.backend is StorageBackend.POSTGRES:
        return await PgCluster.open(config, instance, metrics)
    return LocalCluster(config, instance, metrics, clock)
