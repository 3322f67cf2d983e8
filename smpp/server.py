"""The SMPP 3.4 server: ESMEs bind to us as they would to an operator's SMSC.

A thin asyncio layer around the sans-IO parts: bytes go through the `Framer`,
frames through `decode`, each PDU is checked against the session table and
dispatched through `SmppConnection.HANDLERS`. Submits become `SubmitRequest`s for
the one submit pipeline; all submit_sm PDUs that arrive in one read go to the
pipeline together, so a windowed client's burst shares one store commit and its
responses go out in one write.

Receipts and mobile-originated messages ("notices") go to a bound receiver or
transceiver session of the tenant, at most ``deliver_window`` unacknowledged per
session. Each is in the store from the commit of what it reports until a receiver
acknowledges it (`smpp.notices.NoticeQueue`), until it expires.

Binds are checked one at a time per connection, each after its slot in the shared
`GuessThrottle`; answers wait for their commit (submits, cancel_sm, replace_sm).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import Callable, Coroutine
from typing import ClassVar

from gateway.config import Config, TenantConfig
from gateway.domain import (
    Interface,
    Message,
    Notice,
    NoticeKind,
    Part,
    ReceiptRequest,
    RejectCode,
    SubmitRequest,
)
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.pipeline import SubmitPipeline
from gateway.store import Store
from gateway.throttle import GuessThrottle
from smpp import session
from smpp.framer import FrameError, Framer
from smpp.notices import NoticeQueue
from smpp.pdu import (
    CommandId,
    CommandStatus,
    DistributionList,
    Pdu,
    PduError,
    SmeAddress,
    Tag,
    UnsuccessSme,
    decode,
    encode,
)
from smpp.session import State
from smpp.text import (
    ESM_DELIVERY_RECEIPT,
    ESM_UDHI,
    MESSAGE_STATE,
    ReceiptFacts,
    TextError,
    concatenation_part,
    decode_text,
    encode_text,
    receipt_text,
    split_udh,
)

log = logging.getLogger(__name__)

# submit_sm and data_sm PDUs read in one go, with their requests for the pipeline.
Submits = list[tuple[Pdu, SubmitRequest]]

S = CommandStatus
C = CommandId

# The one table from pipeline rejections to command_status (privacy rejections come
# from ``[smpp.error_codes]``, in the vendor-specific range).
REJECT_STATUS: dict[RejectCode, int] = {
    RejectCode.INVALID_REQUEST: S.ESME_RSUBMITFAIL,
    RejectCode.INVALID_RECIPIENT: S.ESME_RINVDSTADR,
    RejectCode.UNKNOWN_SENDER: S.ESME_RINVSRCADR,
    RejectCode.BODY_TOO_LONG: S.ESME_RINVMSGLEN,
    RejectCode.CALLBACK_NOT_ALLOWED: S.ESME_RSUBMITFAIL,
    RejectCode.STORE_UNAVAILABLE: S.ESME_RSYSERR,
    RejectCode.THROTTLED: S.ESME_RTHROTTLED,
    RejectCode.QUEUE_FULL: S.ESME_RMSGQFUL,
    RejectCode.SYSTEM_ERROR: S.ESME_RSYSERR,
    RejectCode.NO_RESPONSE: S.ESME_RSYSERR,
    RejectCode.NOT_PENDING: S.ESME_RREPLACEFAIL,
}

BIND_TYPE = {
    State.BOUND_TX: "transmitter",
    State.BOUND_RX: "receiver",
    State.BOUND_TRX: "transceiver",
}

_KNOWN_COMMANDS = frozenset(C)
_KNOWN_STATUSES = frozenset(S)

TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_ALPHANUMERIC = 5
NPI_ISDN = 1
# Most submits one connection may have in the pipeline before we stop reading from it.
MAX_PENDING_SUBMITS = 2000
# Vendor-specific TLV on a mobile-originated deliver_sm: the keyword it matched
# ("stop", "start", "help"), so the tenant sees an opt-out as one.
TAG_KEYWORD = 0x1501
SYSTEM_ID = "smsgw"


class TokenBucket:
    """A submit rate limit shared by a tenant's sessions."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class SmppServer:
    def __init__(
        self,
        config: Config,
        pipeline: SubmitPipeline,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.notices = NoticeQueue(store, config.smpp, metrics, clock)
        metrics.smpp_window_size.set(config.smpp.deliver_window)
        metrics.notices_pending.set_function(lambda: self.notices.pending)
        for tenant in config.tenants:
            if tenant.smpp is not None:
                metrics.smpp_window.labels(tenant.id).set_function(
                    functools.partial(self.notices.outstanding, tenant.id)
                )
        codes = config.smpp.error_codes
        self.reject_status: dict[RejectCode, int] = {
            **REJECT_STATUS,
            RejectCode.RECIPIENT_OPTED_OUT: codes.recipient_opted_out,
            RejectCode.CONSENT_REQUIRED: codes.consent_required,
            RejectCode.PROCESSING_RESTRICTED: codes.processing_restricted,
        }
        self.tenants_by_system_id = {t.smpp.system_id: t for t in config.tenants if t.smpp}
        self.sessions: dict[str, set[SmppConnection]] = {}
        self.connections: set[SmppConnection] = set()
        self.buckets = {
            t.id: TokenBucket(t.smpp.max_submit_rate)
            for t in config.tenants
            if t.smpp and t.smpp.max_submit_rate
        }
        # Checks that would wait more than a few capped delays are refused unchecked.
        self.throttle = GuessThrottle(
            config.smpp.failed_bind_delay,
            config.smpp.max_bind_delay,
            max_wait=4 * config.smpp.max_bind_delay,
        )
        self._server: asyncio.Server | None = None
        self.port = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pdu_labels: dict[tuple[str, int, int], tuple[str, str, str]] = {}

    async def start(self) -> int:
        """Listen on ``[smpp] host/port``; returns the bound port."""
        loop = asyncio.get_running_loop()
        await self.notices.open()
        self._server = await loop.create_server(
            lambda: SmppConnection(self), self.config.smpp.host, self.config.smpp.port
        )
        self._schedule_sweep()
        self.port = int(self._server.sockets[0].getsockname()[1])
        log_event(log, "smpp.listening", host=self.config.smpp.host, port=self.port)
        return self.port

    async def close(self) -> None:
        """Stop listening and close every session; notices stay in the store."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):  # bound or not
            connection.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notices.close()
        if self._server is not None:
            await self._server.wait_closed()

    def spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        """Run a session's background work; close() cancels whatever is left."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def count_pdu(self, direction: str, command_id: int, status: int) -> None:
        # Unknown ids and statuses share one key, so a peer cannot grow this cache.
        command_id = command_id if command_id in _KNOWN_COMMANDS else -1
        status = status if status in _KNOWN_STATUSES else -1
        key = (direction, command_id, status)
        labels = self._pdu_labels.get(key)
        if labels is None:
            command = C(command_id).name if command_id != -1 else "unknown"
            status_name = S(status).name if status != -1 else "vendor"
            labels = self._pdu_labels[key] = (direction, command, status_name)
        self.metrics.smpp_pdus.inc(*labels)

    # --- binds ---------------------------------------------------------------------------

    def _session_room(self, tenant: TenantConfig) -> bool:
        assert tenant.smpp is not None
        return len(self.sessions.get(tenant.id, ())) < tenant.smpp.max_sessions

    async def authenticate(
        self, peer: str, system_id: str, password: str
    ) -> TenantConfig | CommandStatus:
        """The tenant these credentials bind, or the command_status that refuses the bind.

        A tenant with all its sessions bound is refused at once: that is no failed
        guess. Otherwise the check waits for its slot in the guess throttle (per peer
        address, and per system_id the config knows), so guesses cannot run faster
        than the throttle allows however they are pipelined or spread over connections.
        """
        tenant = self.tenants_by_system_id.get(system_id)
        if tenant is not None and not self._session_room(tenant):
            return S.ESME_RBINDFAIL
        identity = system_id if tenant is not None else None
        if not await self.throttle.admit(peer, identity):
            self.metrics.auth_failures.labels("smpp", "refused").inc()
            return S.ESME_RBINDFAIL
        if tenant is None or tenant.smpp is None:
            status = S.ESME_RINVSYSID
        elif not hmac.compare_digest(password.encode(), tenant.smpp.password.encode()):
            status = S.ESME_RINVPASWD
        else:
            self.throttle.succeeded(peer, identity)
            return tenant if self._session_room(tenant) else S.ESME_RBINDFAIL
        self.throttle.failed(peer, identity)
        self.metrics.auth_failures.labels("smpp", "failed").inc()
        return status

    def bound(self, connection: SmppConnection) -> None:
        assert connection.tenant is not None
        self.sessions.setdefault(connection.tenant.id, set()).add(connection)
        self.metrics.smpp_sessions.labels(connection.tenant.id, connection.bind_type).inc()
        if connection.receives:
            self.notices.attach(connection, connection.tenant.id)

    def unbound(self, connection: SmppConnection) -> None:
        tenant = connection.tenant
        if tenant is None:
            return
        self.sessions.get(tenant.id, set()).discard(connection)
        self.metrics.smpp_sessions.labels(tenant.id, connection.bind_type).dec()
        self.notices.detach(connection)

    # --- notices: receipts and mobile-originated messages --------------------------------

    def keep_receipt(self, message: Message) -> None:
        """Network final hook: the receipt an SMPP sender asked for, committed with the state."""
        if message.interface is not Interface.SMPP or not message.receipt.wants(message.status):
            return
        now = self.clock()
        notice = Notice(
            tenant=message.tenant,
            kind=NoticeKind.RECEIPT,
            message_id=message.id,
            handset=message.recipient,
            address=message.sender,
            created_at=now,
            expires_at=now + self.config.smpp.notice_ttl,
            status=message.status,
            error=message.error,
            submitted_at=message.submitted_at,
        )
        self.store.notices.keep(notice, after_commit=functools.partial(self.notices.offer, notice))

    def notify(self, notice: Notice) -> None:
        """Pipeline inbound listener: an MO message, already committed if it has a row."""
        if notice.queue_id is not None:
            self.notices.offer(notice)

    def _schedule_sweep(self) -> None:
        interval = min(self.config.smpp.notice_ttl, 60.0)
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        self.spawn(self.notices.forget_expired())
        self._schedule_sweep()


class SmppConnection(asyncio.Protocol):
    """One ESME connection: framing, the session state, timers and the deliver_sm window.

    Frames are handled in order until something must finish first: a bind (answered
    after its throttled check) or a full output buffer (the transport asked us to
    pause writing). Then the frames already read stay in the framer and reading
    pauses, so a peer can make us hold neither guesses nor answers it does not read.
    """

    HANDLERS: ClassVar[dict[CommandId, Callable[[SmppConnection, Pdu, Submits], None]]]

    def __init__(self, server: SmppServer) -> None:
        self.server = server
        config = server.config.smpp
        self.config = config
        self.framer = Framer(config.max_command_length)
        self.state = State.OPEN
        self.tenant: TenantConfig | None = None
        # Set by a successful bind and kept after an unbind, so the end of the
        # connection still finds the session to deregister.
        self.bind_type: str | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.loop = asyncio.get_running_loop()
        self.last_seen = self.loop.time()
        self.probe_sent: float | None = None
        self._outgoing: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None
        self.sequence = 0
        self.pending_submits = 0
        # Reasons to stop reading: each is cleared by the event that ends it.
        self.binding = False  # a bind waits for its check and answer
        self.write_paused = False  # the transport's output buffer is over its high-water mark
        self.submits_paused = False  # too many submits of this connection in the pipeline

    # --- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "?"
        self.timer = self.loop.call_later(self.config.bind_timeout, self._bind_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        self.state = State.CLOSED
        if self.bind_type is not None:
            self.server.unbound(self)

    def data_received(self, data: bytes) -> None:
        self.framer.receive_data(data)
        self._handle_frames()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._handle_frames()

    def _handle_frames(self) -> None:
        """Handle the frames read so far, until one must be answered before the rest."""
        submits: Submits = []
        while self.state is not State.CLOSED and not (self.binding or self.write_paused):
            try:
                frame = self.framer.next_frame()
            except FrameError as error:
                self._send(session.error_response(error), status=error.status)
                self.close()
                break
            if frame is None:
                break
            self._handle(frame, submits)
        if submits:
            self._submit(submits)
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = self.binding or self.write_paused or self.submits_paused
        if pause and transport.is_reading():
            transport.pause_reading()
        elif not pause and not transport.is_reading():
            transport.resume_reading()

    def _handle(self, frame: bytes, submits: Submits) -> None:
        self.last_seen = self.loop.time()
        self.probe_sent = None
        try:
            pdu = decode(frame)
        except PduError as error:
            self.server.count_pdu("in", error.command_id or 0, error.status)
            self._send(session.error_response(error))
            return
        self.server.count_pdu("in", pdu.command_id, pdu.command_status)
        status = session.check(self.state, pdu.command_id)
        if status != S.ESME_ROK:
            if not pdu.command_id.is_response:
                self._answer(pdu, status)
            return
        self.HANDLERS[pdu.command_id](self, pdu, submits)

    # --- sending ------------------------------------------------------------------------

    def _send(self, pdu: Pdu, status: int | None = None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._write(encode(pdu))
        self.server.count_pdu("out", pdu.command_id, pdu.command_status)
        self.state = session.transition(self.state, pdu.command_id, pdu.command_status)
        if pdu.command_id == C.unbind_resp:
            # However the unbind was answered (even with an error for its trailing
            # octets), the session is over: an UNBOUND one must not hold its slot.
            self.close()

    def _answer(self, request: Pdu, status: int = S.ESME_ROK, **fields: object) -> None:
        command = session.response_for(request.command_id)
        self._send(Pdu.make(command, request.sequence_number, status=status, **fields))

    def _next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence

    def _write(self, data: bytes) -> None:
        """Queue bytes; what one turn of the event loop queues leaves in one write."""
        if not self._outgoing:
            self.loop.call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()

    # --- binds and session life -----------------------------------------------------------

    def _bind(self, pdu: Pdu, submits: Submits) -> None:
        """One bind at a time: the PDUs after it wait until it is answered."""
        self.binding = True
        self.server.spawn(self._run_bind(pdu))

    async def _run_bind(self, pdu: Pdu) -> None:
        try:
            result = await self.server.authenticate(
                self.peer, str(pdu.params["system_id"]), str(pdu.params["password"])
            )
            if not isinstance(result, TenantConfig):
                log_event(log, "smpp.bind_refused", status=result.name)
                self._answer(pdu, result)
                return
            self._bound(pdu, result)
        finally:
            self.binding = False
            self._handle_frames()

    def _bound(self, pdu: Pdu, tenant: TenantConfig) -> None:
        self.tenant = tenant
        self._answer(pdu, S.ESME_ROK, system_id=SYSTEM_ID)
        if self.state not in BIND_TYPE:
            return  # the peer left before the answer could go out
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self._tick_interval, self._tick)
        self.bind_type = BIND_TYPE[self.state]
        log_event(log, "smpp.bound", tenant=tenant.id, bind_type=self.bind_type)
        self.server.bound(self)

    @property
    def receives(self) -> bool:
        return self.state in (State.BOUND_RX, State.BOUND_TRX)

    def _bind_timeout(self) -> None:
        if self.state is State.OPEN:
            log_event(log, "smpp.bind_timeout")
            self.close()

    @property
    def _tick_interval(self) -> float:
        return min(self.config.enquire_link_interval, self.config.response_timeout)

    def _tick(self) -> None:
        """Probe an idle peer with enquire_link; close the session if it stops answering."""
        now = self.loop.time()
        if self.probe_sent is not None and now - self.probe_sent >= self.config.response_timeout:
            log_event(log, "smpp.peer_silent", tenant=self.tenant.id if self.tenant else None)
            self.close()
            return
        if self.probe_sent is None and now - self.last_seen >= self.config.enquire_link_interval:
            self.probe_sent = now
            self._send(Pdu.make(C.enquire_link, self._next_sequence()))
        self.timer = self.loop.call_later(self._tick_interval, self._tick)

    def _enquire_link(self, pdu: Pdu, submits: Submits) -> None:
        self._answer(pdu)

    def _ignore(self, pdu: Pdu, submits: Submits) -> None:
        """enquire_link_resp: any PDU already proved the peer alive."""

    def _unbind(self, pdu: Pdu, submits: Submits) -> None:
        self._answer(pdu)  # and close (see _send)

    def _unbind_resp(self, pdu: Pdu, submits: Submits) -> None:
        self.close()

    # --- submits ----------------------------------------------------------------------------

    def _submit_sm(self, pdu: Pdu, submits: Submits) -> None:
        request = self._request(
            pdu, str(pdu.params["destination_addr"]), pdu.params["dest_addr_ton"]
        )
        if isinstance(request, CommandStatus):
            self._answer(pdu, request)
        else:
            submits.append((pdu, request))

    _data_sm = _submit_sm

    def _request(
        self, pdu: Pdu, destination: str, dest_ton: object
    ) -> SubmitRequest | CommandStatus:
        """Translate submit_sm / data_sm / one submit_multi destination into a request."""
        assert self.tenant is not None
        params, tlvs = pdu.params, pdu.tlvs
        bucket = self.server.buckets.get(self.tenant.id)
        if bucket is not None and not bucket.take():
            return S.ESME_RTHROTTLED
        short_message = params.get("short_message", b"")
        payload = tlvs.get(Tag.message_payload)
        if payload is not None and short_message:
            return S.ESME_RSUBMITFAIL  # the spec allows one or the other
        data = payload if isinstance(payload, bytes) else short_message
        assert isinstance(data, bytes)
        esm_class = int(params.get("esm_class", 0))  # type: ignore[call-overload]
        part: Part | None = None
        try:
            if esm_class & ESM_UDHI:
                part, data = split_udh(data)
            body = decode_text(int(params["data_coding"]), data)  # type: ignore[call-overload]
        except TextError:
            return S.ESME_RINVESMCLASS if esm_class & ESM_UDHI else S.ESME_RSUBMITFAIL
        if part is None and Tag.sar_msg_ref_num in tlvs:
            try:
                part = concatenation_part(
                    int(tlvs[Tag.sar_msg_ref_num]),  # type: ignore[call-overload]
                    int(tlvs[Tag.sar_segment_seqnum]),  # type: ignore[call-overload]
                    int(tlvs[Tag.sar_total_segments]),  # type: ignore[call-overload]
                )
            except KeyError:
                return S.ESME_RMISSINGOPTPARAM
            except TextError:
                return S.ESME_RINVOPTPARAMVAL
        service_type = str(params.get("service_type", ""))
        purpose = self.server.config.smpp.service_types.get(service_type)
        if purpose is None and service_type not in ("", "CMT"):
            return S.ESME_RINVSERTYP
        try:
            receipt = ReceiptRequest(int(params.get("registered_delivery", 0)) & 0x03)  # type: ignore[call-overload]
        except ValueError:
            return S.ESME_RINVREGDLVFLG
        return SubmitRequest(
            tenant=self.tenant,
            interface=Interface.SMPP,
            to=_address(destination, dest_ton),
            sender=_address(str(params["source_addr"]), params["source_addr_ton"]),
            body=body,
            purpose=purpose,
            receipt=receipt,
            part=part,
        )

    def _submit(self, submits: Submits) -> None:
        self.pending_submits += len(submits)
        if self.pending_submits > MAX_PENDING_SUBMITS:
            self.submits_paused = True
        self.server.spawn(self._run_submits(submits))

    async def _run_submits(self, submits: Submits) -> None:
        try:
            results = await self.server.pipeline.submit_many([r for _, r in submits])
        finally:
            self.pending_submits -= len(submits)
            if self.submits_paused and self.pending_submits < MAX_PENDING_SUBMITS // 2:
                self.submits_paused = False
                self._update_reading()
        if self.transport is None or self.transport.is_closing():
            return
        chunks = []
        for (request, _), result in zip(submits, results, strict=True):
            command = session.response_for(request.command_id)
            if isinstance(result, Message):
                pdu = Pdu.make(command, request.sequence_number, message_id=result.id)
            elif result.code is RejectCode.NO_RESPONSE:
                continue
            else:
                status = self.server.reject_status[result.code]
                pdu = Pdu.make(command, request.sequence_number, status=status)
            chunks.append(encode(pdu))
            self.server.count_pdu("out", pdu.command_id, pdu.command_status)
        self._write(b"".join(chunks))

    def _submit_multi(self, pdu: Pdu, submits: Submits) -> None:
        accepted: list[tuple[SmeAddress, SubmitRequest]] = []
        refused: list[UnsuccessSme] = []
        for dest in pdu.params["dest_address"]:  # type: ignore[attr-defined]
            if isinstance(dest, DistributionList):
                refused.append(UnsuccessSme(0, 0, dest.dl_name, S.ESME_RINVDLNAME))
                continue
            request = self._request(pdu, dest.destination_addr, dest.dest_addr_ton)
            if isinstance(request, CommandStatus):
                refused.append(_unsuccess(dest, request))
            else:
                accepted.append((dest, request))
        self.server.spawn(self._run_multi(pdu, accepted, refused))

    async def _run_multi(
        self,
        pdu: Pdu,
        destinations: list[tuple[SmeAddress, SubmitRequest]],
        refused: list[UnsuccessSme],
    ) -> None:
        """One submit_multi_resp: the first accepted message's id, and each refusal."""
        results = await self.server.pipeline.submit_many([r for _, r in destinations])
        first_id = ""
        for (dest, _), result in zip(destinations, results, strict=True):
            if isinstance(result, Message):
                first_id = first_id or result.id
            else:
                refused.append(_unsuccess(dest, self.server.reject_status[result.code]))
        self._answer(pdu, message_id=first_id, unsuccess_sme=tuple(refused))

    # --- operations on submitted messages ---------------------------------------------------

    def _query_sm(self, pdu: Pdu, submits: Submits) -> None:
        self.server.spawn(self._run_query(pdu))

    async def _run_query(self, pdu: Pdu) -> None:
        assert self.tenant is not None
        message_id = str(pdu.params["message_id"])
        message = await self.server.store.traffic.get_message(self.tenant.id, message_id)
        if message is None:
            self._answer(pdu, S.ESME_RQUERYFAIL)
            return
        final = ""
        if message.final_at is not None:
            final = time.strftime("%y%m%d%H%M%S", time.gmtime(message.final_at)) + "000+"
        self._answer(
            pdu,
            message_id=message.id,
            final_date=final,
            message_state=MESSAGE_STATE[message.status],
            error_code=0 if message.error is None else 1,
        )

    def _cancel_sm(self, pdu: Pdu, submits: Submits) -> None:
        self.server.spawn(self._run_cancel(pdu))

    async def _run_cancel(self, pdu: Pdu) -> None:
        """Answered once the ``deleted`` state is committed."""
        assert self.tenant is not None
        rejected = await self.server.pipeline.cancel(self.tenant, str(pdu.params["message_id"]))
        if rejected is None:
            self._answer(pdu)
        elif rejected.code is RejectCode.NOT_PENDING:
            self._answer(pdu, S.ESME_RCANCELFAIL)
        else:
            self._answer(pdu, self.server.reject_status[rejected.code])

    def _replace_sm(self, pdu: Pdu, submits: Submits) -> None:
        try:
            body = decode_text(0, pdu.params["short_message"])  # type: ignore[arg-type]
        except TextError:
            self._answer(pdu, S.ESME_RREPLACEFAIL)
            return
        self.server.spawn(self._run_replace(pdu, body))

    async def _run_replace(self, pdu: Pdu, body: str) -> None:
        """Answered once the new body is committed."""
        assert self.tenant is not None
        message_id = str(pdu.params["message_id"])
        rejected = await self.server.pipeline.replace(self.tenant, message_id, body)
        self._answer(
            pdu, S.ESME_ROK if rejected is None else self.server.reject_status[rejected.code]
        )

    # --- deliver_sm window (kept by the server's NoticeQueue) -------------------------------

    def can_deliver(self) -> bool:
        return session.can_send(self.state, C.deliver_sm) and not (
            self.transport is None or self.transport.is_closing()
        )

    def deliver(self, notice: Notice) -> int:
        sequence = self._next_sequence()
        self._send(_deliver_sm(notice, sequence))
        return sequence

    def _deliver_sm_resp(self, pdu: Pdu, submits: Submits) -> None:
        self.server.notices.answered(self, pdu.sequence_number, pdu.command_status)

    def _generic_nack(self, pdu: Pdu, submits: Submits) -> None:
        self.server.notices.nacked(self, pdu.sequence_number)


SmppConnection.HANDLERS = {
    C.bind_transmitter: SmppConnection._bind,
    C.bind_receiver: SmppConnection._bind,
    C.bind_transceiver: SmppConnection._bind,
    C.submit_sm: SmppConnection._submit_sm,
    C.data_sm: SmppConnection._data_sm,
    C.submit_multi: SmppConnection._submit_multi,
    C.query_sm: SmppConnection._query_sm,
    C.cancel_sm: SmppConnection._cancel_sm,
    C.replace_sm: SmppConnection._replace_sm,
    C.enquire_link: SmppConnection._enquire_link,
    C.enquire_link_resp: SmppConnection._ignore,
    C.deliver_sm_resp: SmppConnection._deliver_sm_resp,
    C.data_sm_resp: SmppConnection._deliver_sm_resp,
    C.generic_nack: SmppConnection._generic_nack,
    C.unbind: SmppConnection._unbind,
    C.unbind_resp: SmppConnection._unbind_resp,
}


def _unsuccess(dest: SmeAddress, status: int) -> UnsuccessSme:
    return UnsuccessSme(dest.dest_addr_ton, dest.dest_addr_npi, dest.destination_addr, status)


def _address(address: str, ton: object) -> str:
    """An SMPP address as the pipeline reads it: international numbers get their '+'."""
    if ton == TON_INTERNATIONAL and address and not address.startswith("+"):
        return "+" + address
    return address


def _wire_address(address: str) -> tuple[int, int, str]:
    """``(ton, npi, addr)`` for an address we send: E.164 without '+', or alphanumeric."""
    if address.startswith("+"):
        return TON_INTERNATIONAL, NPI_ISDN, address[1:]
    return TON_ALPHANUMERIC, 0, address


def _deliver_sm(notice: Notice, sequence: int) -> Pdu:
    source_ton, source_npi, source = _wire_address(notice.handset)
    dest_ton, dest_npi, dest = _wire_address(notice.address)
    tlvs: dict[int, object] = {}
    if notice.kind is NoticeKind.RECEIPT:
        assert notice.status is not None and notice.submitted_at is not None
        esm_class, data_coding = ESM_DELIVERY_RECEIPT, 0
        short_message = receipt_text(
            ReceiptFacts(notice.message_id, notice.status, notice.submitted_at, notice.created_at)
        )
        tlvs[Tag.receipted_message_id] = notice.message_id
        tlvs[Tag.message_state] = MESSAGE_STATE[notice.status]
    else:
        esm_class = 0
        data_coding, short_message = encode_text(notice.body)
        if notice.keyword:
            tlvs[TAG_KEYWORD] = notice.keyword.encode("ascii")
        if len(short_message) > 254:
            tlvs[Tag.message_payload] = short_message
            short_message = b""
    return Pdu.make(
        C.deliver_sm,
        sequence,
        tlvs=tlvs,
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        source_addr=source,
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        destination_addr=dest,
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=short_message,
    )
