"""The privacy services over one store and key ring, wired the same for the app and the CLI.

They open in two steps because of one cycle in the running gateway: the pipeline gates
on the consent registry and the network checks it before each delivery, while an
erasure must also reach what the network and the SMPP notice queue hold in memory, and
those exist only once the pipeline does. So the core (audit log, registry, retention)
opens first, and subject rights and the operator are added over it once the in-memory
holders exist. The offline CLI has no such holders and takes both steps at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.blocked import BlockedAttempts
from gateway.cluster.base import RunLocks
from gateway.config import Config
from gateway.events import EventBus
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.server.operator import Operator
from gateway.store import Store
from privacy.audit import AuditLog
from privacy.keys import KeyRing
from privacy.registry import ConsentRegistry
from privacy.retention import Retention
from privacy.subjects import SubjectRights

if TYPE_CHECKING:
    from smpp.notices import NoticeQueue


@dataclass(frozen=True, slots=True)
class PrivacyCore:
    """What the pipeline and the network check, so it opens before them."""

    audit: AuditLog
    registry: ConsentRegistry
    retention: Retention


@dataclass(frozen=True, slots=True)
class PrivacyServices:
    audit: AuditLog
    registry: ConsentRegistry
    retention: Retention
    subjects: SubjectRights
    operator: Operator


async def open_privacy_core(
    config: Config,
    store: Store,
    keys: KeyRing,
    metrics: Metrics,
    clock: Callable[[], float],
    events: EventBus | None = None,
    runs: RunLocks | None = None,
) -> PrivacyCore:
    """Read the audit chain heads and build the registry and retention over the store.

    ``events`` is the running gateway's stream, told of each committed consent change;
    ``runs`` the cluster's run locks, which keep retention to one instance at a time.
    """
    audit = await AuditLog.open(store)
    return PrivacyCore(
        audit=audit,
        registry=ConsentRegistry(config, store, keys, audit, metrics, clock, events),
        retention=Retention(config, store, keys, metrics, clock, runs),
    )


def open_privacy(
    core: PrivacyCore,
    config: Config,
    store: Store,
    keys: KeyRing,
    metrics: Metrics,
    clock: Callable[[], float],
    *,
    network: SimulatedNetwork | None = None,
    notices: NoticeQueue | None = None,
    events: EventBus | None = None,
    blocked: BlockedAttempts | None = None,
) -> PrivacyServices:
    """Add subject rights and the operator over ``core``.

    ``network``, ``notices``, ``events`` and ``blocked`` are the running gateway's in-memory holders
    of a subject's or tenant's data, which an erasure or purge clears as well; offline
    there are none.
    """
    subjects = SubjectRights(
        store, keys, core.registry, core.audit, metrics, clock, network, notices, blocked
    )
    operator = Operator(
        config,
        store,
        keys,
        core.audit,
        core.registry,
        subjects,
        core.retention,
        network,
        notices,
        events,
        blocked,
    )
    return PrivacyServices(core.audit, core.registry, core.retention, subjects, operator)
