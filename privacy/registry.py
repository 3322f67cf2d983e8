"""The consent and opt-out registry, checked inline for every message.

Each tenant is the controller of its recipients' data, so records are kept per
tenant, and a recipient is stored only as a keyed pseudonym (HMAC under the
tenant's registry key from the key file, never in the database): a submit is
checked by computing the same pseudonym, so an opt-out recorded in any form of
a number blocks every other form of it.

History is append-only (``consent_events``); a subject's current state is
derived from its events, which one index range scan returns, so a check costs
the same with ten million records as with ten thousand. A bounded LRU cache
keeps recent subjects in memory. Subjects changed while the process runs are
also kept in ``_changed`` and never evicted from it: the network asks it just
before delivering, so a message accepted before an opt-out but not yet
delivered is stopped too.

Most numbers have no record at all, and a Bloom filter per tenant
(`privacy.known_subjects`) says so without a read: built at start by paging through
the table, and told of every subject before its record is written, so it never
misses one whose write was acknowledged. Until it is built, every lookup reads.

Shared by several instances (the PostgreSQL store), the registry changes under this
process's feet, so correctness comes before the caches: every submit check and every
`states` read goes to the database (one query per submit batch and tenant), the filter
and the LRU caches are not consulted, and each delivery tick re-reads the subjects of
the messages it is about to deliver (`recheck_before_delivery`), which closes the window
between another instance's commit and its notification. Each committed change is also
announced on the cluster bus (tenant and pseudonym), so ``_changed`` and `may_deliver`
learn of another instance's opt-out as fast as of a local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.cluster.bus import ClusterBus
from gateway.config import Config, StorageBackend
from gateway.documents import iso_time
from gateway.domain import Interface, Message, RejectCode, Rejected
from gateway.events import CONSENT_CHANGED, EventBus
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.storage.base import ConsentRow, NewConsentRow, Steps
from gateway.store import Store, StoreError
from privacy.audit import AuditEntry, AuditLog
from privacy.keys import KeyRing
from privacy.known_subjects import KnownSubjects
from privacy.pseudonyms import pseudonymise

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    CONSENT_GIVEN = "consent_given"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    OPTED_OUT = "opted_out"
    OPT_OUT_LIFTED = "opt_out_lifted"
    RESTRICTED = "restricted"
    RESTRICTION_LIFTED = "restriction_lifted"


class Source(StrEnum):
    """Where the proof of a record comes from."""

    API = "api"
    KEYWORD = "keyword"
    IMPORT = "import"
    # The suppression entry kept when an opted-out subject's data was erased.
    ERASURE = "erasure"


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One change to a subject's consent or opt-out; never edited once written.

    ``purpose`` None means every purpose (an opt-out); ``sender`` None means every
    sender of the tenant.
    """

    tenant: str
    subject: str = field(repr=False)
    kind: EventKind
    source: Source
    at: float
    evidence: str = field(default="", repr=False)
    purpose: str | None = None
    sender: str | None = None
    seq: int | None = None

    def document(self) -> dict[str, Any]:
        """As the consent, audit and export APIs show it (the subject is shown apart)."""
        return {
            "kind": self.kind.value,
            "purpose": self.purpose,
            "sender": self.sender,
            "source": self.source.value,
            "evidence": self.evidence,
            "at": iso_time(self.at),
        }


@dataclass(slots=True)
class SubjectState:
    """A subject's current state, folded from its events in order."""

    opted_out: dict[str | None, ConsentEvent] = field(default_factory=dict)
    consents: dict[tuple[str, str | None], ConsentEvent] = field(default_factory=dict)
    restricted: ConsentEvent | None = None

    def apply(self, event: ConsentEvent) -> None:
        if event.kind is EventKind.RESTRICTED:
            self.restricted = event
        elif event.kind is EventKind.RESTRICTION_LIFTED:
            self.restricted = None
        elif event.kind is EventKind.OPTED_OUT:
            self.opted_out[event.sender] = event
        elif event.kind is EventKind.OPT_OUT_LIFTED:
            if event.sender is None:
                self.opted_out.clear()
            else:
                self.opted_out.pop(event.sender, None)
        elif event.kind is EventKind.CONSENT_GIVEN:
            assert event.purpose is not None
            self.consents[(event.purpose, event.sender)] = event
        elif event.kind is EventKind.CONSENT_WITHDRAWN:
            assert event.purpose is not None
            for key in [k for k in self.consents if k[0] == event.purpose]:
                if event.sender is None or key[1] == event.sender:
                    del self.consents[key]

    def blocks(self, purpose: str, sender: str, requires_consent: bool) -> RejectCode | None:
        if self.restricted is not None:
            return RejectCode.PROCESSING_RESTRICTED
        if None in self.opted_out or sender in self.opted_out:
            return RejectCode.RECIPIENT_OPTED_OUT
        if (
            requires_consent
            and (purpose, None) not in self.consents
            and ((purpose, sender) not in self.consents)
        ):
            return RejectCode.CONSENT_REQUIRED
        return None


