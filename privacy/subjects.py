"""Data-subject rights, per tenant: export, erasure, restriction, objection.

A subject is found by its number in clear (identifiable traffic rows, the handset
inbox, what it sent to the tenant, kept notices), by its registry pseudonym
(consent records, audit entries) and by its pseudonym under each live epoch key
(pseudonymised traffic rows); an erasure also drops what the running gateway holds
of it in memory (messages on their way, kept notices, refused submits). Once
an epoch key is destroyed, rows under it cannot be linked to anyone any more, so
they are neither exported nor erased: they are anonymous. Every request is
recorded in the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway.blocked import BlockedAttempts
from gateway.config import TenantConfig
from gateway.documents import iso_time, message_document
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.store import Store
from privacy.audit import AuditEntry, AuditLog
from privacy.keys import KeyRing
from privacy.pseudonyms import pseudonymise
from privacy.registry import ConsentEvent, ConsentRegistry, EventKind, Source

if TYPE_CHECKING:
    from gateway.cluster.held import RemoteHolds


class HeldNotices(Protocol):
    """Where a running gateway holds receipts and MO in memory (the SMPP notice queue)."""

    def handsets(self, tenant: str) -> set[str]:
        """The handsets the tenant's notices in memory name."""
        ...

    def forget_handset(self, tenant: str, handset: str, stored: int) -> None:
        """Drop the handset's notices, whose ``stored`` rows an erasure deleted."""
        ...


