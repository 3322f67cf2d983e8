"""Resets of one tenant's simulator state, for test suites that reuse numbers.

Each reset deletes only the tenant's rows, composed into one commit with its audit
entry (as an erasure is), and drops what the running gateway holds of them in memory
in the same step, with no await in between, as the deletes are queued: whatever
arrives for the tenant from then on lands after them. Enabled only with
``[simulator] allow_reset`` (the routes check it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.blocked import BlockedAttempts
from gateway.config import TenantConfig
from gateway.network import SimulatedNetwork
from gateway.storage.base import Steps, TenantData
from gateway.store import Store, StoreError
from privacy.audit import AuditEntry, AuditLog
from privacy.registry import ConsentRegistry
from smpp.notices import NoticeQueue

if TYPE_CHECKING:
    from gateway.cluster.held import RemoteHolds

ACTION = "simulator_reset"


class SimulatorReset:
    def __init__(
        self,
        store: Store,
        network: SimulatedNetwork,
        notices: NoticeQueue,
        blocked: BlockedAttempts,
        registry: ConsentRegistry,
        audit: AuditLog,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._network = network
        self._notices = notices
        self._blocked = blocked
        self._registry = registry
        self._audit = audit
        self._clock = clock
        self._holds: RemoteHolds | None = None

    def share(self, holds: RemoteHolds) -> None:
        """Instances share the store: a reset or purge of a tenant through any instance drops
        what every instance holds of it first (`drop_elsewhere`)."""
        self._holds = holds
        holds.serve("drop_tenant", self._drop_held)

    def _drop_held(self, args: list[Any]) -> Awaitable[None] | None:
        if len(args) != 1 or not isinstance(args[0], str):
            return None
        return self._drop_here(args[0])

    async def _drop_here(self, tenant: str) -> None:
        """Forget the tenant's messages and notices held here, writing nothing: the asking
        instance's commit deletes or ends their rows."""
        self._network.drop_tenant(tenant)
        self._notices.forget_tenant(tenant)
        self._blocked.forget_tenant(tenant)

    async def drop_elsewhere(self, tenant: str) -> None:
        """Have every other live instance drop what it holds of the tenant; Unanswered if
        one does not answer (then nothing is reset or purged)."""
        if self._holds is not None:
            await self._holds.ask_everyone("drop_tenant", [tenant])

    async def clear_handset(self, tenant: TenantConfig, msisdn: str, actor: str) -> dict[str, int]:
        """Empty one handset's inbox (what it received from the tenant)."""
        inbox = self._store.inbox
        counts = {"inbox": await inbox.count_handset(tenant.id, msisdn)}
        subject = self._registry.subject(tenant.id, msisdn)
        await self._commit(
            tenant, actor, "scope=handset", inbox.erase_handset(tenant.id, msisdn), subject
        )
        return counts

    async def clear_handsets(self, tenant: TenantConfig, actor: str) -> dict[str, int]:
        """Empty every handset inbox of the tenant."""
        inbox = self._store.inbox
        counts = await inbox.tenant_rows(tenant.id)
        await self._commit(tenant, actor, "scope=handsets", inbox.purge_tenant(tenant.id))
        return counts

    async def reset(
        self, tenant: TenantConfig, actor: str, *, traffic: bool, consent: bool
    ) -> dict[str, int]:
        """Clear inboxes, MO, kept notices, the refused submits kept in memory and messages
        on their way; the traffic log and the consent records too if asked. Returns the
        rows cleared per table."""
        store = self._store
        kept: list[TenantData] = [store.inbox, store.inbound, store.notices]
        if consent:
            kept.append(store.consent)
        counts: dict[str, int] = {}
        for repository in kept:
            counts.update(await repository.tenant_rows(tenant.id))
        await self.drop_elsewhere(tenant.id)
        steps = [step for repository in kept for step in repository.purge_tenant(tenant.id)]
        if traffic:
            counts["messages"] = (await store.traffic.tenant_rows(tenant.id))["messages"]
            steps += store.traffic.erase_messages(tenant.id)
        else:
            steps += store.traffic.end_unfinished(tenant.id, self._clock(), "reset")
        # From here to the commit's queueing, no await: see the module's docstring.
        self._network.drop_tenant(tenant.id)
        self._notices.forget_tenant(tenant.id)
        self._blocked.forget_tenant(tenant.id)
        if consent:
            self._registry.forget_tenant(tenant.id, configured=True)
        detail = f"scope=tenant traffic={str(traffic).lower()} consent={str(consent).lower()}"
        await self._commit(tenant, actor, detail, steps)
        return counts

    async def _commit(
        self,
        tenant: TenantConfig,
        actor: str,
        detail: str,
        steps: Steps,
        subject: str | None = None,
    ) -> None:
        entry = AuditEntry(tenant.id, self._clock(), actor, ACTION, subject, detail)
        try:
            await self._store.commit("simulator_reset", [*steps, *self._audit.steps([entry])])
        except StoreError:
            await self._audit.resync()
            raise
