"""The one submit pipeline that every front end calls.

In order: validate (recipient to E.164, sender, encoding and length, callback
host), the privacy gates, id, durable persist (group commit), hand-over to the
simulated network. Front ends only translate their wire format into a
`SubmitRequest` and a `Rejected.code` back into an HTTP status or an SMPP
command_status; no front end can reach the store or the network around it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.config import Config, TenantConfig
from gateway.domain import (
    Message,
    Notice,
    NoticeKind,
    Outgoing,
    RejectCode,
    Rejected,
    Status,
    SubmitRequest,
)
from gateway.encoding import BodyInfo, analyse
from gateway.ids import MessageIds
from gateway.metrics import Metrics
from gateway.network import SimulatedNetwork
from gateway.numbers import InvalidNumber, is_numeric_address, normalise_msisdn
from gateway.store import Store, StoreError

_PURPOSE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")

SubmitResult = Message | Rejected
InboundListener = Callable[[Notice], None]


class PrivacyGate(Protocol):
    """A check every message must pass before it is persisted (consent, restriction...)."""

    async def check(self, tenant: TenantConfig, recipient: str, purpose: str) -> Rejected | None:
        """None lets the message through; a `Rejected` stops it."""
        ...


class SubmitPipeline:
    def __init__(
        self,
        config: Config,
        store: Store,
        network: SimulatedNetwork,
        metrics: Metrics,
        clock: Callable[[], float],
        gates: Sequence[PrivacyGate] = (),
    ) -> None:
        self._config = config
        self._store = store
        self._network = network
        self._metrics = metrics
        self._clock = clock
        self._gates = tuple(gates)
        self._ids = MessageIds(clock)
        self._senders = {t.id: _canonical_senders(t) for t in config.tenants}
        self._inbound_listeners: list[InboundListener] = []

    async def submit(self, request: SubmitRequest) -> SubmitResult:
        return (await self.submit_many([request]))[0]

    async def submit_many(self, requests: Sequence[SubmitRequest]) -> list[SubmitResult]:
        """Each request is accepted or rejected on its own; the accepted share one commit."""
        started = time.perf_counter()
        now = self._clock()
        results: list[SubmitResult] = []
        for request in requests:
            result = self._validate(request, now)
            if isinstance(result, Message):
                for gate in self._gates:
                    rejection = await gate.check(request.tenant, result.recipient, result.purpose)
                    if rejection is not None:
                        result = rejection
                        break
            if isinstance(result, Message):
                fault = self._network.submit_fault(result.recipient)
                if fault is not None:
                    result = Rejected(fault, "the simulated SMSC failed this submit (a rule)")
            results.append(result)
        accepted = [
            Outgoing(result, request.body, request.part)
            for result, request in zip(results, requests, strict=True)
            if isinstance(result, Message)
        ]
        if accepted:
            try:
                await self._store.add_messages(accepted)
            except StoreError:
                unavailable = Rejected(RejectCode.STORE_UNAVAILABLE, "the store could not commit")
                results = [unavailable if isinstance(r, Message) else r for r in results]
                accepted = []
            for item in accepted:
                self._network.hand_over(item)
        self._count(requests, results, time.perf_counter() - started)
        return results

    def _validate(self, request: SubmitRequest, now: float) -> SubmitResult:
        tenant = request.tenant
        country = tenant.default_country or None
        try:
            recipient = normalise_msisdn(request.to, country)
        except InvalidNumber as exc:
            return Rejected(RejectCode.INVALID_RECIPIENT, f"'to' is not a phone number: {exc}")
        sender = _canonical_sender(request.sender, country)
        if sender is None or sender not in self._senders[tenant.id]:
            return Rejected(RejectCode.UNKNOWN_SENDER, "'from' is not one of this tenant's senders")
        purpose = request.purpose or tenant.default_purpose
        if not _PURPOSE_RE.fullmatch(purpose):
            return Rejected(RejectCode.INVALID_REQUEST, "'purpose' must be a lower-case token")
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
        info = self._analyse(request.body)
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
        )

    def _analyse(self, body: str) -> BodyInfo | Rejected:
        try:
            info = analyse(body)
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

    def receive(
        self, tenant: TenantConfig, handset: str, address: str, body: str
    ) -> Notice | Rejected:
        """A simulated handset sends ``body`` to one of the tenant's numbers (an MO message)."""
        country = tenant.default_country or None
        try:
            handset = normalise_msisdn(handset, country)
        except InvalidNumber as exc:
            return Rejected(RejectCode.INVALID_REQUEST, f"'from' is not a phone number: {exc}")
        canonical = _canonical_sender(address, country)
        if canonical is None or canonical not in self._senders[tenant.id]:
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
        for listener in self._inbound_listeners:
            listener(notice)
        return notice

    def cancel(self, tenant: TenantConfig, message_id: str) -> bool:
        """Withdraw a message of this tenant that is not final yet (SMPP cancel_sm)."""
        return self._network.cancel(tenant.id, message_id)

    def replace(self, tenant: TenantConfig, message_id: str, body: str) -> Rejected | None:
        """Replace the body of a message of this tenant that is not final yet (replace_sm).

        The replacement may not need more segments than the message was accepted with:
        the traffic log (and the bill) already counts them.
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
        return None

    def _count(
        self, requests: Sequence[SubmitRequest], results: list[SubmitResult], elapsed: float
    ) -> None:
        metrics = self._metrics
        for request, result in zip(requests, results, strict=True):
            tenant, interface = request.tenant.id, request.interface.value
            if isinstance(result, Message):
                metrics.messages.labels(tenant, interface, "accepted").inc()
            else:
                metrics.messages.labels(tenant, interface, "rejected").inc()
                metrics.rejections.labels(tenant, interface, result.code.value).inc()
        if requests:
            metrics.submit_latency.labels(requests[0].interface.value).observe(elapsed)


def _canonical_sender(sender: str, default_country: str | None) -> str | None:
    """Numeric senders compare as E.164, alphanumeric ones as written."""
    if not is_numeric_address(sender):
        return sender
    try:
        return normalise_msisdn(sender, default_country)
    except InvalidNumber:
        return None


def _canonical_senders(tenant: TenantConfig) -> frozenset[str]:
    country = tenant.default_country or None
    return frozenset(s for s in (_canonical_sender(x, country) for x in tenant.senders) if s)
