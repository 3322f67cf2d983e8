"""SMPP 3.4 session state machine, seen from the SMSC (sans-IO: tables and pure functions).

Theory of operation (spec sections 2.2-2.3):

* A TCP connection starts OPEN. The ESME's first request must be a bind_transmitter,
  bind_receiver or bind_transceiver; once the SMSC has sent the matching *_resp with
  ESME_ROK the session is BOUND_TX, BOUND_RX or BOUND_TRX (``BIND_STATE``). A bind in
  a bound state is answered ESME_RALYBND.
* The bound state decides direction: the ESME may submit (submit_sm, submit_multi,
  data_sm, query_sm, cancel_sm, replace_sm) only when bound TX or TRX, and the SMSC
  may deliver (deliver_sm, data_sm, alert_notification) only when bound RX or TRX,
  so deliver_sm_resp / data_sm_resp from the ESME are only expected then too.
* enquire_link and generic_nack are fine in OPEN and every bound state.
* Either side may send unbind while bound; after it (sent or received) the session
  is UNBOUND: no new requests, only the unbind_resp and responses to PDUs still in
  flight, then the transport is closed and the session is CLOSED.

The tables and functions below are the rules; `Session` is one connection's protocol
state under them, the way h11 keeps an HTTP connection's state in its ``Connection``:
the asyncio layer reads bytes, writes bytes and runs one timer, and asks the session
everything else. It never reads a clock or does I/O; times are passed in.

* ``check(command_id)`` for every PDU the ESME sends (answer ``response_for`` with the
  status if it is not ESME_ROK); ``sent(command_id, status)`` after every PDU we send,
  which moves ``state`` (and records ``bind_type`` when a bind succeeds).
* ``next_sequence()`` numbers the requests we originate (deliver_sm, enquire_link):
  1..0x7FFFFFFF, then 1 again (section 3.2: the top bit stays clear).
* ``seen(now)`` for every frame received: any PDU proves the peer alive.
* ``tick(now)`` when the timer fires, every ``next_tick(now)`` seconds: what to do —
  wait, probe an idle peer with enquire_link, or close a connection that did not bind
  within ``bind_timeout`` or did not answer a probe within ``response_timeout``.
* `Window` keeps what our requests carry until their responses come back, by sequence
  number, at most ``deliver_window`` of them (the notice queue keeps one per receiver).
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, TypeVar

from smpp.pdu import CommandId, CommandStatus, Pdu, PduError


class State(Enum):
    """Where an SMPP session is in its lifetime (spec section 2.2)."""

    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"
    CLOSED = "closed"

    # Members are singletons compared by identity: hash them so too, in C. Enum's own
    # __hash__ is Python (hash of the name), and every PDU looks its state up in a set.
    __hash__ = object.__hash__


_C = CommandId
_BOUND = frozenset({State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX})
_TX = frozenset({State.BOUND_TX, State.BOUND_TRX})
_RX = frozenset({State.BOUND_RX, State.BOUND_TRX})
_LIVE = _BOUND | {State.OPEN}
_LIVE_OR_UNBINDING = _LIVE | {State.UNBOUND}
_RX_OR_UNBINDING = _RX | {State.UNBOUND}

BIND_STATE: dict[CommandId, State] = {
    _C.bind_transmitter: State.BOUND_TX,
    _C.bind_receiver: State.BOUND_RX,
    _C.bind_transceiver: State.BOUND_TRX,
}

# ALLOWED, RESPONSE_OF and _BOUND_BY_RESPONSE are keyed by int: CommandId members hash
# like their ints, so a raw command_id looks up without a cast (a call, twice a PDU).
#
# PDUs an ESME may send to the SMSC, by state. A command_id absent from this table
# (outbind, alert_notification, any response only an SMSC sends) is never valid from
# an ESME and is answered ESME_RINVCMDID.
ALLOWED: dict[int, frozenset[State]] = {
    _C.bind_transmitter: frozenset({State.OPEN}),
    _C.bind_receiver: frozenset({State.OPEN}),
    _C.bind_transceiver: frozenset({State.OPEN}),
    _C.submit_sm: _TX,
    _C.submit_multi: _TX,
    _C.data_sm: _TX,
    _C.query_sm: _TX,
    _C.cancel_sm: _TX,
    _C.replace_sm: _TX,
    # Responses to what the SMSC delivered; they may trail an unbind.
    _C.deliver_sm_resp: _RX_OR_UNBINDING,
    _C.data_sm_resp: _RX_OR_UNBINDING,
    _C.enquire_link: _LIVE,
    _C.enquire_link_resp: _LIVE_OR_UNBINDING,
    _C.generic_nack: _LIVE_OR_UNBINDING,
    _C.unbind: _BOUND,
    _C.unbind_resp: _BOUND | {State.UNBOUND},
}

# PDUs the SMSC may send to an ESME, by state. Responses answer whatever the ESME
# sent (possibly with an error status), so they are allowed whenever the session is
# up; requests follow the bound state.
MAY_SEND: dict[CommandId, frozenset[State]] = {
    _C.deliver_sm: _RX,
    _C.data_sm: _RX,
    _C.alert_notification: _RX,
    _C.enquire_link: _LIVE,
    _C.unbind: _BOUND,
    _C.outbind: frozenset({State.OPEN}),
    **{cid: _LIVE_OR_UNBINDING for cid in CommandId if cid.is_response},
}

RESPONSE_OF: dict[int, CommandId] = {
    _C.bind_receiver: _C.bind_receiver_resp,
    _C.bind_transmitter: _C.bind_transmitter_resp,
    _C.bind_transceiver: _C.bind_transceiver_resp,
    _C.query_sm: _C.query_sm_resp,
    _C.submit_sm: _C.submit_sm_resp,
    _C.deliver_sm: _C.deliver_sm_resp,
    _C.unbind: _C.unbind_resp,
    _C.replace_sm: _C.replace_sm_resp,
    _C.cancel_sm: _C.cancel_sm_resp,
    _C.enquire_link: _C.enquire_link_resp,
    _C.submit_multi: _C.submit_multi_resp,
    _C.data_sm: _C.data_sm_resp,
}


_BOUND_BY_RESPONSE: dict[int, State] = {
    RESPONSE_OF[request]: bound for request, bound in BIND_STATE.items()
}


# Enum members read once: a read through the class costs 0.1 us, a global 0.01.
_OK = CommandStatus.ESME_ROK
_GENERIC_NACK = CommandId.generic_nack


def check(state: State, command_id: int) -> CommandStatus:
    """Whether the ESME may send this PDU now; the status to answer with if not."""
    allowed = ALLOWED.get(command_id)
    if allowed is None:
        return CommandStatus.ESME_RINVCMDID
    if state in allowed:
        return _OK
    if command_id in BIND_STATE and state in _BOUND:
        return CommandStatus.ESME_RALYBND
    return CommandStatus.ESME_RINVBNDSTS


def can_send(state: State, command_id: CommandId) -> bool:
    """Whether the SMSC may send this PDU to the ESME in this state."""
    return state in MAY_SEND.get(command_id, ())


def response_for(command_id: int) -> CommandId:
    """The response to a request; generic_nack for anything that has no response of its own."""
    return RESPONSE_OF.get(command_id, _GENERIC_NACK)


def transition(state: State, command_id: int, status: int = CommandStatus.ESME_ROK) -> State:
    """The state after a PDU was sent or received.

    OPEN becomes BOUND_* once a bind_*_resp with ESME_ROK has been sent; a bound
    session becomes UNBOUND on unbind or unbind_resp in either direction. Anything
    else leaves the state alone; recording CLOSED when the transport goes is the
    server's job.
    """
    bound = _BOUND_BY_RESPONSE.get(command_id)
    if bound is not None and state is State.OPEN and status == CommandStatus.ESME_ROK:
        return bound
    if command_id in (CommandId.unbind, CommandId.unbind_resp) and state in _BOUND:
        return State.UNBOUND
    return state


def error_response(error: PduError) -> Pdu:
    """The PDU that answers an undecodable one.

    Per spec section 4.3, a bad command_length or unknown command_id gets generic_nack;
    other decode errors of a request get that request's own response with the error
    status and no body.
    """
    sequence_number = error.sequence_number or 0
    command_id = error.command_id
    if (
        command_id is not None
        and command_id in RESPONSE_OF
        and error.status not in (CommandStatus.ESME_RINVCMDLEN, CommandStatus.ESME_RINVCMDID)
    ):
        return Pdu.make(response_for(command_id), sequence_number, status=error.status)
    return Pdu.make(CommandId.generic_nack, sequence_number, status=error.status)


# Sequence numbers run 1..0x7FFFFFFF (section 3.2).
MAX_SEQUENCE = 0x7FFFFFFF

BIND_TYPE: dict[State, str] = {
    State.BOUND_TX: "transmitter",
    State.BOUND_RX: "receiver",
    State.BOUND_TRX: "transceiver",
}


class Tick(Enum):
    """What the timer should do now, as `Session.tick` decides."""

    WAIT = "wait"
    PROBE = "probe"  # send enquire_link
    BIND_TIMEOUT = "bind_timeout"  # close: no bind in time
    PEER_SILENT = "peer_silent"  # close: the probe went unanswered


class Session:
    """One SMPP session's protocol state, seen from the SMSC (see the module docstring)."""

    __slots__ = (
        "bind_timeout",
        "bind_type",
        "enquire_link_interval",
        "last_seen",
        "opened_at",
        "probe_sent",
        "response_timeout",
        "sequence",
        "state",
    )

    def __init__(
        self,
        now: float,
        *,
        bind_timeout: float,
        enquire_link_interval: float,
        response_timeout: float,
    ) -> None:
        self.state = State.OPEN
        # Set by a successful bind and kept after an unbind, so the end of the
        # connection still finds the session to deregister.
        self.bind_type: str | None = None
        self.sequence = 0
        self.opened_at = now
        self.last_seen = now
        self.probe_sent: float | None = None
        self.bind_timeout = bind_timeout
        self.enquire_link_interval = enquire_link_interval
        self.response_timeout = response_timeout

    @property
    def receives(self) -> bool:
        """Whether the session is bound to receive deliver_sm (receiver or transceiver)."""
        return self.state in _RX

    def check(self, command_id: int) -> CommandStatus:
        """Whether the ESME may send this PDU now; the status to answer with if not."""
        return check(self.state, command_id)

    def can_send(self, command_id: CommandId) -> bool:
        """Whether we may send this PDU to the ESME now."""
        return can_send(self.state, command_id)

    def sent(self, command_id: int, status: int) -> None:
        """We sent this PDU: the state follows."""
        state = self.state
        self.state = transition(state, command_id, status)
        if state is State.OPEN and self.state is not state:
            self.bind_type = BIND_TYPE[self.state]

    def lost(self) -> None:
        """The transport is gone."""
        self.state = State.CLOSED

    def next_sequence(self) -> int:
        """The sequence number for the next request we originate."""
        self.sequence = self.sequence % MAX_SEQUENCE + 1
        return self.sequence

    def seen(self, now: float) -> None:
        """A frame arrived: the peer is alive, any probe is answered."""
        self.last_seen = now
        self.probe_sent = None

    def next_tick(self, now: float) -> float:
        """Seconds until the timer should call ``tick`` again."""
        if self.state is State.OPEN:
            return max(0.0, self.opened_at + self.bind_timeout - now)
        return min(self.enquire_link_interval, self.response_timeout)

    def tick(self, now: float) -> Tick:
        """What to do at ``now``; a PROBE is recorded as sent."""
        if self.state is State.OPEN:
            return Tick.BIND_TIMEOUT if now - self.opened_at >= self.bind_timeout else Tick.WAIT
        if self.probe_sent is not None:
            return Tick.PEER_SILENT if now - self.probe_sent >= self.response_timeout else Tick.WAIT
        if now - self.last_seen >= self.enquire_link_interval:
            self.probe_sent = now
            return Tick.PROBE
        return Tick.WAIT


T = TypeVar("T")


class Window(Generic[T]):
    """Requests we sent and await responses for: what each carries, by sequence number.

    At most ``size`` are outstanding; ``room`` says how many more may go now.
    """

    __slots__ = ("outstanding", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.outstanding: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self.outstanding)

    @property
    def room(self) -> int:
        return self.size - len(self.outstanding)

    def sent(self, sequence: int, item: T) -> None:
        assert len(self.outstanding) < self.size, "the window is full"
        self.outstanding[sequence] = item

    def release(self, sequence: int) -> T | None:
        """The response to ``sequence`` came: what it carried, or None if it was not ours."""
        return self.outstanding.pop(sequence, None)

    def drain(self) -> list[T]:
        """Everything outstanding, oldest first, and the window empty."""
        items = list(self.outstanding.values())
        self.outstanding.clear()
        return items
