"""The one submit pipeline that every front end calls.

In order: the tenant's rate limit (``max_submit_rate``, then the chaos cap: one
bucket each per tenant, shared by every front end), validate (recipient to E.164,
sender, encoding and length, callback host, schedule and validity), the privacy
gates, id, the simulated SMSC's submit faults, the tenant's room for scheduled
messages, durable persist (group commit), hand-over to the simulated network (which
holds a scheduled message until its time). Front ends only translate their wire
format into a `SubmitRequest` and a `Rejected.code` back into an HTTP status or an
SMPP command_status. They reach the traffic through this pipeline alone (submit,
receive, cancel, replace, force_outcome, redact, forget, and the reads: message,
messages, inbox, handsets, body, inbound, thread, texts), never the store or the
network around it; tests/test_layers.py holds them to that.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from gateway.blocked import BlockedAttempts
from gateway.chaos import Chaos
from gateway.cluster.instance import runs_of_instance
from gateway.config import Config, Outcome, TenantConfig
from gateway.domain import (
    BlockedAttempt,
    Handset,
    InboundMessage,
    InboundOutcome,
    InboxEntry,
    Interface,
    Message,
    MessageFilter,
    Notice,
    NoticeKind,
    Outgoing,
    RejectCode,
    Rejected,
    Status,
    SubmitRequest,
    Thread,
)
from gateway.encoding import BodyInfo, analyse, analyse_binary
from gateway.events import MESSAGE_ACCEPTED, MESSAGE_BLOCKED, MO_RECEIVED, EventBus
from gateway.ids import MessageIds, id_floor
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.numbers import InvalidNumber, is_numeric_address, is_short_code, normalise_msisdn
from gateway.rates import LocalRates, SubmitRates
from gateway.storage.base import Steps
from gateway.store import Store, StoreError

if TYPE_CHECKING:
    from gateway.cluster.held import RemoteHolds

log = logging.getLogger(__name__)

SubmitResult = Message | Rejected
# Seconds until due scheduled messages are offered to the gates again after they failed.
GATE_RETRY = 1.0
# A text search looks at most this many matching bodies (SQLite's IN list stays short).
_MAX_TEXT_HITS = 500
# Messages on their way adopted from dead instances per read.
_ADOPT_AT_ONCE = 1000
# The outcomes another instance may ask to force, as its request names them.
OUTCOME_VALUES = frozenset(outcome.value for outcome in Outcome)
InboundListener = Callable[[Notice], None]


class BodySeal(Protocol):
    """Seals a body that must cross the instances' bus (see `privacy.key_wrap.SealedBodies`)."""

    def seal(self, tenant: str, message_id: str, body: str) -> str: ...

    def open(self, tenant: str, message_id: str, sealed: str) -> str | None: ...


class PrivacyGate(Protocol):
    """A check every message must pass before it is persisted (consent, restriction...)."""

    async def check_many(self, messages: Sequence[Message]) -> list[Rejected | None]:
        """Per message: None lets it through; a `Rejected` stops it."""
        ...


class InboundResponder(Protocol):
    """Acts on what a handset sends (keywords) before the tenant hears of it."""

    async def respond(self, tenant: TenantConfig, notice: Notice) -> InboundOutcome: ...


