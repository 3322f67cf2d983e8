"""SMPP session state table, from the SMSC's side."""

from __future__ import annotations

import pytest

from smpp.pdu import CommandId, CommandStatus, Pdu, PduError, decode
from smpp.session import (
    ALLOWED,
    BIND_STATE,
    MAY_SEND,
    RESPONSE_OF,
    State,
    can_send,
    check,
    error_response,
    response_for,
    transition,
)

C = CommandId
S = CommandStatus
BOUND = (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)


@pytest.mark.parametrize(
    ("state", "command_id", "status"),
    [
        (State.OPEN, C.bind_transceiver, S.ESME_ROK),
        (State.OPEN, C.bind_receiver, S.ESME_ROK),
        (State.OPEN, C.submit_sm, S.ESME_RINVBNDSTS),
        (State.OPEN, C.enquire_link, S.ESME_ROK),
        (State.OPEN, C.unbind, S.ESME_RINVBNDSTS),
        (State.BOUND_TRX, C.bind_transceiver, S.ESME_RALYBND),
        (State.BOUND_TX, C.bind_receiver, S.ESME_RALYBND),
        (State.BOUND_TX, C.submit_sm, S.ESME_ROK),
        (State.BOUND_TRX, C.submit_multi, S.ESME_ROK),
        (State.BOUND_RX, C.submit_sm, S.ESME_RINVBNDSTS),
        (State.BOUND_RX, C.data_sm, S.ESME_RINVBNDSTS),
        (State.BOUND_TX, C.data_sm, S.ESME_ROK),
        (State.BOUND_RX, C.query_sm, S.ESME_RINVBNDSTS),
        (State.BOUND_TX, C.deliver_sm_resp, S.ESME_RINVBNDSTS),
        (State.BOUND_RX, C.deliver_sm_resp, S.ESME_ROK),
        (State.BOUND_TRX, C.data_sm_resp, S.ESME_ROK),
        (State.UNBOUND, C.deliver_sm_resp, S.ESME_ROK),
        (State.UNBOUND, C.unbind_resp, S.ESME_ROK),
        (State.UNBOUND, C.submit_sm, S.ESME_RINVBNDSTS),
        (State.UNBOUND, C.bind_transmitter, S.ESME_RINVBNDSTS),
        (State.CLOSED, C.enquire_link, S.ESME_RINVBNDSTS),
        (State.BOUND_RX, C.unbind, S.ESME_ROK),
        (State.BOUND_TX, C.outbind, S.ESME_RINVCMDID),
        (State.BOUND_RX, C.alert_notification, S.ESME_RINVCMDID),
        (State.BOUND_TX, C.submit_sm_resp, S.ESME_RINVCMDID),
        (State.BOUND_TX, 0x12345, S.ESME_RINVCMDID),
    ],
)
def test_check(state: State, command_id: int, status: CommandStatus) -> None:
    assert check(state, command_id) is status


@pytest.mark.parametrize("state", [*BOUND, State.OPEN])
def test_enquire_link_and_generic_nack_in_any_live_state(state: State) -> None:
    assert check(state, C.enquire_link) is S.ESME_ROK
    assert check(state, C.generic_nack) is S.ESME_ROK


def test_can_send() -> None:
    assert can_send(State.BOUND_RX, C.deliver_sm)
    assert can_send(State.BOUND_TRX, C.deliver_sm)
    assert not can_send(State.BOUND_TX, C.deliver_sm)
    assert not can_send(State.OPEN, C.deliver_sm)
    assert can_send(State.BOUND_TX, C.submit_sm_resp)
    assert can_send(State.OPEN, C.bind_transmitter_resp)
    assert not can_send(State.BOUND_TRX, C.submit_sm)  # an SMSC never submits
    assert not can_send(State.CLOSED, C.generic_nack)


def test_tables_are_consistent() -> None:
    assert set(BIND_STATE) <= set(ALLOWED)
    assert all(not cid.is_response for cid in RESPONSE_OF)
    assert all(resp.is_response for resp in RESPONSE_OF.values())
    assert all(RESPONSE_OF[cid] in MAY_SEND for cid in ALLOWED if cid in RESPONSE_OF)
    for request, response in RESPONSE_OF.items():
        assert response.value == request.value | 0x80000000
    assert set(RESPONSE_OF) | {C.outbind, C.alert_notification} == {
        cid for cid in CommandId if not cid.is_response
    }


def test_response_for() -> None:
    assert response_for(C.submit_sm) is C.submit_sm_resp
    assert response_for(C.bind_transceiver) is C.bind_transceiver_resp
    assert response_for(0x12345) is C.generic_nack
    assert response_for(C.outbind) is C.generic_nack
    assert response_for(C.deliver_sm_resp) is C.generic_nack


def test_bind_and_unbind_lifecycle() -> None:
    state = State.OPEN
    state = transition(state, C.bind_transceiver)
    assert state is State.OPEN  # bound only once the response went out
    assert transition(state, C.bind_transceiver_resp, S.ESME_RINVPASWD) is State.OPEN
    state = transition(state, C.bind_transceiver_resp, S.ESME_ROK)
    assert state is State.BOUND_TRX
    assert transition(state, C.submit_sm) is State.BOUND_TRX
    assert transition(state, C.bind_transmitter_resp) is State.BOUND_TRX
    state = transition(state, C.unbind)
    assert state is State.UNBOUND
    assert transition(state, C.unbind_resp) is State.UNBOUND
    for request, bound in BIND_STATE.items():
        assert transition(State.OPEN, RESPONSE_OF[request]) is bound


def test_error_response_for_undecodable_request() -> None:
    with pytest.raises(PduError) as info:
        decode(bytes.fromhex("00000011 00000004 00000000 0000002a 00"))  # submit_sm cut short
    nack = error_response(info.value)
    assert nack == Pdu(C.generic_nack, S.ESME_RINVCMDLEN, 42, {}, {})

    with pytest.raises(PduError) as info:
        decode(bytes.fromhex("00000014 80000004 00000000 0000002b 61626364"))  # no NUL
    assert error_response(info.value) == Pdu(C.generic_nack, S.ESME_RINVPARLEN, 43, {}, {})

    with pytest.raises(PduError) as info:
        decode(bytes.fromhex("00000014 00000006 00000000 0000002c 04270000"))  # bad TLV
    assert error_response(info.value) == Pdu(C.unbind_resp, S.ESME_RINVPARLEN, 44, {}, {})

    unknown = PduError(S.ESME_RINVCMDID, command_id=0x77, sequence_number=45)
    assert error_response(unknown) == Pdu(C.generic_nack, S.ESME_RINVCMDID, 45, {}, {})
    headerless = PduError(S.ESME_RINVCMDLEN)
    assert error_response(headerless) == Pdu(C.generic_nack, S.ESME_RINVCMDLEN, 0, {}, {})
