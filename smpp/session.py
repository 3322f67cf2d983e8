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

The server owns the current ``State``. For every request the ESME sends it asks
``check`` and, if that is not ESME_ROK, answers ``response_for(command_id)`` with that
status; before sending a request of its own it asks ``can_send``; after each PDU it
sets ``state = transition(state, pdu.command_id, pdu.command_status)``.
"""

from __future__ import annotations

from enum import Enum
from typing import cast

from smpp.pdu import CommandId, CommandStatus, Pdu, PduError


class State(Enum):
    """Where an SMPP session is in its lifetime (spec section 2.2)."""

    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"
    CLOSED = "closed"


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

# PDUs an ESME may send to the SMSC, by state. A command_id absent from this table
# (outbind, alert_notification, any response only an SMSC sends) is never valid from
# an ESME and is answered ESME_RINVCMDID.
ALLOWED: dict[CommandId, frozenset[State]] = {
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

RESPONSE_OF: dict[CommandId, CommandId] = {
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


_BOUND_BY_RESPONSE: dict[CommandId, State] = {
    RESPONSE_OF[request]: bound for request, bound in BIND_STATE.items()
}


def _key(command_id: int) -> CommandId:
    """Tables are keyed by CommandId, whose members hash like their ints: any int can look up."""
    return cast(CommandId, command_id)


def check(state: State, command_id: int) -> CommandStatus:
    """Whether the ESME may send this PDU now; the status to answer with if not."""
    allowed = ALLOWED.get(_key(command_id))
    if allowed is None:
        return CommandStatus.ESME_RINVCMDID
    if state in allowed:
        return CommandStatus.ESME_ROK
    if command_id in BIND_STATE and state in _BOUND:
        return CommandStatus.ESME_RALYBND
    return CommandStatus.ESME_RINVBNDSTS


def can_send(state: State, command_id: CommandId) -> bool:
    """Whether the SMSC may send this PDU to the ESME in this state."""
    return state in MAY_SEND.get(command_id, ())


def response_for(command_id: int) -> CommandId:
    """The response to a request; generic_nack for anything that has no response of its own."""
    return RESPONSE_OF.get(_key(command_id), CommandId.generic_nack)


def transition(state: State, command_id: int, status: int = CommandStatus.ESME_ROK) -> State:
    """The state after a PDU was sent or received.

    OPEN becomes BOUND_* once a bind_*_resp with ESME_ROK has been sent; a bound
    session becomes UNBOUND on unbind or unbind_resp in either direction. Anything
    else leaves the state alone; recording CLOSED when the transport goes is the
    server's job.
    """
    bound = _BOUND_BY_RESPONSE.get(_key(command_id))
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
