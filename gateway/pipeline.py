"""The one submit pipeline that every front end calls.

In order: the tenant's rate limit (``max_submit_rate``, then the chaos cap: one
bucket each per tenant, shared by every front end), validate (recipient to E.164,
sender, encoding and length, callback host), the privacy gates, id, the simulated
SMSC's submit faults, durable persist (group commit), hand-over to the simulated
network. Front ends only translate their wire format into a
`SubmitRequest` and a `Rejected.code` back into an HTTP status or an SMPP
command_status. They reach the traffic through this pipeline alone (submit,
receive, cancel, replace, and the reads: message, messages, inbox, inbound), never the
store or the network around it; tests/test_layers.py holds them to that.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.chaos import Chaos
from gateway.config import Config, TenantConfig
from gateway.domain import (
    InboundMessage,
    InboundOutcome,
    InboxEntry,
    Interface,
    Message,
    Notice,
    NoticeKind,
    Outgoing,
    RejectCode,
    Rejected,
    Status,
    SubmitRequest,
)
from gateway.encoding import BodyInfo, analyse, analyse_binary
from gateway.events import MESSAGE_ACCEPTED, MO_RECEIVED, EventBus
from gateway.ids import MessageIds
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.numbers import InvalidNumber, is_numeric_address, is_short_code, normalise_msisdn
from gateway.rates import TokenBucket
from gateway.store import Store, StoreError

log = logging.getLogger(__name__)

SubmitResult = Message | Rejected
InboundListener = Callable[[Notice], None]


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
        gates: Sequence[PrivacyGate] = (),
        responder: InboundResponder | None = None,
        chaos: Chaos | None = None,
    ) -> None:
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
        self._buckets = {t.id: TokenBucket(t.submit_rate) for t in config.tenants if t.submit_rate}
        self._chaos = chaos

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
        now = self._clock()
        results = [self._admit(request) or self._validate(request, now) for request in requests]
        for gate in self._gates:
            await self._apply_gate(gate, results)
        for index, result in enumerate(results):
            if isinstance(result, Message):
                fault = self._network.submit_fault(result.tenant, result.recipient)
                if fault is not None:
                    results[index] = Rejected(fault, "the simulated SMSC failed this submit")
        if one_submission:
            results = _one_submission(results)
        accepted = [
            Outgoing(result, request.body, request.part)
            for result, request in zip(results, requests, strict=True)
            if isinstance(result, Message)
        ]
        if accepted:
            try:
                await self._store.traffic.add_messages(accepted)
            except StoreError:
                unavailable = Rejected(RejectCode.STORE_UNAVAILABLE, "the store could not commit")
                results = [unavailable if isinstance(r, Message) else r for r in results]
                accepted = []
            for item in accepted:
                self._publish_accepted(item.message)
                self._network.hand_over(item)
        self._count(requests, results, time.perf_counter() - started)
        return results

    async def resume(self) -> None:
        """Hand what the last run left unfinished back to the network (once, at start).

        The messages pass the gates again: an opt-out or a restriction may have been
        committed since they were accepted, and then they end before delivery.
        """
        unfinished = await self._store.traffic.unfinished()
        results: list[SubmitResult] = [item.message for item in unfinished]
        for gate in self._gates:
            await self._apply_gate(gate, results)
        for item, result in zip(unfinished, results, strict=True):
            if isinstance(result, Message):
                self._network.hand_over(item)
            else:
                self._network.stop_before_delivery(item, result.code.value)
        log_event(log, "network.resumed", count=len(unfinished))

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
        return Message(
            id=self._ids.next(),
            tenant=tenant.id,
            interface=request.interface,
            sender=sender,
            recipient=recipient,
            purpose=purpose,
            segments=info.segments,
            encoding=info.encoding,
            status=Status.ACCEPTED,
            submitted_at=now,
            client_ref=request.client_ref,
            callback_url=request.callback_url,
            receipt=request.receipt,
            message_class=request.message_class,
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

    @property
    def ready(self) -> bool:
        """The store behind the pipeline can commit."""
        return self._store.healthy

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
        status: Status | None = None,
        since_id: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> list[Message]:
        """The tenant's messages, newest first (see `Traffic.list_messages`)."""
        return await self._store.traffic.list_messages(
            tenant,
            recipient=recipient,
            status=status,
            since_id=since_id,
            before_id=before_id,
            limit=limit,
        )

    async def inbox(self, tenant: str, msisdn: str, limit: int = 100) -> list[InboxEntry]:
        """What a simulated handset received from the tenant, newest first."""
        return await self._store.inbox.received(tenant, msisdn, limit)

    async def inbound(
        self, tenant: str, before_id: str | None = None, limit: int = 100
    ) -> list[InboundMessage]:
        """What handsets sent to the tenant's numbers, newest first (``before_id``: a cursor)."""
        return await self._store.inbound.received(tenant, before_id, limit)

    async def cancel(self, tenant: TenantConfig, message_id: str) -> Rejected | None:
        """Withdraw a message of this tenant that is not final yet (SMPP cancel_sm).

        Returns once the ``deleted`` state is committed, so an acknowledged cancel
        survives a crash and a query right after sees it.
        """
        if not self._network.cancel(tenant.id, message_id):
            return Rejected(RejectCode.NOT_PENDING, "no such message on its way")
        return await self._committed()

    async def replace(self, tenant: TenantConfig, message_id: str, body: str) -> Rejected | None:
        """Replace the body of a message of this tenant that is not final yet (replace_sm).

        The replacement may not need more segments than the message was accepted with:
        the traffic log (and the bill) already counts them. Returns once the new body
        is committed.
        """
        message = self._network.pending(tenant.id, message_id)
        if message is None:
            return Rejected(RejectCode.NOT_PENDING, "no such message on its way")
        info = self._analyse(body)
        if isinstance(info, Rejected):
            return info
        if info.segments > message.segments:
            return Rejected(RejectCode.BODY_TOO_LONG, "the replacement needs more segments")
        self._network.replace(tenant.id, message_id, body)
        return await self._committed()

    async def _committed(self) -> Rejected | None:
        """Wait for the commit of what was just queued; a rejection if it failed."""
        try:
            await self._store.flush()
        except StoreError:
            return Rejected(RejectCode.STORE_UNAVAILABLE, "the store could not commit")
        return None

    def _count(
        self, requests: Sequence[SubmitRequest], results: list[SubmitResult], elapsed: float
    ) -> None:
        metrics = self._metrics
        for request, result in zip(requests, results, strict=True):
            tenant, interface = request.tenant.id, request.interface.value
            if isinstance(result, Message):
                metrics.messages.inc(tenant, interface, "accepted")
            else:
                metrics.messages.inc(tenant, interface, "rejected")
                metrics.rejections.inc(tenant, interface, result.code.value)
        if requests:
            metrics.submit_latency.labels(requests[0].interface.value).observe(elapsed)


def _canonical_sender(sender: str, default_country: str | None) -> str | None:
    """Numeric senders compare as E.164, short codes and alphanumeric ones as written."""
    if is_short_code(sender) or not is_numeric_address(sender):
        return sender
    try:
        return normalise_msisdn(sender, default_country)
    except InvalidNumber:
        return None


def _canonical_senders(tenant: TenantConfig) -> frozenset[str]:
    country = tenant.default_country
    return frozenset(s for s in (_canonical_sender(x, country) for x in tenant.senders) if s)


def _one_submission(results: list[SubmitResult]) -> list[SubmitResult]:
    """The accepted messages of one submit_multi, each naming the first one's id."""
    first = next((r.id for r in results if isinstance(r, Message)), None)
    return [
        dataclasses.replace(r, submission=first) if isinstance(r, Message) else r for r in results
    ]