class SubjectRights:
    def __init__(
        self,
        store: Store,
        keys: KeyRing,
        registry: ConsentRegistry,
        audit: AuditLog,
        metrics: Metrics,
        clock: Callable[[], float],
        network: SimulatedNetwork | None = None,
        notices: HeldNotices | None = None,
        blocked: BlockedAttempts | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._registry = registry
        self._audit = audit
        self._metrics = metrics
        self._clock = clock
        self._network = network
        self._notices = notices
        self._blocked = blocked
        self._holds: RemoteHolds | None = None

    def share(self, holds: RemoteHolds) -> None:
        """Instances share the store: an erasure here drops what every instance holds of the
        subject first, and one through another instance drops what this one holds."""
        self._holds = holds
        holds.serve("erase", self._erase_held)

    def _erase_held(self, args: list[Any]) -> Awaitable[None] | None:
        """Another instance erases a subject (tenant, registry pseudonym): all answer."""
        if len(args) != 2 or not all(isinstance(arg, str) for arg in args):
            return None
        tenant, subject = args
        return self._drop_held(tenant, subject)

    async def _drop_held(self, tenant: str, subject: str) -> None:
        """Cancel the subject's messages held here (committed), then drop its notices and
        refused submits from memory: the erasure's commit deletes their rows."""
        held = set(self._network.recipients(tenant)) if self._network is not None else set()
        held |= self._notices.handsets(tenant) if self._notices is not None else set()
        held |= self._blocked.last_at(tenant).keys() if self._blocked is not None else set()
        numbers = [n for n in held if self._registry.subject(tenant, n) == subject]
        self._cancel_held_messages(tenant, numbers)
        await self._store.flush()  # the deleted states, and the receipts they made
        for e164 in numbers:
            if self._notices is not None:
                self._notices.forget_handset(tenant, e164, 0)
            if self._blocked is not None:
                self._blocked.forget_handset(tenant, e164)

    def _cancel_held_messages(self, tenant: str, numbers: Sequence[str]) -> None:
        if self._network is not None:
            for e164 in numbers:
                for message_id in self._network.pending_to(tenant, e164):
                    self._network.cancel(tenant, message_id)

    def _names(self, tenant: str, e164: str) -> list[str]:
        """Every value a traffic row may hold for this number: clear, and one per live epoch."""
        names = [e164]
        for epoch in self._keys.epochs(tenant):
            key = self._keys.epoch_key(tenant, epoch, create=False)
            if key is not None:
                names.append(pseudonymise(key, e164))
        return names

    async def export(self, tenant: TenantConfig, e164: str, actor: str) -> dict[str, Any]:
        subject = self._registry.subject(tenant.id, e164)
        store = self._store
        names = self._names(tenant.id, e164)
        messages = [
            message_document(m) for m in await store.traffic.subject_messages(tenant.id, names)
        ]
        inbox = await store.inbox.for_handset(tenant.id, e164)
        notices = await store.notices.for_handset(tenant.id, e164)
        sent = await store.inbound.for_handset(tenant.id, e164)
        [state] = await self._registry.states(tenant.id, [subject])
        history = await self._registry.history(tenant.id, subject)
        await self._record(tenant.id, subject, actor, "subject_export")
        return {
            "msisdn": e164,
            "subject": subject,
            "tenant": tenant.id,
            "exported_at": iso_time(self._clock()),
            "consent": {
                "opted_out": bool(state.opted_out),
                "restricted": state.restricted is not None,
                "consents": sorted({p for p, _ in state.consents}),
                "history": [e.document() for e in history],
            },
            "messages": [m for m in messages if not m["pseudonymised"]],
            "pseudonymised_messages": [m for m in messages if m["pseudonymised"]],
            "handset_inbox": [
                {
                    "message_id": entry.message_ids[0],
                    "from": entry.sender,
                    "body": entry.body,
                    "received_at": iso_time(entry.received_at),
                }
                for entry in inbox
            ],
            "sent_to_tenant": [
                {
                    "message_id": mo.message_id,
                    "to": mo.address,
                    "body": mo.body,
                    "keyword": mo.keyword,
                    "received_at": iso_time(mo.received_at),
                }
                for mo in sent
            ],
            "pending_notices": [
                {
                    "kind": n.kind.value,
                    "id": n.message_id,
                    "to": n.address,
                    "body": n.body,
                    "created_at": iso_time(n.created_at),
                }
                for n in notices
            ],
        }

    async def erase(self, tenant: TenantConfig, e164: str, actor: str) -> dict[str, int]:
        """Delete everything about the subject but a suppression entry if it opted out.

        Shared, every other live instance first cancels the subject's messages it holds
        and drops its notices from memory; if one does not answer, nothing is erased
        (`gateway.cluster.held.Unanswered`).
        """
        subject = self._registry.subject(tenant.id, e164)
        store, names = self._store, self._names(tenant.id, e164)
        if self._holds is not None:
            await self._holds.ask_everyone("erase", [tenant.id, subject])
        self._cancel_held_messages(tenant.id, [e164])
        counts = {
            "messages": await store.traffic.count_subject(tenant.id, names),
            "inbox": await store.inbox.count_handset(tenant.id, e164),
            "inbound": await store.inbound.count_handset(tenant.id, e164),
            "notices": await store.notices.count_handset(tenant.id, e164),
            "consent_events": await store.consent.count_subject(tenant.id, subject),
        }
        [state] = await self._registry.states(tenant.id, [subject])
        entry = AuditEntry(tenant.id, self._clock(), actor, "subject_erased", None)
        await store.commit(
            "erase_subject",
            [
                *store.traffic.erase_subject(tenant.id, names),
                *store.inbox.erase_handset(tenant.id, e164),
                *store.inbound.erase_handset(tenant.id, e164),
                *store.notices.erase_handset(tenant.id, e164),
                *self._registry.erase_steps(tenant.id, subject, state),
                *store.audit.redact(tenant.id, subject),
                *self._audit.steps([entry]),
            ],
        )
        self._registry.forget(tenant.id, e164, subject, state)
        if self._notices is not None:
            self._notices.forget_handset(tenant.id, e164, counts["notices"])
        if self._blocked is not None:
            self._blocked.forget_handset(tenant.id, e164)
        self._metrics.subject_requests.labels(tenant.id, "erase").inc()
        await self._store.checkpoint()
        return {**counts, "suppression_kept": int(bool(state.opted_out))}

    async def restrict(self, tenant: TenantConfig, e164: str, actor: str, on: bool) -> None:
        kind = EventKind.RESTRICTED if on else EventKind.RESTRICTION_LIFTED
        await self._event(tenant, e164, actor, kind, "restrict" if on else "unrestrict")

    async def record_objection(self, tenant: TenantConfig, e164: str, actor: str) -> None:
        """An objection: an opt-out of every purpose, from every sender of the tenant."""
        await self._event(tenant, e164, actor, EventKind.OPTED_OUT, "object", "objection")

    async def _event(
        self,
        tenant: TenantConfig,
        e164: str,
        actor: str,
        kind: EventKind,
        request: str,
        evidence: str = "",
    ) -> None:
        event = ConsentEvent(
            tenant=tenant.id,
            subject=self._registry.subject(tenant.id, e164),
            kind=kind,
            source=Source.API,
            at=self._clock(),
            evidence=evidence,
        )
        await self._registry.record([event], actor=actor)
        self._metrics.subject_requests.labels(tenant.id, request).inc()

    async def _record(self, tenant: str, subject: str, actor: str, action: str) -> None:
        await self._audit.append([AuditEntry(tenant, self._clock(), actor, action, subject)])
        self._metrics.subject_requests.labels(tenant, action.removeprefix("subject_")).inc()