class SubmitPipeline:
    def __init__(
        self,
        config: Config,
        store: Store,
        network: SimulatedNetwork,
        metrics: Metrics,
        clock: Callable[[], float],
        events: EventBus,
        blocked: BlockedAttempts,
        gates: Sequence[PrivacyGate] = (),
        responder: InboundResponder | None = None,
        chaos: Chaos | None = None,
        rates: SubmitRates | None = None,
    ) -> None:
        """``blocked``: where the submits the gates refuse are kept (see `gateway.blocked`);
        ``rates``: the tenants' buckets, this process's own unless instances share them."""
        self._config = config
        self._events = events
        self._store = store
        self._network = network
        self._metrics = metrics
        self._clock = clock
        self._gates = tuple(gates)
        self._responder = responder
        self._purposes = frozenset(p.name for p in config.privacy.purposes)
        self._ids = MessageIds(clock)
        self._senders = {t.id: _canonical_senders(t) for t in config.tenants}
        self._inbound_listeners: list[InboundListener] = []
        # One bucket per tenant with a max_submit_rate, shared by every front end.
        self._rates = rates if rates is not None else LocalRates(config.tenants)
        self._buckets = self._rates.buckets
        self._chaos = chaos
        self._blocked = blocked
        # Scheduled messages of submits not yet handed over, per tenant (max_scheduled).
        self._scheduling: Counter[str] = Counter()
        # Scheduled messages whose time has come, for the one task that lets them go.
        self._due: asyncio.Queue[list[Outgoing]] = asyncio.Queue()
        self._releaser: asyncio.Task[None] | None = None
        # Shared with other instances: who we are, our lease on messages, how often to adopt.
        self._owner: str | None = None
        self._lease = 0.0
        self._poll = 0.0
        self._holder: asyncio.Task[None] | None = None
        # Shared: asks the instance holding a message to cancel, replace or force it.
        self._holds: RemoteHolds | None = None
        self._bodies: BodySeal | None = None
        self._tenants = {tenant.id: tenant for tenant in config.tenants}
        network.on_due(self._due.put_nowait)
        # The histogram's children, looked up once: labels() costs a lock and a dict lookup.
        self._submit_latency = {i: metrics.submit_latency.labels(i.value) for i in Interface}

    async def submit(self, request: SubmitRequest) -> SubmitResult:
        return (await self.submit_many([request]))[0]

    async def submit_many(
        self, requests: Sequence[SubmitRequest], *, one_submission: bool = False
    ) -> list[SubmitResult]:
        """Each request is accepted or rejected on its own; the accepted share one commit.

        ``one_submission`` (an SMPP submit_multi): every accepted message names the first
        one's id as its ``submission``, which its receipt then carries.
        """
        started = time.perf_counter()
        if self._rates.leased:  # tokens shared with other instances: fetch this batch's first
            await self._rates.reserve(
                [r.tenant.id for r in requests if r.interface is not Interface.SYSTEM]
            )
        now = self._clock()
        results = [self._admit(request) or self._validate(request, now) for request in requests]
        checked = list(results)
        await self._pass_gates(results)
        self._publish_blocked(checked, results)
        for index, result in enumerate(results):
            if isinstance(result, Message):
                fault = self._network.submit_fault(result.tenant, result.recipient)
                if fault is not None:
                    results[index] = Rejected(fault, "the simulated SMSC failed this submit")
        scheduling = self._hold_schedules(results)
        if one_submission:
            results = _one_submission(results)
        # Stored already enroute: the network takes each one as soon as it is committed,
        # so that state needs no UPDATE of its own (one row write and one queued unit less
        # per message: 8.5 us of SQLite work each, measured in docs/performance.md).
        # Scheduled messages are stored scheduled: the network moves them on at their time.
        enroute_at = self._clock()
        accepted = [
            (
                result,
                Outgoing(
                    result
                    if result.status is Status.SCHEDULED
                    else result.moved_to(Status.ENROUTE, enroute_at),
                    request.body,
                    request.part,
                ),
            )
            for result, request in zip(results, requests, strict=True)
            if isinstance(result, Message)
        ]
        try:
            if accepted:
                await self._store.traffic.add_messages(
                    [item for _, item in accepted], self._held_until()
                )
        except StoreError:
            unavailable = Rejected(RejectCode.STORE_UNAVAILABLE, "the store could not commit")
            results = [unavailable if isinstance(r, Message) else r for r in results]
            accepted = []
        finally:
            self._scheduling.subtract(scheduling)  # the network counts them from here
        for message, item in accepted:
            self._publish_accepted(message)
            self._network.hand_over(item)
        self._count(requests, results, time.perf_counter() - started)
        return results

    def _hold_schedules(self, results: list[SubmitResult]) -> Counter[str]:
        """Refuse scheduled messages beyond the tenant's ``max_scheduled``; count the rest
        as held until they are handed over (or not), which the caller undoes."""
        limit = self._config.messages.max_scheduled
        held: Counter[str] = Counter()
        for index, result in enumerate(results):
            if not isinstance(result, Message) or result.status is not Status.SCHEDULED:
                continue
            tenant = result.tenant
            waiting = self._network.scheduled_count(tenant) + self._scheduling[tenant]
            if waiting >= limit:
                results[index] = Rejected(
                    RejectCode.TOO_MANY_SCHEDULED,
                    f"the tenant has {limit} scheduled messages waiting (messages.max_scheduled)",
                )
                continue
            self._scheduling[tenant] += 1
            held[tenant] += 1
        return held

    def share(self, owner: str, lease: float, poll: float) -> None:
        """Instances share the store: hold our messages on their way under a lease (renewed
        every third of it, so it lapses only if we die), and every ``poll`` adopt those
        whose instance died. Before `resume`."""
        self._owner = owner
        self._lease = lease
        self._poll = poll

    def hold_with_others(self, holds: RemoteHolds, bodies: BodySeal) -> None:
        """Shared: a cancel, replace or forced outcome of a message another instance holds
        is asked of it, and what the others ask of a message held here is done here; a
        replacement body crosses sealed by ``bodies``."""
        self._holds = holds
        self._bodies = bodies
        holds.serve("cancel", self._cancel_held)
        holds.serve("replace", self._replace_held)
        holds.serve("force", self._force_held)

    async def _elsewhere(
        self, operation: str, tenant: TenantConfig, message_id: str, *args: str | None
    ) -> Rejected | None:
        """A message not held here: done by the instance that holds it, if one answers."""
        if self._holds is not None:
            message = await self._store.traffic.get_message(tenant.id, message_id)
            if message is not None and not message.status.is_final:
                answered, result = await self._holds.ask_holder(
                    operation, [tenant.id, message_id, *args]
                )
                if answered:
                    return result
        return Rejected(RejectCode.NOT_PENDING, "no such message on its way")

    def _held_here(self, args: list[Any], size: int) -> tuple[TenantConfig, str] | None:
        """Another instance's request, if it names ``size`` strings and a message held here."""
        if len(args) != size or not all(isinstance(arg, str | None) for arg in args):
            return None
        tenant = self._tenants.get(args[0])
        if tenant is None or self._network.pending(tenant.id, args[1]) is None:
            return None
        return tenant, args[1]

    def _cancel_held(self, args: list[Any]) -> Awaitable[Rejected | None] | None:
        held = self._held_here(args, 2)
        return None if held is None else self._cancel_here(*held)

    async def _cancel_here(self, tenant: TenantConfig, message_id: str) -> Rejected | None:
        if self._network.cancel(tenant.id, message_id):
            return await self._committed()
        return Rejected(RejectCode.NOT_PENDING, "no such message on its way")

    def _replace_held(self, args: list[Any]) -> Awaitable[Rejected | None] | None:
        held = self._held_here(args, 5)
        if held is None or self._bodies is None or not isinstance(args[2], str):
            return None
        body = self._bodies.open(*args[:3])
        if body is None:
            return None
        try:
            send_at, expires_at = (
                None if t is None else datetime.fromisoformat(t) for t in args[3:]
            )
        except ValueError:
            return None
        return self._replace_here(*held, body, send_at=send_at, expires_at=expires_at)

    def _force_held(self, args: list[Any]) -> Awaitable[Rejected | None] | None:
        held = self._held_here(args, 3)
        if held is None or args[2] not in OUTCOME_VALUES:
            return None
        return self._force_here(*held, Outcome(args[2]))

    def _held_until(self) -> tuple[str, float] | None:
        return None if self._owner is None else (self._owner, self._clock() + self._lease)

    async def resume(self) -> None:
        """Hand what the last run left unfinished back to the network (once, at start).

        The messages pass the gates again: an opt-out or a restriction may have been
        committed since they were accepted, and then they end before delivery. Shared
        with other instances, "unfinished" is what no live instance holds: an earlier run
        of this instance is dead (this one replaced it), so what it held is taken at once.
        """
        if self._owner is None:
            resumed = await self._play_out(await self._store.traffic.unfinished())
        else:
            await self._store.traffic.release_earlier_runs(
                runs_of_instance(self._owner), self._owner
            )
            resumed = await self._adopt()
            self._holder = asyncio.create_task(self._keep_holding(), name="held-messages")
        log_event(log, "network.resumed", count=resumed)
        self._releaser = asyncio.create_task(self._release_scheduled(), name="scheduled")

    async def _play_out(self, unfinished: list[Outgoing]) -> int:
        results: list[SubmitResult] = [item.message for item in unfinished]
        await self._pass_gates(results)
        for item, result in zip(unfinished, results, strict=True):
            if isinstance(result, Message):
                self._network.hand_over(item)
            else:
                self._network.stop_before_delivery(item, result.code.value)
        return len(unfinished)

    async def _adopt(self) -> int:
        """Take and play out every message on its way that no live instance holds."""
        assert self._owner is not None
        adopted = 0
        while True:
            now = self._clock()
            found = await self._store.traffic.adopt_unfinished(
                self._owner, now, now + self._lease, _ADOPT_AT_ONCE
            )
            adopted += await self._play_out(found)
            if len(found) < _ADOPT_AT_ONCE:
                return adopted

    async def _keep_holding(self) -> None:
        """Renew our lease every third of it; adopt a dead instance's messages every poll."""
        assert self._owner is not None
        renew_every = self._lease / 3
        next_renewal = next_adoption = self._clock()
        while True:
            await asyncio.sleep(min(renew_every, self._poll))
            now = self._clock()
            try:  # the store's reads raise its driver's errors as well as StoreError
                if now >= next_renewal:
                    next_renewal = now + renew_every
                    await self._store.traffic.renew_held(self._owner, now + self._lease)
                if now >= next_adoption:
                    next_adoption = now + self._poll
                    if adopted := await self._adopt():
                        log_event(log, "network.adopted", count=adopted)
            except Exception:
                log_event(log, "network.hold_failed", logging.WARNING)

    async def close(self) -> None:
        """Stop letting scheduled messages go (they stay stored and resume next start).

        Shared, the messages we held are given back for another instance to adopt.
        """
        for task in (self._releaser, self._holder):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._owner is not None:
            try:
                await self._store.traffic.release_held(self._owner)
            except Exception:  # their lease lapses instead
                log_event(log, "network.release_failed", logging.WARNING)

    async def _release_scheduled(self) -> None:
        """The one task that lets scheduled messages go once their time has come.

        They pass the gates again first: an opt-out or a restriction committed since
        they were accepted (hours ago, perhaps) stops them. The network's last check
        before delivery remembers recent changes only for as long as a message can be
        on its way, not for as long as one can be scheduled. If a gate cannot answer
        (the store failing), they wait and are asked again.
        """
        while True:
            items = await self._due.get()
            results: list[SubmitResult] = [item.message for item in items]
            try:
                await self._pass_gates(results)
            except Exception:
                log_event(log, "scheduled.gate_failed", logging.ERROR, exc_info=True)
                self._network.postpone(items, GATE_RETRY)
                continue
            for item, result in zip(items, results, strict=True):
                if isinstance(result, Message):
                    self._network.release([item])
                else:
                    self._network.stop_scheduled(item, result.code.value)

    async def _pass_gates(self, results: list[SubmitResult]) -> None:
        """Every privacy gate in turn, on what is still accepted."""
        for gate in self._gates:
            await self._apply_gate(gate, results)

    @staticmethod
    async def _apply_gate(gate: PrivacyGate, results: list[SubmitResult]) -> None:
        """One call per gate for the whole batch, on what is still accepted."""
        positions = [i for i, r in enumerate(results) if isinstance(r, Message)]
        if not positions:
            return
        verdicts = await gate.check_many([results[i] for i in positions])  # type: ignore[misc]
        for index, verdict in zip(positions, verdicts, strict=True):
            if verdict is not None:
                results[index] = verdict

    def _admit(self, request: SubmitRequest) -> Rejected | None:
        """The tenant's max_submit_rate, then its chaos throughput cap; None lets it in.

        Every front end's submits draw on the same bucket; the gateway's own (keyword
        replies) do not.
        """
        if request.interface is Interface.SYSTEM:
            return None
        tenant = request.tenant.id
        bucket = self._buckets.get(tenant)
        if bucket is not None and not bucket.take():
            return Rejected(
                RejectCode.THROTTLED,
                "over the tenant's max_submit_rate",
                retry_after=bucket.retry_after(),
            )
        if self._chaos is not None and (wait := self._chaos.admit(tenant)) is not None:
            return Rejected(RejectCode.THROTTLED, "over the chaos throughput cap", retry_after=wait)
        return None

    def _validate(self, request: SubmitRequest, now: float) -> SubmitResult:
        tenant = request.tenant
        try:
            recipient = normalise_msisdn(request.to, tenant.default_country)
        except InvalidNumber as exc:
            return Rejected(RejectCode.INVALID_RECIPIENT, f"'to' is not a phone number: {exc}")
        sender = self.sender_of(tenant, request.sender)
        if sender is None:
            return Rejected(RejectCode.UNKNOWN_SENDER, "'from' is not one of this tenant's senders")
        purpose = request.purpose or tenant.default_purpose
        if purpose not in self._purposes:
            allowed = ", ".join(sorted(self._purposes))
            return Rejected(RejectCode.INVALID_REQUEST, f"'purpose' must be one of {allowed}")
        if request.client_ref is not None and len(request.client_ref) > (
            limit := self._config.messages.max_client_ref
        ):
            return Rejected(RejectCode.INVALID_REQUEST, f"'client_ref' exceeds {limit} characters")
        if request.callback_url is not None and not self._config.callbacks.allows(
            request.callback_url
        ):
            return Rejected(
                RejectCode.CALLBACK_NOT_ALLOWED, "'callback_url' host is not on the allow-list"
            )
        info = self._analyse(request.body, binary=request.binary)
        if isinstance(info, Rejected):
            return info
        window = validity_window(
            request.send_at,
            request.expires_at,
            request.validity,
            now,
            self._config.messages.max_validity,
        )
        if isinstance(window, Rejected):
            return window
        send_at, expires_at = window
        return Message(
            id=self._ids.next(),
            tenant=tenant.id,
            interface=request.interface,
            sender=sender,
            recipient=recipient,
            purpose=purpose,
            segments=info.segments,
            encoding=info.encoding,
            status=Status.SCHEDULED if send_at is not None and send_at > now else Status.ACCEPTED,
            submitted_at=now,
            client_ref=request.client_ref,
            callback_url=request.callback_url,
            receipt=request.receipt,
            message_class=request.message_class,
            send_at=send_at,
            expires_at=expires_at,
        )

    def sender_of(self, tenant: TenantConfig, raw: str) -> str | None:
        """The canonical form of one of the tenant's senders, or None if it is not one."""
        sender = _canonical_sender(raw, tenant.default_country)
        return sender if sender in self._senders[tenant.id] else None

    def _analyse(self, body: str, *, binary: bool = False) -> BodyInfo | Rejected:
        """Encoding and segments of a body; 8-bit data (in hex) is counted in octets."""
        try:
            info = analyse_binary(len(body) // 2) if binary else analyse(body)
        except ValueError:
            return Rejected(RejectCode.INVALID_REQUEST, "'body' is not valid Unicode text")
        if info.segments > (limit := self._config.messages.max_segments):
            return Rejected(
                RejectCode.BODY_TOO_LONG,
                f"body needs {info.segments} {info.encoding.value} segments; the limit is {limit}",
            )
        return info

    def subscribe_inbound(self, listener: InboundListener) -> None:
        """Call ``listener`` with every mobile-originated message a handset sends."""
        self._inbound_listeners.append(listener)

    async def receive(
        self, tenant: TenantConfig, handset: str, address: str, body: str
    ) -> Notice | Rejected:
        """A simulated handset sends ``body`` to one of the tenant's numbers (an MO message)."""
        try:
            handset = normalise_msisdn(handset, tenant.default_country)
        except InvalidNumber as exc:
            return Rejected(RejectCode.INVALID_REQUEST, f"'from' is not a phone number: {exc}")
        canonical = self.sender_of(tenant, address)
        if canonical is None:
            return Rejected(RejectCode.UNKNOWN_SENDER, "'to' is not one of this tenant's senders")
        info = self._analyse(body)
        if isinstance(info, Rejected):
            return info
        now = self._clock()
        notice = Notice(
            tenant=tenant.id,
            kind=NoticeKind.MO,
            message_id=self._ids.next(),
            handset=handset,
            address=canonical,
            created_at=now,
            expires_at=now + self._config.smpp.notice_ttl,
            body=body,
        )
        outcome = InboundOutcome()
        if self._responder is not None:
            outcome = await self._responder.respond(tenant, notice)
            notice = dataclasses.replace(notice, keyword=outcome.keyword)
        self._store.inbound.record(InboundMessage.of(notice))
        if tenant.smpp is not None:  # kept for its SMPP receivers until one acknowledges it
            self._store.notices.keep(notice)
        if (rejected := await self._committed()) is not None:
            return rejected
        self._events.publish(
            tenant.id,
            MO_RECEIVED,
            notice.message_id,
            notice.address,
            notice.keyword,
            notice.handset,
        )
        for listener in self._inbound_listeners:
            listener(notice)
        if outcome.reply:
            reply = SubmitRequest(tenant, Interface.SYSTEM, handset, canonical, outcome.reply)
            await self.submit(reply)
        return notice

    def _publish_blocked(self, checked: list[SubmitResult], results: list[SubmitResult]) -> None:
        """Tell the tenant's stream of each submit a privacy gate refused, and keep it in
        memory for the handset's thread (`gateway.blocked`).

        Nothing is stored for a refused submit; the event is how a watcher (the web
        inbox) sees the attempt. It names the code, never the body.
        """
        now = self._clock()
        for before, after in zip(checked, results, strict=True):
            if isinstance(before, Message) and isinstance(after, Rejected):
                attempt = BlockedAttempt(
                    before.recipient, before.sender, before.interface, after.code, now
                )
                self._blocked.record(before.tenant, attempt)
                self._events.publish(
                    before.tenant,
                    MESSAGE_BLOCKED,
                    before.recipient,
                    before.sender,
                    before.interface.value,
                    after.code.value,
                )

    def _publish_accepted(self, message: Message) -> None:
        """Told once the message is committed, before the network moves it on."""
        self._events.publish(
            message.tenant,
            MESSAGE_ACCEPTED,
            message.id,
            message.status.value,
            message.recipient,
            message.interface.value,
            message.segments,
            message.sender,
        )

    # --- reads: what a front end may show of the traffic log and the handsets -----------

    async def ready(self) -> bool:
        """The store behind the pipeline can commit: its database answers, migrated."""
        return await self._store.ready()

    async def message(self, tenant: str, message_id: str) -> Message | None:
        """One of the tenant's messages (another tenant's id finds nothing)."""
        return await self._store.traffic.get_message(tenant, message_id)

    async def submission(self, tenant: str, submission: str) -> list[Message]:
        """Every message of the tenant's submit_multi ``submission``, oldest first."""
        return await self._store.traffic.submission(tenant, submission)

    async def messages(
        self,
        tenant: str,
        *,
        recipient: str | None = None,
        sender: str | None = None,
        status: Status | None = None,
        since_id: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
        narrow: MessageFilter | None = None,
        text: str | None = None,
    ) -> list[Message]:
        """The tenant's messages, newest first (see `Traffic.list_messages`).

        ``text`` is looked for in the bodies still kept (the last ``privacy.body_ttl``
        of them), at most `_MAX_TEXT_HITS` matches.
        """
        if text:
            ids = await self._store.inbox.with_text(tenant, text, _MAX_TEXT_HITS)
            ids += await self._store.traffic.pending_with_text(tenant, text, _MAX_TEXT_HITS)
            narrow = dataclasses.replace(narrow or MessageFilter(), ids=tuple(ids[:_MAX_TEXT_HITS]))
        return await self._store.traffic.list_messages(
            tenant,
            recipient=recipient,
            sender=sender,
            status=status,
            since_id=since_id,
            before_id=before_id,
            limit=limit,
            narrow=narrow,
        )

    async def inbox(self, tenant: str, msisdn: str, limit: int = 100) -> list[InboxEntry]:
        """What a simulated handset received from the tenant, newest first."""
        return await self._store.inbox.received(tenant, msisdn, limit)

    async def body(self, message: Message) -> Outgoing | None:
        """A message with its body, while the network or the handset's inbox still holds it."""
        item = self._network.outgoing(message.tenant, message.id)
        if item is not None:
            return item
        found = await self._store.inbox.delivered(message.tenant, message.recipient, message.id)
        return None if found is None else Outgoing(message, *found)

    async def handsets(self, tenant: str, limit: int = 100) -> list[Handset]:
        """The tenant's ``limit`` most recently active handsets, newest activity first.

        A handset is a number the tenant sent to within ``privacy.body_ttl`` (while its
        row still names it, or a refused submit to it is kept), or one its inbox or MO
        table holds (kept as long). Each table
        gives its ``limit`` most recent, which holds the overall ``limit`` most recent.
        """
        store = self._store
        since = id_floor(self._clock() - self._config.privacy.body_ttl)
        last_at: dict[str, float] = {}
        for activity in (
            *await store.inbox.handsets(tenant, limit),
            *await store.inbound.handsets(tenant, limit),
            *await store.traffic.recipients(tenant, since, limit),
        ):
            last_at[activity.msisdn] = max(last_at.get(activity.msisdn, 0.0), activity.last_at)
        for msisdn, at in self._blocked.last_at(tenant).items():
            last_at[msisdn] = max(last_at.get(msisdn, 0.0), at)
        chosen = sorted(last_at, key=last_at.__getitem__, reverse=True)[:limit]
        if not chosen:
            return []
        received = await store.inbox.handset_counts(tenant, chosen)
        sent = await store.inbound.handset_counts(tenant, chosen)
        messages = await store.traffic.recipient_counts(tenant, since, chosen)
        replies = await store.inbound.latest(tenant, chosen)
        handsets = []
        for msisdn in chosen:
            latest: InboxEntry | InboundMessage | None = replies.get(msisdn)
            if received.get(msisdn):
                newest = (await store.inbox.received(tenant, msisdn, 1))[0]
                if latest is None or newest.received_at >= latest.received_at:
                    latest = newest
            handsets.append(
                Handset(
                    msisdn,
                    last_at[msisdn],
                    received.get(msisdn, 0),
                    sent.get(msisdn, 0),
                    messages.get(msisdn, 0),
                    latest,
                )
            )
        return handsets

    async def inbound(
        self, tenant: str, before_id: str | None = None, limit: int = 100
    ) -> list[InboundMessage]:
        """What handsets sent to the tenant's numbers, newest first (``before_id``: a cursor)."""
        return await self._store.inbound.received(tenant, before_id, limit)

    async def thread(self, tenant: str, msisdn: str, limit: int = 100) -> Thread:
        """The handset's last ``limit`` messages from the tenant and replies to it."""
        messages = await self._store.traffic.list_messages(tenant, recipient=msisdn, limit=limit)
        received = await self._store.inbox.received(tenant, msisdn, limit)
        delivered = {id for entry in received for id in entry.message_ids}
        pending = await self._store.traffic.pending_bodies(
            tenant, [m.id for m in messages if m.id not in delivered and not m.status.is_final]
        )
        replies = (await self._store.inbound.for_handset(tenant, msisdn))[-limit:][::-1]
        blocked = self._blocked.to(tenant, msisdn)[-limit:]
        return Thread(messages, received, pending, replies, blocked)

    async def texts(self, tenant: str, message_ids: Sequence[str]) -> dict[str, str]:
        """The bodies still kept of these messages: delivered (inbox) or on their way."""
        delivered = await self._store.inbox.parts(tenant, message_ids)
        pending = await self._store.traffic.pending_bodies(
            tenant, [id for id in message_ids if id not in delivered]
        )
        return {
            **{id: body for id, (body, _) in pending.items()},
            **{id: body for id, (_, body, _) in delivered.items()},
        }

    async def cancel(self, tenant: TenantConfig, message_id: str) -> Rejected | None:
        """Withdraw a message of this tenant that is not final yet (SMPP cancel_sm).

        Returns once the ``deleted`` state is committed, so an acknowledged cancel
        survives a crash and a query right after sees it.
        """
        if self._network.pending(tenant.id, message_id) is None:
            return await self._elsewhere("cancel", tenant, message_id)
        return await self._cancel_here(tenant, message_id)

    async def force_outcome(
        self, tenant: TenantConfig, message_id: str, outcome: Outcome
    ) -> Rejected | None:
        """End a message of this tenant still on its way or scheduled with ``outcome``, now
        (a test control).

        A scheduled message delivered now passes the privacy gates first, as it would at
        its time (`_release_scheduled`): one they refuse ends ``rejected`` instead. Its
        receipt, callback and events follow as for a natural outcome; returns once the
        final state is committed. Shared, a message another instance holds is forced there.
        """
        if self._network.pending(tenant.id, message_id) is None:
            return await self._elsewhere("force", tenant, message_id, outcome.value)
        return await self._force_here(tenant, message_id, outcome)

    async def _force_here(
        self, tenant: TenantConfig, message_id: str, outcome: Outcome
    ) -> Rejected | None:
        message = self._network.pending(tenant.id, message_id)
        if (
            message is not None
            and message.status is Status.SCHEDULED
            and outcome is Outcome.DELIVERED
        ):
            results: list[SubmitResult] = [message]
            await self._pass_gates(results)
            [verdict] = results
            if isinstance(verdict, Rejected) and self._network.refuse_scheduled(
                tenant.id, message_id, verdict.code.value
            ):
                return await self._committed()
        if not self._network.force(tenant.id, message_id, outcome):
            return Rejected(RejectCode.NOT_PENDING, "no such message on its way")
        return await self._committed()

    async def replace(
        self,
        tenant: TenantConfig,
        message_id: str,
        body: str,
        *,
        send_at: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> Rejected | None:
        """Replace the body of a message of this tenant that is not final yet (replace_sm).

        The replacement may not need more segments than the message was accepted with:
        the traffic log (and the bill) already counts them. A scheduled message may also
        get a new ``send_at`` and ``expires_at`` (None keeps each); a new time without a
        new expiry moves the expiry with it, so the validity keeps its length. Returns
        once the change is committed. Shared, a message another instance holds is
        replaced there (the new body crosses the bus sealed).
        """
        if self._network.pending(tenant.id, message_id) is None:
            times = (None if t is None else t.isoformat() for t in (send_at, expires_at))
            sealed = (
                None if self._bodies is None else self._bodies.seal(tenant.id, message_id, body)
            )
            return await self._elsewhere("replace", tenant, message_id, sealed, *times)
        return await self._replace_here(
            tenant, message_id, body, send_at=send_at, expires_at=expires_at
        )

    async def _replace_here(
        self,
        tenant: TenantConfig,
        message_id: str,
        body: str,
        *,
        send_at: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> Rejected | None:
        message = self._network.pending(tenant.id, message_id)
        if message is None:
            return Rejected(RejectCode.NOT_PENDING, "no such message on its way")
        window: tuple[float | None, float] | None = None
        if send_at is not None or expires_at is not None:
            moved = self._new_window(message, send_at, expires_at)
            if isinstance(moved, Rejected):
                return moved
            window = moved
        info = self._analyse(body)
        if isinstance(info, Rejected):
            return info
        if info.segments > message.segments:
            return Rejected(RejectCode.BODY_TOO_LONG, "the replacement needs more segments")
        self._network.replace(tenant.id, message_id, body)
        if window is not None:
            new_send_at, new_expires_at = window
            assert new_send_at is not None  # a scheduled message keeps its time if none is given
            self._network.reschedule(tenant.id, message_id, new_send_at, new_expires_at)
        return await self._committed()

    def _new_window(
        self, message: Message, send_at: datetime | None, expires_at: datetime | None
    ) -> tuple[float | None, float] | Rejected:
        """A scheduled message's new (send_at, expires_at), or why it cannot have them."""
        if message.status is not Status.SCHEDULED or message.send_at is None:
            return Rejected(
                RejectCode.NOT_PENDING,
                "the message is on its way: its schedule and validity can no longer change",
            )
        validity = None
        if expires_at is None and message.expires_at is not None:
            validity = timedelta(seconds=message.expires_at - message.send_at)
        now = self._clock()
        return validity_window(
            send_at or _aware(message.send_at),
            expires_at,
            validity,
            now,
            self._config.messages.max_validity,
        )

    async def redact(self, tenant: TenantConfig, message_id: str) -> Message | Rejected:
        """Erase the body held of a final message of this tenant (the handset's copy).

        The traffic log never holds one; what is left is the inbox entry's, until
        ``privacy.body_ttl``. Returns once the erasure is committed.
        """
        message = await self._final_message(tenant, message_id)
        if isinstance(message, Message):
            steps = self._store.inbox.redact_message(tenant.id, message_id)
            return await self._committed(("redact", steps)) or message
        return message

    async def forget(self, tenant: TenantConfig, message_id: str) -> Rejected | None:
        """Delete a final message of this tenant from the traffic log, its body with it."""
        message = await self._final_message(tenant, message_id)
        if isinstance(message, Rejected):
            return message
        steps = (
            *self._store.inbox.redact_message(tenant.id, message_id),
            *self._store.traffic.forget_message(tenant.id, message_id),
        )
        return await self._committed(("forget", steps))

    async def _final_message(self, tenant: TenantConfig, message_id: str) -> Message | Rejected:
        message = await self._store.traffic.get_message(tenant.id, message_id)
        if message is None:
            return Rejected(RejectCode.INVALID_REQUEST, "no such message")
        if not message.status.is_final:
            return Rejected(RejectCode.NOT_PENDING, "the message is not final yet")
        return message

    async def _committed(self, unit: tuple[str, Steps] | None = None) -> Rejected | None:
        """Wait for the commit of what was just queued, or of ``unit`` (kind, steps);
        a rejection if it failed."""
        try:
            if unit is None:
                await self._store.flush()
            else:
                await self._store.commit(*unit)
        except StoreError:
            return Rejected(RejectCode.STORE_UNAVAILABLE, "the store could not commit")
        return None

    def _count(
        self, requests: Sequence[SubmitRequest], results: list[SubmitResult], elapsed: float
    ) -> None:
        metrics = self._metrics
        for request, result in zip(requests, results, strict=True):
            # StrEnum members count as their values, without the .value property's cost.
            tenant, interface = request.tenant.id, request.interface
            if isinstance(result, Message):
                metrics.messages.inc(tenant, interface, "accepted")
            else:
                metrics.messages.inc(tenant, interface, "rejected")
                metrics.rejections.inc(tenant, interface, result.code)
        if requests:
            self._submit_latency[requests[0].interface].observe(elapsed)


def validity_window(
    send_at: datetime | None,
    expires_at: datetime | None,
    validity: timedelta | None,
    now: float,
    max_validity: float,
) -> tuple[float | None, float] | Rejected:
    """A message's (send_at, expires_at) in epoch seconds, or why it cannot have them.

    The validity counts from when the message is due (send_at, or ``now`` if that is
    earlier or none): ``expires_at`` if given, else ``validity`` after then, capped
    at ``max_validity`` after then (also when none is given). An expiry that is past,
    or not after the message is due, is refused.
    """
    start = None if send_at is None else send_at.timestamp()
    due = now if start is None else max(now, start)
    longest = due + max_validity
    if expires_at is not None:
        end = expires_at.timestamp()
    elif validity is not None:
        end = due + validity.total_seconds()
    else:
        return start, longest
    if end <= now:
        return Rejected(RejectCode.INVALID_VALIDITY, "the validity period has already ended")
    if end <= due:
        return Rejected(
            RejectCode.INVALID_VALIDITY, "the validity period ends before the message is due"
        )
    return start, min(end, longest)


def _aware(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@functools.lru_cache(maxsize=4096)
def _canonical_sender(sender: str, default_country: str | None) -> str | None:
    """Numeric senders compare as E.164, short codes and alphanumeric ones as written.

    Cached: a tenant sends from a few senders, and reading one (NFKC, two patterns, the
    E.164 check) cost 17 us a message on the loaded bench machine, a hit 0.5 us.
    """
    if is_short_code(sender) or not is_numeric_address(sender):
        return sender
    try:
        return normalise_msisdn(sender, default_country)
    except InvalidNumber:
        return None


def _canonical_senders(tenant: TenantConfig) -> frozenset[str]:
    country = tenant.default_country
    return frozenset(
        s for s in (_canonical_sender(x, country) for x in tenant.sending_addresses) if s
    )


def _one_submission(results: list[SubmitResult]) -> list[SubmitResult]:
    """The accepted messages of one submit_multi, each naming the first one's id."""
    first = next((r.id for r in results if isinstance(r, Message)), None)
    return [
        dataclasses.replace(r, submission=first) if isinstance(r, Message) else r for r in results
    ]