# The cached state of every subject with no record, shared: most numbers a tenant sends
# to have none, and a state object with two dicts each would be 180 bytes a subject
# (18 MB and 300,000 objects for the collector to walk at the default cache size).
# Never mutated: `_apply` starts a subject's own state from it.
_NO_RECORD = SubjectState()

# Why a message on its way was stopped, as its final error says.
_STOPPED_BECAUSE = {
    RejectCode.PROCESSING_RESTRICTED: "processing_restricted",
    RejectCode.RECIPIENT_OPTED_OUT: "opted_out",
    RejectCode.CONSENT_REQUIRED: "consent_withdrawn",
}
_REASONS = {
    RejectCode.PROCESSING_RESTRICTED: "processing of this recipient's data is restricted",
    RejectCode.RECIPIENT_OPTED_OUT: "the recipient opted out",
    RejectCode.CONSENT_REQUIRED: "this purpose needs the recipient's consent",
}


class ConsentRegistry:
    def __init__(
        self,
        config: Config,
        store: Store,
        keys: KeyRing,
        audit: AuditLog,
        metrics: Metrics,
        clock: Callable[[], float],
        events: EventBus | None = None,
    ) -> None:
        """``events`` is the running gateway's stream; offline (the CLI) there is none."""
        self._store = store
        self._events = events
        self._keys = keys
        self._audit = audit
        self._metrics = metrics
        self._clock = clock
        self._requires_consent = {p.name: p.requires_consent for p in config.privacy.purposes}
        self._cache_size = config.privacy.registry_cache
        # Two bounded LRU caches: number -> pseudonym (saves the HMAC), pseudonym -> state.
        self._subjects: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._states: OrderedDict[tuple[str, str], SubjectState] = OrderedDict()
        # Subjects changed recently, authoritative over the caches and kept for as long as
        # a message accepted before the change can still be on its way.
        self._changed: OrderedDict[tuple[str, str], tuple[float, SubjectState]] = OrderedDict()
        self._horizon = _longest_latency(config) + 60.0
        # Per tenant, the subjects with any record; a tenant is missing until its filter
        # is built (`learn_known_subjects`), and then every lookup reads the database.
        self._known_subjects: dict[str, KnownSubjects] = {}
        # While a tenant's filter is being built: the subjects recorded meanwhile.
        self._learning: dict[str, list[str]] = {}
        self._tenant_ids = tuple(tenant.id for tenant in config.tenants)
        self._tenants = frozenset(self._tenant_ids)
        self._learner: asyncio.Task[None] | None = None
        # Other instances write to the same registry: read it, never trust memory alone.
        self.shared = config.storage.backend is StorageBackend.POSTGRES
        self._bus: ClusterBus | None = None
        self._loads: set[asyncio.Task[None]] = set()
        for tenant in config.tenants:
            keys.registry_key(tenant.id)  # created now, not on the first submit

    def now(self) -> float:
        return self._clock()

    def subject(self, tenant: str, e164: str) -> str:
        """The tenant's pseudonym for a number already in E.164."""
        key = (tenant, e164)
        subject = self._subjects.get(key)
        if subject is None:
            subject = pseudonymise(self._keys.registry_key(tenant), e164)
            self._subjects[key] = subject
            if len(self._subjects) > self._cache_size:
                self._subjects.popitem(last=False)
        return subject

    # --- reading state --------------------------------------------------------------------

    def _known(self, key: tuple[str, str]) -> SubjectState | None:
        changed = self._changed.get(key)
        if changed is not None:
            return changed[1]
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    async def states(self, tenant: str, subjects: Sequence[str]) -> list[SubjectState]:
        """The state of each subject: from memory, else one query for all the rest.

        A subject the tenant's filter has never seen has no record: no query, no await,
        and nothing cached (the filter answers again next time, in about a microsecond).
        Shared with other instances, every subject is read from the database.
        """
        if self.shared:
            loaded = await self._load(tenant, list(dict.fromkeys(subjects)))
            return [loaded.get(s) or _NO_RECORD for s in subjects]
        known = self._known_subjects.get(tenant)
        found: dict[str, SubjectState | None] = {}
        for subject in subjects:
            if subject not in found:
                state = self._known((tenant, subject))
                if state is None and known is not None and subject not in known:
                    state = _NO_RECORD
                found[subject] = state
        missing = [subject for subject, state in found.items() if state is None]
        if not missing:
            return [found[s] or _NO_RECORD for s in subjects]
        loaded = await self._load(tenant, missing)
        for subject in missing:
            key = (tenant, subject)
            if key not in self._changed:
                self._states[key] = found[subject] = loaded.get(subject) or _NO_RECORD
                if len(self._states) > self._cache_size:
                    self._states.popitem(last=False)
        # A change committed during the read wins over what was found before it.
        changed = self._changed
        return [
            changed[(tenant, s)][1] if (tenant, s) in changed else found[s] or _NO_RECORD
            for s in subjects
        ]

    def start_learning(self) -> None:
        """Build the filters in the background (the running gateway, at start).

        Shared, no check consults them: nothing to build.
        """
        if self.shared:
            return
        self._learner = asyncio.create_task(self._learn_logged(), name="known-subjects")

    async def learned(self) -> None:
        """Until the filters started by `start_learning` are built (or failed to be)."""
        if self._learner is not None:
            await asyncio.shield(self._learner)

    async def stop_learning(self) -> None:
        for task in self._loads:
            task.cancel()
        await asyncio.gather(*self._loads, return_exceptions=True)
        if self._learner is not None:
            self._learner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._learner

    async def _learn_logged(self) -> None:
        started = time.perf_counter()
        try:
            await self.learn_known_subjects()
        except Exception:  # lookups keep reading the database: slower, still right
            log_event(log, "registry.filter_failed", logging.ERROR, exc_info=True)
            return
        log_event(
            log,
            "registry.filter_built",
            tenants=len(self._known_subjects),
            bytes=sum(known.nbytes for known in self._known_subjects.values()),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def learn_known_subjects(self, page: int = 10_000) -> None:
        """Build each tenant's filter from the table, a page of subjects per read.

        Runs beside traffic at start. A subject recorded meanwhile is remembered in
        ``_learning`` before its write is queued, and added once the walk is done, so
        the filter holds every subject whose record was committed before it is used.
        """
        consent = self._store.consent
        for tenant in self._tenant_ids:
            self._learning[tenant] = []
        try:
            # Whatever was queued before the line above is committed before the walk.
            await self._store.flush()
            for tenant in self._tenant_ids:
                records = (await consent.tenant_rows(tenant))["consent_events"]
                known = KnownSubjects(records)
                async for subjects in consent.subject_pages(tenant, page):
                    for subject in subjects:
                        known.add(subject)
                for subject in self._learning.pop(tenant):
                    known.add(subject)
                self._known_subjects[tenant] = known
        finally:
            self._learning.clear()

    def _remember(self, tenant: str, subject: str) -> None:
        """Before a record of ``subject`` is queued: the filter must not miss it after."""
        known = self._known_subjects.get(tenant)
        if known is not None:
            known.add(subject)
        learning = self._learning.get(tenant)
        if learning is not None:
            learning.append(subject)

    async def _load(self, tenant: str, subjects: Sequence[str]) -> dict[str, SubjectState]:
        """Fold the events of these subjects (an index range scan each)."""
        states: dict[str, SubjectState] = {}
        for row in await self._store.consent.events(tenant, subjects):
            event = _event_from_row(row)
            states.setdefault(event.subject, SubjectState()).apply(event)
        return states

    async def history(self, tenant: str, subject: str) -> list[ConsentEvent]:
        return [_event_from_row(row) for row in await self._store.consent.history(tenant, subject)]

    async def subjects(
        self, tenant: str, after: str | None, limit: int
    ) -> list[tuple[str, SubjectState]]:
        """The tenant's subjects with any record, in pseudonym order (for paging)."""
        subjects = await self._store.consent.subjects_after(tenant, after or "", limit)
        return list(zip(subjects, await self.states(tenant, subjects), strict=True))

    async def counts(self, tenant: str, page: int = 1000) -> dict[str, int]:
        """How many of the tenant's subjects have any record, are opted out (of anything),
        hold a consent, are restricted: the operator's view, folded a page at a time."""
        counts = {"subjects": 0, "opted_out": 0, "with_consent": 0, "restricted": 0}
        after: str | None = None
        while subjects := await self.subjects(tenant, after, page):
            for _, state in subjects:
                counts["subjects"] += 1
                counts["opted_out"] += bool(state.opted_out)
                counts["with_consent"] += bool(state.consents)
                counts["restricted"] += state.restricted is not None
            after = subjects[-1][0]
        return counts

    # --- writing --------------------------------------------------------------------------

    async def record(self, events: Sequence[ConsentEvent], actor: str) -> None:
        """Append events with their audit entries in one commit, then apply them in memory."""
        if not events:
            return
        before: dict[tuple[str, str], SubjectState] = {}
        for tenant in {e.tenant for e in events}:
            subjects = [e.subject for e in events if e.tenant == tenant]
            for subject, state in zip(subjects, await self.states(tenant, subjects), strict=True):
                before[(tenant, subject)] = state
        entries = [
            AuditEntry(e.tenant, e.at, actor, e.kind.value, e.subject, _detail(e)) for e in events
        ]
        for event in events:
            self._remember(event.tenant, event.subject)
        try:
            await self._store.commit(
                "record_consent",
                [
                    *self._store.consent.append([_event_row(e) for e in events]),
                    *self._audit.steps(entries),
                ],
                after_commit=lambda: self._committed(events, before),
            )
        except StoreError:
            await self._audit.resync()
            raise
        for event in events:
            self._metrics.consent_changes.labels(event.tenant, event.kind.value).inc()

    def _committed(
        self, events: Sequence[ConsentEvent], before: dict[tuple[str, str], SubjectState]
    ) -> None:
        self._apply(events, before)
        if self._bus is not None:
            for event in events:
                self._bus.notify(_CHANNEL, [event.tenant, event.subject])
        if self._events is None:
            return
        for event in events:
            self._events.publish(
                event.tenant,
                CONSENT_CHANGED,
                event.subject,
                event.kind.value,
                event.purpose,
                event.sender,
            )

    def _apply(
        self, events: Sequence[ConsentEvent], before: dict[tuple[str, str], SubjectState]
    ) -> None:
        now = self._clock()
        for event in events:
            key = (event.tenant, event.subject)
            changed = self._changed.pop(key, None)
            state = changed[1] if changed else before[key]
            if state is _NO_RECORD:
                state = SubjectState()
            state.apply(event)
            self._changed[key] = (now, state)
            self._states[key] = state
        while self._changed:
            key, (at, state) = next(iter(self._changed.items()))
            if now - at < self._horizon:
                break
            del self._changed[key]

    def erase_steps(self, tenant: str, subject: str, state: SubjectState) -> Steps:
        """Delete a subject's records, keeping one suppression entry if it had opted out.

        An erased person who said STOP must never be messaged again, so the keyed
        opt-out stays (documented in docs/privacy.md); nothing else about them does.
        """
        consent = self._store.consent
        if not state.opted_out:
            return consent.erase_subject(tenant, subject)
        suppression = ConsentEvent(
            tenant, subject, EventKind.OPTED_OUT, Source.ERASURE, self._clock()
        )
        self._remember(tenant, subject)
        return [*consent.erase_subject(tenant, subject), *consent.append([_event_row(suppression)])]

    def forget(self, tenant: str, e164: str, subject: str, state: SubjectState) -> None:
        """After an erasure: drop the subject from memory, keeping only its suppression."""
        self._subjects.pop((tenant, e164), None)
        self._changed.pop((tenant, subject), None)
        suppression = SubjectState()
        if state.opted_out:
            suppression.opted_out[None] = ConsentEvent(
                tenant, subject, EventKind.OPTED_OUT, Source.ERASURE, self._clock()
            )
        self._states[(tenant, subject)] = suppression

    def forget_tenant(self, tenant: str, configured: bool) -> None:
        """After a purge: nothing of the tenant stays in memory; a configured one goes on.

        Its pseudonyms were made under the destroyed registry key, so they are dropped
        with every state; a tenant still configured gets a fresh registry key at once,
        so its next opt-out is recorded under the key the next start will use. The
        filter of known subjects keeps them: a stale "maybe" costs only a read, and
        if the deletes then fail to commit, the records are still found.
        """
        for cache in (self._subjects, self._states, self._changed):
            for key in [k for k in cache if k[0] == tenant]:
                del cache[key]
        if configured:
            self._keys.registry_key(tenant)

    # --- other instances ------------------------------------------------------------------

    def share(self, bus: ClusterBus) -> None:
        """Announce committed changes on ``bus``, hear the other instances' (before it starts)."""
        self._bus = bus
        bus.listen(_CHANNEL, self._changed_elsewhere, self._resync)

    def _changed_elsewhere(self, items: list[Any]) -> None:
        """Another instance committed changes of these ``[tenant, subject]``: re-read them."""
        by_tenant: dict[str, list[str]] = {}
        for item in items:
            if (
                isinstance(item, list)
                and len(item) == 2
                and item[0] in self._tenants
                and isinstance(item[1], str)
            ):
                by_tenant.setdefault(item[0], []).append(item[1])
        for tenant, subjects in by_tenant.items():
            for subject in subjects:
                self._remember(tenant, subject)
                self._states.pop((tenant, subject), None)
            task = asyncio.create_task(self._reload_changed(tenant, subjects))
            self._loads.add(task)
            task.add_done_callback(self._loads.discard)

    async def _reload_changed(self, tenant: str, subjects: list[str]) -> None:
        try:
            loaded = await self._load(tenant, subjects)
        except Exception:  # the driver's errors too: the delivery re-check reads them
            log_event(log, "registry.reload_failed", logging.WARNING, tenant=tenant)
            return
        now = self._clock()
        for subject in subjects:
            key = (tenant, subject)
            self._changed.pop(key, None)
            self._changed[key] = (now, loaded.get(subject) or SubjectState())

    def _resync(self) -> None:
        """Notifications were lost: no cached state can be trusted (the checks read anyway)."""
        self._states.clear()

    async def recheck_before_delivery(self, messages: Sequence[Message]) -> list[str | None]:
        """The network's last check when shared: why each message may not be delivered, read
        from the database, so an opt-out another instance committed a moment ago stops it
        even before its notification arrives. One query per tenant of the batch."""
        codes = await self._codes(messages, "delivery")
        return [None if code is None else _STOPPED_BECAUSE[code] for code in codes]

    # --- the privacy gate -----------------------------------------------------------------

    async def check_many(self, messages: Sequence[Message]) -> list[Rejected | None]:
        """The pipeline's gate: opt-outs and consent for each message's purpose."""
        codes = await self._codes(messages, "submit")
        return [None if code is None else Rejected(code, _REASONS[code]) for code in codes]

    async def _codes(self, messages: Sequence[Message], where: str) -> list[RejectCode | None]:
        """What blocks each message (None: nothing), one `states` call per tenant."""
        codes: list[RejectCode | None] = [None] * len(messages)
        by_tenant: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            if message.interface is not Interface.SYSTEM:
                by_tenant.setdefault(message.tenant, []).append(index)
        for tenant, indexes in by_tenant.items():
            if self.shared:
                self._metrics.consent_rechecks.labels(where).inc()
            subjects = [self.subject(tenant, messages[i].recipient) for i in indexes]
            states = await self.states(tenant, subjects)
            for index, state in zip(indexes, states, strict=True):
                codes[index] = self._blocks(messages[index], state)
        return codes

    def may_deliver(self, message: Message) -> str | None:
        """The network's last check: None, or why a recently changed subject may not get it."""
        if not self._changed or message.interface is Interface.SYSTEM:
            return None
        changed = self._changed.get(
            (message.tenant, self.subject(message.tenant, message.recipient))
        )
        if changed is None:
            return None
        code = self._blocks(message, changed[1])
        if code is None:
            return None
        return _STOPPED_BECAUSE[code]

    def _blocks(self, message: Message, state: SubjectState) -> RejectCode | None:
        code = state.blocks(
            message.purpose, message.sender, self._requires_consent[message.purpose]
        )
        if code is not None:
            self._metrics.privacy_blocks.inc(message.tenant, code.value, message.purpose)
        return code

    def knows_purpose(self, purpose: str) -> bool:
        return purpose in self._requires_consent


# The bus channel of committed consent changes: ``[tenant, subject pseudonym]`` items.
_CHANNEL = "consent"


def _longest_latency(config: Config) -> float:
    """The longest a message can be on its way, from the simulator's latency ranges."""
    ranges = [config.simulator.latency, *(r.latency for r in config.simulator.rules if r.latency)]
    return max(high for _, high in ranges)


def _detail(event: ConsentEvent) -> str:
    parts = [f"source={event.source.value}"]
    if event.purpose:
        parts.append(f"purpose={event.purpose}")
    if event.sender:
        parts.append(f"sender={event.sender}")
    return " ".join(parts)


def _event_row(event: ConsentEvent) -> NewConsentRow:
    return (
        event.tenant,
        event.subject,
        event.kind.value,
        event.purpose,
        event.sender,
        event.source.value,
        event.evidence,
        event.at,
    )


def _event_from_row(row: ConsentRow) -> ConsentEvent:
    seq, tenant, subject, kind, purpose, sender, source, evidence, at = row
    return ConsentEvent(
        tenant=str(tenant),
        subject=str(subject),
        kind=EventKind(kind),
        source=Source(source),
        at=float(at),
        evidence=str(evidence),
        purpose=purpose,
        sender=sender,
        seq=int(seq),
    )
