"""Operator actions, one implementation for the admin API and the offline CLI.

The running gateway calls these with its own parts (so its caches and in-memory keys
change with the store); the CLI, when no gateway runs, builds the same parts on the files
it has locked. Errors are `OperatorError`s, which the admin API answers as problem+json
and the CLI prints as one line.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.config import Config, TenantConfig
from gateway.events import EventBus
from gateway.numbers import InvalidNumber, normalise_msisdn
from gateway.store import Store
from privacy.audit import AuditLog, verify
from privacy.keys import KeyRing
from privacy.registry import ConsentRegistry
from privacy.retention import Retention, RetentionRunning, UnknownTenant, purge_tenant
from privacy.subjects import SubjectRights

if TYPE_CHECKING:
    from gateway.blocked import BlockedAttempts
    from gateway.network import SimulatedNetwork
    from smpp.notices import NoticeQueue

ACTOR = "operator"


class OperatorError(Exception):
    """A refused operator action; ``status`` and ``code`` as the admin API answers it."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def _retention_running() -> OperatorError:
    return OperatorError(
        409,
        "retention_running",
        "another instance sharing the store is running retention; try again when it is done",
    )


class Operator:
    def __init__(
        self,
        config: Config,
        store: Store,
        keys: KeyRing,
        audit: AuditLog,
        registry: ConsentRegistry,
        subjects: SubjectRights,
        retention: Retention,
        network: SimulatedNetwork | None = None,
        notices: NoticeQueue | None = None,
        events: EventBus | None = None,
        blocked: BlockedAttempts | None = None,
    ) -> None:
        """``network``, ``notices``, ``events`` and ``blocked`` hold a running gateway's
        messages, receipts, recent events and refused submits in memory, which a purge
        drops too; offline there are none."""
        self._tenants = {tenant.id: tenant for tenant in config.tenants}
        self._store = store
        self._keys = keys
        self._audit = audit
        self._registry = registry
        self._subjects = subjects
        self._retention = retention
        self._network = network
        self._notices = notices
        self._events = events
        self._blocked = blocked
        # Shared: drops what the other instances hold of a tenant before its purge.
        self._drop_elsewhere: Callable[[str], Awaitable[None]] | None = None
        # A purge and an audit verify see each other's whole effect, never half of it.
        self._purging = asyncio.Lock()

    def knows(self, tenant_id: str) -> bool:
        """A configured tenant, or one that still holds keys (safe to name in a log)."""
        return tenant_id in self._tenants or tenant_id in self._keys.tenant_ids()

    def _tenant(self, tenant_id: str) -> TenantConfig:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise OperatorError(404, "unknown_tenant", f"no tenant {tenant_id!r} is configured")
        return tenant

    def _number(self, tenant: TenantConfig, raw: str) -> str:
        try:
            return normalise_msisdn(raw, tenant.default_country)
        except InvalidNumber as exc:
            raise OperatorError(400, "invalid_recipient", f"not a phone number: {exc}") from None

    async def export(self, tenant_id: str, msisdn: str) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        return await self._subjects.export(tenant, self._number(tenant, msisdn), ACTOR)

    async def erase(self, tenant_id: str, msisdn: str) -> dict[str, int]:
        tenant = self._tenant(tenant_id)
        return await self._subjects.erase(tenant, self._number(tenant, msisdn), ACTOR)

    async def restrict(self, tenant_id: str, msisdn: str, on: bool) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        e164 = self._number(tenant, msisdn)
        await self._subjects.restrict(tenant, e164, ACTOR, on=on)
        return await self._state(tenant, e164)

    async def record_objection(self, tenant_id: str, msisdn: str) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        e164 = self._number(tenant, msisdn)
        await self._subjects.record_objection(tenant, e164, ACTOR)
        return await self._state(tenant, e164)

    async def _state(self, tenant: TenantConfig, e164: str) -> dict[str, Any]:
        subject = self._registry.subject(tenant.id, e164)
        [state] = await self._registry.states(tenant.id, [subject])
        return {
            "tenant": tenant.id,
            "subject": subject,
            "opted_out": bool(state.opted_out),
            "restricted": state.restricted is not None,
        }

    def drop_elsewhere(self, drop: Callable[[str], Awaitable[None]]) -> None:
        """Instances share the store: a purge first has ``drop`` clear the others' memory."""
        self._drop_elsewhere = drop

    async def purge(self, tenant_id: str) -> dict[str, int]:
        """Delete the tenant's rows and keys, and forget it in memory in the same step."""
        configured = tenant_id in self._tenants

        def forget() -> None:
            self._audit.forget_tenant(tenant_id)
            self._registry.forget_tenant(tenant_id, configured)
            if self._network is not None:
                self._network.drop_tenant(tenant_id)
            if self._notices is not None:
                self._notices.forget_tenant(tenant_id)
            if self._events is not None:
                self._events.forget_tenant(tenant_id)
            if self._blocked is not None:
                self._blocked.forget_tenant(tenant_id)

        try:
            # No retention run meanwhile: it would make keys for rows about to go.
            async with self._purging, self._retention.exclusive() as alone:
                if not alone:
                    raise _retention_running()
                if self._drop_elsewhere is not None:
                    await self._drop_elsewhere(tenant_id)
                return await purge_tenant(
                    self._store, self._keys, tenant_id, configured=configured, forget=forget
                )
        except UnknownTenant:
            raise OperatorError(
                404, "unknown_tenant", f"no tenant {tenant_id!r}: not configured, no keys, no data"
            ) from None

    async def run_retention(self) -> dict[str, Any]:
        try:
            return dataclasses.asdict(await self._retention.run())
        except RetentionRunning:
            raise _retention_running() from None

    async def verify_audit(self) -> dict[str, Any]:
        async with self._purging:
            verdicts = await verify(self._store)
        return {
            "ok": all(v.ok for v in verdicts),
            "tenants": [
                {
                    "tenant": v.tenant,
                    "entries": v.entries,
                    "ok": v.ok,
                    "broken_at": v.broken_at,
                    "problem": v.problem,
                }
                for v in verdicts
            ],
        }
