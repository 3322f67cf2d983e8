"""What the rest of the gateway asks of the cluster, as interfaces with two implementations.

`gateway.cluster.local` is one instance alone (the SQLite store): everything is in
memory and nothing waits. `gateway.cluster.postgres` shares the same answers between
instances through the PostgreSQL database. Callers hold a `Cluster` and never know
which one they have.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from gateway.rates import SubmitRates


class ClusterError(Exception):
    """The shared database did not answer; what asked is refused, not guessed."""


@dataclass(frozen=True, slots=True)
class InstanceView:
    """One instance as the operator sees it (times are Unix seconds, the database's clock)."""

    id: str
    started_at: float
    heartbeat_at: float
    http_url: str  # "" until it listens
    admin_url: str  # "" without an admin API
    smpp_port: int
    version: str
    alive: bool  # a heartbeat within [cluster] dead_after
    sessions: int  # SMPP sessions it holds


@dataclass(frozen=True, slots=True)
class BindRecord:
    """An SMPP session holding one of its tenant's ``max_sessions`` slots."""

    tenant: str
    system_id: str
    bind_type: str  # transmitter, receiver or transceiver
    receives: bool  # receiver or transceiver: receipts and MO can go to it
    session: int  # the connection's number within its instance


class Instances(Protocol):
    """This instance's entry in the instance list, and the list."""

    @property
    def id(self) -> str: ...

    async def announce(self, http_url: str, admin_url: str, smpp_port: int) -> None:
        """Say where this instance listens, once it does."""

    async def listing(self) -> list[InstanceView]:
        """Every instance known, this one included, live ones first."""


class Binds(Protocol):
    """Which instance holds which SMPP session, for limits that span instances."""

    async def claim(self, bind: BindRecord, limit: int) -> bool:
        """Record ``bind`` unless its tenant's live sessions number ``limit`` already.

        Race-free: two instances claiming the last slot together get one each of
        True and False. Raises ClusterError if that cannot be decided.
        """

    async def release(self, bind: BindRecord) -> None:
        """Give the slot back (a bind never claimed, or released already, is no error)."""

    async def receivers(self, tenant: str) -> Sequence[str]:
        """The live instances holding a receiver or transceiver of ``tenant``."""


class RunLocks(Protocol):
    """Jobs that must run on one instance at a time."""

    @property
    def instance(self) -> str: ...

    def hold(self, job: str) -> AbstractAsyncContextManager[bool]:
        """True inside if this instance may run ``job`` now; False: another one is."""


class Cluster(Protocol):
    """The parts, opened together by `gateway.cluster.open_cluster`."""

    @property
    def instances(self) -> Instances: ...
    @property
    def binds(self) -> Binds: ...
    @property
    def rates(self) -> SubmitRates: ...
    @property
    def runs(self) -> RunLocks: ...

    async def close(self) -> None:
        """Leave the instance list and stop the background work."""
