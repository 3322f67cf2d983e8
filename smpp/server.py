"""The SMPP 3.4 server: ESMEs bind to us as they would to an operator's SMSC.

A thin asyncio layer around the sans-IO parts: bytes go through the `Framer`,
frames through `decode`, each PDU is checked by its `session.Session` and
dispatched through `SmppConnection.HANDLERS`; `smpp.translate` turns PDUs into
`SubmitRequest`s for the one submit pipeline and results back into PDUs. All
submit_sm PDUs that arrive in one read go to the pipeline together, so a windowed
client's burst shares one store commit and its responses go out in one write.

Receipts and mobile-originated messages ("notices") go to a bound receiver or
transceiver session of the tenant, at most ``deliver_window`` unacknowledged per
session. Each is in the store from the commit of what it reports until a receiver
acknowledges it (`smpp.notices.NoticeQueue`), until it expires.

Binds are checked one at a time per connection, each after its slot in the shared
`GuessThrottle`; a bind that passes claims one of its tenant's ``max_sessions`` slots
from the cluster's `Binds` (every instance's sessions count), and gives it back before
an unbind is answered, or when the connection goes. Answers wait for their commit
(submits, cancel_sm, replace_sm).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import itertools
import logging
import ssl
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from gateway.chaos import Chaos
from gateway.cluster.base import BindRecord, Binds, ClusterError
from gateway.config import Config, MessageIdFormat, TenantConfig
from gateway.domain import Message, Notice, NoticeKind, SubmitRequest
from gateway.logs import log_event
from gateway.metrics import Metrics
from gateway.pipeline import SubmitPipeline
from gateway.throttle import GuessThrottle
from smpp import translate
from smpp.bodies import Bind, CancelSm, DataSm, QuerySm, ReplaceSm, SubmitMulti, SubmitSm
from smpp.framer import FrameError, Framer
from smpp.notices import NoticeQueue
from smpp.pdu import (
    CommandId,
    CommandStatus,
    DistributionList,
    Pdu,
    PduError,
    SmeAddress,
    UnsuccessSme,
    decode,
    encode,
)
from smpp.session import Session, State, Tick, error_response, response_for

log = logging.getLogger(__name__)

# submit_sm and data_sm PDUs read in one go, with their requests for the pipeline.
Submits = list[tuple[Pdu, SubmitRequest]]

S = CommandStatus
C = CommandId

_KNOWN_COMMANDS = frozenset(C)
_KNOWN_STATUSES = frozenset(S)
_BIND_RESPONSES = frozenset(
    {C.bind_transmitter_resp, C.bind_receiver_resp, C.bind_transceiver_resp}
)

# Most submits one connection may have in the pipeline before we stop reading from it.
MAX_PENDING_SUBMITS = 2000


@dataclass(frozen=True, slots=True)
class SessionView:
    """A bound session as the operator sees it: who, how, since when, how full (no peer)."""

    session: int
    tenant: str
    system_id: str
    bind_type: str
    bound_at: float
    tls: bool
    # deliver_sm awaiting their response, of the window; None for a transmitter
    deliver_outstanding: int | None
    deliver_window: int
    # submits of this session still in the pipeline, of the most it may have
    submits_pending: int
    max_submits_pending: int


class SmppServer:
    """The listener, bind authentication and the registry of bound sessions and notices."""

    def __init__(
        self,
        config: Config,
        pipeline: SubmitPipeline,
        notices: NoticeQueue,
        metrics: Metrics,
        clock: Callable[[], float],
        chaos: Chaos,
        binds: Binds,
    ) -> None:
        """``binds``: the tenants' session slots, over every instance sharing the store."""
        self.config = config
        self.binds = binds
        self.pipeline = pipeline
        self.chaos = chaos
        self.metrics = metrics
        self.clock = clock
        self.notices = notices
        metrics.smpp_window_size.set(config.smpp.deliver_window)
        metrics.notices_pending.set_function(lambda: self.notices.pending)
        for tenant in config.tenants:
            if tenant.smpp is not None:
                metrics.smpp_window.labels(tenant.id).set_function(
                    functools.partial(self.notices.outstanding, tenant.id)
                )
        self.translator = translate.Translator(config.smpp)
        self.tenants_by_system_id = {t.smpp.system_id: t for t in config.tenants if t.smpp}
        self.sessions: dict[str, set[SmppConnection]] = {}
        self.connections: set[SmppConnection] = set()
        # Checks that would wait more than a few capped delays are refused unchecked.
        self.throttle = GuessThrottle(
            config.smpp.failed_bind_delay,
            config.smpp.max_bind_delay,
            max_wait=4 * config.smpp.max_bind_delay,
        )
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self.port = 0
        self.tls_port = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pdu_labels: dict[tuple[str, int, int], tuple[str, str, str]] = {}
        # Connections are numbered for log lines, which never name a peer's address.
        self.session_ids = itertools.count(1)

    async def start(self, tls: ssl.SSLContext | None = None) -> int:
        """Listen on ``[smpp] host/port``, and with ``tls`` on ``[smpp.tls] port`` too.

        Returns the plain port; ``tls_port`` is the other one.
        """
        loop = asyncio.get_running_loop()
        await self.notices.open()
        smpp = self.config.smpp
        self._server = await loop.create_server(lambda: SmppConnection(self), smpp.host, smpp.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log_event(log, "smpp.listening", host=smpp.host, port=self.port)
        if tls is not None and smpp.tls is not None:
            self._tls_server = await loop.create_server(
                lambda: TlsHandshake(self, tls), smpp.host, smpp.tls.port
            )
            self.tls_port = int(self._tls_server.sockets[0].getsockname()[1])
            log_event(log, "smpp.listening", host=smpp.host, port=self.tls_port, tls=True)
        self._schedule_sweep()
        return self.port

    async def close(self) -> None:
        """Stop listening and close every session; notices stay in the store."""
        if self._tls_server is not None:
            self._tls_server.close()
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
        if self._tls_server is not None:
            await self._tls_server.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()

    def spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        """Run a session's background work; close() cancels whatever is left."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def count_pdu(self, direction: str, command_id: int, status: int, amount: int = 1) -> None:
        """``amount`` PDUs of one kind (a burst's responses or receipts count at once)."""
        labels = self._pdu_labels.get((direction, command_id, status))
        if labels is None:  # four a message: the check for unknown values only on a miss
            labels = self._pdu_labels_of(direction, command_id, status)
        self.metrics.smpp_pdus.inc(*labels, amount=amount)

    def _pdu_labels_of(self, direction: str, command_id: int, status: int) -> tuple[str, str, str]:
        # Unknown ids and statuses share one key, so a peer cannot grow this cache.
        command_id = command_id if command_id in _KNOWN_COMMANDS else -1
        status = status if status in _KNOWN_STATUSES else -1
        key = (direction, command_id, status)
        labels = self._pdu_labels.get(key)
        if labels is None:
            command = C(command_id).name if command_id != -1 else "unknown"
            status_name = S(status).name if status != -1 else "vendor"
            labels = self._pdu_labels[key] = (direction, command, status_name)
        return labels

    # --- binds ---------------------------------------------------------------------------

    def _session_room(self, tenant: TenantConfig) -> bool:
        """Whether this instance alone leaves the tenant a slot (`claim` counts them all)."""
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
            return tenant
        self.throttle.failed(peer, identity)
        self.metrics.auth_failures.labels("smpp", "failed").inc()
        return status

    async def claim(
        self, connection: SmppConnection, tenant: TenantConfig, command: CommandId
    ) -> CommandStatus | None:
        """One of the tenant's ``max_sessions`` slots for this connection, or the refusal.

        Full is ESME_RBINDFAIL, as a failed bind; a cluster that cannot say is
        ESME_RSYSERR (the ESME may retry).
        """
        assert tenant.smpp is not None
        bind_type = command.name.removeprefix("bind_")
        bind = BindRecord(
            tenant.id,
            tenant.smpp.system_id,
            bind_type,
            command is not C.bind_transmitter,
            connection.session_id,
        )
        try:
            if not await self.binds.claim(bind, tenant.smpp.max_sessions):
                return S.ESME_RBINDFAIL
        except ClusterError:
            log_event(log, "smpp.claim_failed", logging.WARNING, tenant=tenant.id)
            return S.ESME_RSYSERR
        connection.claimed = bind
        return None

    async def release(self, connection: SmppConnection) -> None:
        """Give the connection's slot back, once, however often this is called."""
        bind, connection.claimed = connection.claimed, None
        if bind is not None:
            await self.binds.release(bind)

    def bound(self, connection: SmppConnection) -> None:
        assert connection.tenant is not None
        self.sessions.setdefault(connection.tenant.id, set()).add(connection)
        bind_type = connection.session.bind_type
        self.metrics.smpp_sessions.labels(connection.tenant.id, bind_type).inc()
        if connection.session.receives:
            self.notices.attach(connection, connection.tenant.id)

    def unbound(self, connection: SmppConnection) -> None:
        tenant = connection.tenant
        if tenant is None:
            return
        self.sessions.get(tenant.id, set()).discard(connection)
        self.metrics.smpp_sessions.labels(tenant.id, connection.session.bind_type).dec()
        self.notices.detach(connection)
        self.spawn(self.release(connection))

    # --- notices: receipts and mobile-originated messages --------------------------------

    def session_views(self) -> list[SessionView]:
        """Every bound session, oldest bind first."""
        views = [
            SessionView(
                session=connection.session_id,
                tenant=tenant,
                system_id=connection.tenant.smpp.system_id,
                bind_type=connection.session.bind_type,
                bound_at=connection.bound_at,
                tls=connection.tls,
                deliver_outstanding=self.notices.window_of(connection),
                deliver_window=self.notices.window_size,
                submits_pending=connection.pending_submits,
                max_submits_pending=MAX_PENDING_SUBMITS,
            )
            for tenant, connections in self.sessions.items()
            for connection in connections
            if connection.tenant is not None
            and connection.tenant.smpp is not None
            and connection.session.bind_type is not None
        ]
        return sorted(views, key=lambda view: (view.bound_at, view.session))

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


class TlsHandshake(asyncio.Protocol):
    """A connection to the TLS port until its handshake is done; then an `SmppConnection`.

    The handshake runs here rather than in the listener so that one that fails (a
    plain-TCP client, a client refusing our certificate, none within bind_timeout)
    is closed, logged and counted instead of vanishing inside asyncio.
    """

    def __init__(self, server: SmppServer, context: ssl.SSLContext) -> None:
        self.server = server
        self.context = context

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # the ClientHello waits in the socket for start_tls
        self.server.spawn(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        connection = SmppConnection(self.server)
        connection.tls = True
        try:
            secure = await asyncio.get_running_loop().start_tls(
                transport,
                connection,
                self.context,
                server_side=True,
                ssl_handshake_timeout=self.server.config.smpp.bind_timeout,
            )
        except (OSError, TimeoutError, ConnectionError) as exc:  # ssl.SSLError is an OSError
            transport.close()
            self.server.metrics.smpp_tls_failures.inc()
            log_event(log, "smpp.tls_failed", logging.INFO, error=type(exc).__name__)
            return
        if secure is None:  # the peer went away as the handshake ended
            transport.close()
            return
        connection.connection_made(secure)


class SmppConnection(asyncio.Protocol):
    """One ESME connection: the transport, its sans-IO `Session`, and the handlers.

    Frames are handled in order until something must finish first: a bind (answered
    after its throttled check) or a full output buffer (the transport asked us to
    pause writing). Then the frames already read stay in the framer and reading
    pauses, so a peer can make us hold neither guesses nor answers it does not read.
    """

    HANDLERS: ClassVar[dict[CommandId, Callable[[SmppConnection, Pdu, Submits], None]]]

    def __init__(self, server: SmppServer) -> None:
        self.server = server
        config = server.config.smpp
        self.framer = Framer(config.max_command_length)
        self.loop = asyncio.get_running_loop()
        self.session = Session(
            self.loop.time(),
            bind_timeout=config.bind_timeout,
            enquire_link_interval=config.enquire_link_interval,
            response_timeout=config.response_timeout,
        )
        self.tenant: TenantConfig | None = None
        self.claimed: BindRecord | None = None  # the tenant's session slot this one holds
        self.session_id = next(server.session_ids)
        # The body of failed responses: [smpp] error_body until a bind names a tenant.
        self.error_body = config.error_body
        self.ids = MessageIdFormat.HEX  # the bound tenant's smpp.message_id_format
        self.pdus_bound = 0  # PDUs received since the bind, for chaos session drops
        self.bound_at = 0.0  # the server clock's time of the bind
        self.tls = False
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._outgoing: list[bytes] = []
        # PDUs read and not yet counted, by (command_id, command_status): see _handle_frames.
        self._received: dict[tuple[int, int], int] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.pending_submits = 0
        # Reasons to stop reading: each is cleared by the event that ends it.
        self.binding = False  # a bind (or unbind) waits for its check and answer
        self.write_paused = False  # the transport's output buffer is over its high-water mark
        self.submits_paused = False  # too many submits of this connection in the pipeline

    @property
    def state(self) -> State:
        """Where the session is (the session moves it, after what is sent)."""
        return self.session.state

    # --- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "?"
        self._schedule_tick()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        self.session.lost()
        if self.session.bind_type is not None:
            self.server.unbound(self)

    def data_received(self, data: bytes) -> None:
        self.session.seen(self.loop.time())  # the peer is alive: once a read, not a frame
        self.framer.receive_data(data)
        self._handle_frames()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._handle_frames()

    # --- reading ------------------------------------------------------------------------

    def _handle_frames(self) -> None:
        """Handle the frames read so far, until one must be answered before the rest."""
        submits: Submits = []
        session, closed = self.session, State.CLOSED  # an enum member read costs 0.1 us
        while session.state is not closed and not (self.binding or self.write_paused):
            try:
                frame = self.framer.next_frame()
            except FrameError as error:
                self._send(error_response(error), status=error.status)
                self.close()
                break
            if frame is None:
                break
            self._handle(frame, submits)
        # Counted once a read for each kind: 1.2 -> 0.24 us a PDU against one count_pdu a
        # PDU (timeit, 30 of a kind).
        received, self._received = self._received, {}
        for (command_id, status), count in received.items():
            self.server.count_pdu("in", command_id, status, count)
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
        if self.tenant is not None:
            self.pdus_bound += 1
            if self.server.chaos.drops_session(self.tenant.id, self.pdus_bound):
                log_event(log, "smpp.chaos_drop", tenant=self.tenant.id)
                self.session.lost()  # nothing more is handled: the frames after it are gone
                self.close()
                return
        try:
            pdu = decode(frame)
        except PduError as error:
            self.server.count_pdu("in", error.command_id or 0, error.status)
            self._send(error_response(error))
            return
        key = (pdu.command_id, pdu.command_status)
        self._received[key] = self._received.get(key, 0) + 1
        status = self.session.check(pdu.command_id)
        if status:  # not ESME_ROK (0)
            if not pdu.command_id.is_response:
                self._answer(pdu, status)
            return
        self.HANDLERS[pdu.command_id](self, pdu, submits)

    # --- writing ------------------------------------------------------------------------

    def _send(self, pdu: Pdu, status: int | None = None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        pdu = translate.with_error_body(pdu, self.error_body)
        if pdu.command_status:
            self._log_refused(pdu)
        self._send_bytes(pdu.command_id, pdu.command_status, encode(pdu))
        if pdu.command_id == C.unbind_resp:
            # However the unbind was answered (even with an error for its trailing
            # octets), the session is over: an UNBOUND one must not hold its slot.
            self.close()

    def _send_bytes(self, command_id: CommandId, status: int, data: bytes) -> None:
        """Queue an encoded PDU, counted and told to the session as `_send` does."""
        self._write(data)
        self.server.count_pdu("out", command_id, status)
        self.session.sent(command_id, status)

    def _log_refused(self, pdu: Pdu) -> None:
        """Why a PDU was refused, by command, status and session: no address, no body.

        Binds at INFO (an operator's first question), everything else at DEBUG.
        """
        bind = pdu.command_id in _BIND_RESPONSES
        status = pdu.command_status
        log_event(
            log,
            "smpp.bind_refused" if bind else "smpp.refused",
            logging.INFO if bind else logging.DEBUG,
            command=pdu.command_id.name,
            status=S(status).name if status in _KNOWN_STATUSES else f"{status:#010x}",
            session=self.session_id,
            tenant=self.tenant.id if self.tenant else None,
        )

    def _answer(self, request: Pdu, status: int = S.ESME_ROK, **fields: object) -> None:
        command = response_for(request.command_id)
        self._send(Pdu.make(command, request.sequence_number, status, None, **fields))

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

    # --- the timer: bind timeout, enquire_link probes (decided by the session) ----------

    def _schedule_tick(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.session.next_tick(self.loop.time()), self._tick)

    def _tick(self) -> None:
        decision = self.session.tick(self.loop.time())
        if decision is Tick.BIND_TIMEOUT:
            log_event(log, "smpp.bind_timeout")
            self.close()
        elif decision is Tick.PEER_SILENT:
            log_event(log, "smpp.peer_silent", tenant=self.tenant.id if self.tenant else None)
            self.close()
        else:
            if decision is Tick.PROBE:
                self._send(Pdu.make(C.enquire_link, self.session.next_sequence()))
            self._schedule_tick()

    # --- binds and session life ---------------------------------------------------------

    def _bind(self, pdu: Pdu, submits: Submits) -> None:
        """One bind at a time: the PDUs after it wait until it is answered."""
        self.binding = True
        self.server.spawn(self._run_bind(pdu))

    async def _run_bind(self, pdu: Pdu) -> None:
        try:
            body = pdu.body(Bind)
            named = self.server.tenants_by_system_id.get(body["system_id"])
            self.error_body = translate.error_body_of(self.server.config.smpp, named)
            result = await self.server.authenticate(self.peer, body["system_id"], body["password"])
            if isinstance(result, TenantConfig):
                refused = await self.server.claim(self, result, pdu.command_id)
                if refused is not None:
                    result = refused
            if not isinstance(result, TenantConfig):
                self._answer(pdu, result)
                return
            self._bound(pdu, result)
        finally:
            self.binding = False
            self._handle_frames()

    def _bound(self, pdu: Pdu, tenant: TenantConfig) -> None:
        self.tenant = tenant
        self.bound_at = self.server.clock()
        assert tenant.smpp is not None
        self.ids = tenant.smpp.message_id_format
        self._answer(pdu, S.ESME_ROK, system_id=translate.SYSTEM_ID)
        if self.session.bind_type is None:  # the peer left before the answer could go out
            self.server.spawn(self.server.release(self))
            return
        self._schedule_tick()  # from the bind timeout to enquire_link probes
        log_event(
            log,
            "smpp.bound",
            tenant=tenant.id,
            bind_type=self.session.bind_type,
            session=self.session_id,
        )
        self.server.bound(self)

    def _enquire_link(self, pdu: Pdu, submits: Submits) -> None:
        self._answer(pdu)

    def _ignore(self, pdu: Pdu, submits: Submits) -> None:
        """enquire_link_resp: any PDU already proved the peer alive."""

    def _unbind(self, pdu: Pdu, submits: Submits) -> None:
        """The slot is free on every instance before the answer says so (then close)."""
        self.binding = True  # nothing more is read; the answer closes the session
        self.server.spawn(self._run_unbind(pdu))

    async def _run_unbind(self, pdu: Pdu) -> None:
        try:
            await self.server.release(self)
        finally:
            self._answer(pdu)  # and close (see _send)

    def _unbind_resp(self, pdu: Pdu, submits: Submits) -> None:
        self.close()

    # --- submits ------------------------------------------------------------------------

    def _request(self, pdu: Pdu, destination: str, dest_ton: int) -> SubmitRequest | CommandStatus:
        """One message to submit (the pipeline holds the tenant's rate limit)."""
        assert self.tenant is not None
        translator, now = self.server.translator, self.server.clock()
        return translator.request(pdu, self.tenant, destination, dest_ton, now)

    def _submit_sm(self, pdu: Pdu, submits: Submits) -> None:
        body: SubmitSm | DataSm = (
            pdu.body(DataSm) if pdu.command_id is C.data_sm else pdu.body(SubmitSm)
        )
        request = self._request(pdu, body["destination_addr"], body["dest_addr_ton"])
        if isinstance(request, CommandStatus):
            self._answer(pdu, request)
        else:
            submits.append((pdu, request))

    _data_sm = _submit_sm

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
        submit_resp = self.server.translator.submit_resp
        count_pdu = self.server.count_pdu
        accepted: dict[CommandId, int] = {}  # counted once a burst (see _handle_frames)
        for (request, _), result in zip(submits, results, strict=True):
            if isinstance(result, Message):  # from a template (see translate.accepted_resp)
                chunks.append(translate.accepted_resp(request, result.id, self.ids))
                accepted[request.command_id] = accepted.get(request.command_id, 0) + 1
                continue
            pdu = submit_resp(request, result, self.ids)
            if pdu is not None:
                pdu = translate.with_error_body(pdu, self.error_body)
                if pdu.command_status:
                    self._log_refused(pdu)
                chunks.append(encode(pdu))
                count_pdu("out", pdu.command_id, pdu.command_status)
        for command, count in accepted.items():
            count_pdu("out", response_for(command), S.ESME_ROK, count)
        self._write(b"".join(chunks))

    def _submit_multi(self, pdu: Pdu, submits: Submits) -> None:
        accepted: list[tuple[SmeAddress, SubmitRequest]] = []
        refused: list[UnsuccessSme] = []
        for dest in pdu.body(SubmitMulti)["dest_address"]:
            if isinstance(dest, DistributionList):
                refused.append(UnsuccessSme(0, 0, dest.dl_name, S.ESME_RINVDLNAME))
                continue
            request = self._request(pdu, dest.destination_addr, dest.dest_addr_ton)
            if isinstance(request, CommandStatus):
                refused.append(translate.unsuccess(dest, request))
            else:
                accepted.append((dest, request))
        self.server.spawn(self._run_multi(pdu, accepted, refused))

    async def _run_multi(
        self,
        pdu: Pdu,
        accepted: list[tuple[SmeAddress, SubmitRequest]],
        refused: list[UnsuccessSme],
    ) -> None:
        """One submit_multi_resp, after every accepted message is committed."""
        pipeline = self.server.pipeline
        results = await pipeline.submit_many([r for _, r in accepted], one_submission=True)
        self._send(
            self.server.translator.multi_resp(
                pdu, [d for d, _ in accepted], results, refused, self.ids
            )
        )

    # --- operations on submitted messages -----------------------------------------------

    def _query_sm(self, pdu: Pdu, submits: Submits) -> None:
        self.server.spawn(self._run_query(pdu))

    async def _message_id(self, wire: str) -> str:
        """The id of the tenant's message a client's id names (else ``wire``: no message).

        Hex ids only need normalising; a decimal one is looked up among the ids of its
        millisecond, one boot of the gateway at a time (see `translate.DecimalId`).
        """
        assert self.tenant is not None
        read = translate.read_id(wire, self.ids)
        if isinstance(read, str):
            return read
        pipeline, tenant = self.server.pipeline, self.tenant.id
        found: list[str] = []
        before = f"{read.ms + 1:012x}"
        while newest := await pipeline.messages(
            tenant, since_id=read.floor, before_id=before, limit=1
        ):
            boot = newest[0].id[12:16]
            candidate = read.candidate(boot)
            if candidate is not None and await pipeline.message(tenant, candidate) is not None:
                found.append(candidate)
            before = read.floor + boot  # the next older boot in that millisecond
        return found[0] if len(found) == 1 else wire

    async def _run_query(self, pdu: Pdu) -> None:
        assert self.tenant is not None
        message_id = await self._message_id(pdu.body(QuerySm)["message_id"])
        message = await self.server.pipeline.message(self.tenant.id, message_id)
        if message is not None and message.submission == message.id:
            members = await self.server.pipeline.submission(self.tenant.id, message.id)
            message = translate.whole_submission(message.id, members)
        self._send(translate.query_sm_resp(pdu, message, self.ids))

    def _cancel_sm(self, pdu: Pdu, submits: Submits) -> None:
        self.server.spawn(self._run_cancel(pdu))

    async def _run_cancel(self, pdu: Pdu) -> None:
        """Answered once the ``deleted`` state is committed."""
        assert self.tenant is not None
        message_id = await self._message_id(pdu.body(CancelSm)["message_id"])
        rejected = await self.server.pipeline.cancel(self.tenant, message_id)
        self._answer(pdu, self.server.translator.cancel_status(rejected))

    def _replace_sm(self, pdu: Pdu, submits: Submits) -> None:
        body = translate.replace_body(pdu)
        times = translate.replace_times(pdu, self.server.clock())
        if isinstance(body, CommandStatus):
            self._answer(pdu, body)
        elif isinstance(times, CommandStatus):
            self._answer(pdu, times)
        else:
            self.server.spawn(self._run_replace(pdu, body, *times))

    async def _run_replace(
        self, pdu: Pdu, body: str, send_at: datetime | None, expires_at: datetime | None
    ) -> None:
        """Answered once the new body (and schedule, validity) is committed."""
        assert self.tenant is not None
        message_id = await self._message_id(pdu.body(ReplaceSm)["message_id"])
        rejected = await self.server.pipeline.replace(
            self.tenant, message_id, body, send_at=send_at, expires_at=expires_at
        )
        self._answer(pdu, self.server.translator.replace_status(rejected))

    # --- the deliver_sm window (kept by the server's NoticeQueue) -----------------------

    def can_deliver(self) -> bool:
        return self.session.can_send(C.deliver_sm) and not (
            self.transport is None or self.transport.is_closing()
        )

    def deliver_many(self, notices: Sequence[Notice]) -> list[int]:
        """Send notices as deliver_sm in one write; their sequence numbers, in order.

        One call per window fill (a commit's receipts), so the write, the counter and the
        session are visited once for all of them; a receipt comes from a template (see
        translate.receipt_bytes), anything else from the generic encoder.
        """
        session, ids = self.session, self.ids
        sequences: list[int] = []
        chunks: list[bytes] = []
        for notice in notices:
            sequence = session.next_sequence()
            sequences.append(sequence)
            if notice.kind is NoticeKind.RECEIPT:
                chunks.append(translate.receipt_bytes(notice, sequence, ids))
            else:
                chunks.append(encode(translate.deliver_sm(notice, sequence, ids)))
        self._write(b"".join(chunks))
        self.server.count_pdu("out", C.deliver_sm, S.ESME_ROK, len(chunks))
        session.sent(C.deliver_sm, S.ESME_ROK)
        return sequences

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
