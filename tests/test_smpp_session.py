"""SMPP session state table, from the SMSC's side."""

from __future__ import annotations

import pytest

from smpp.pdu import CommandId, CommandStatus, Pdu, PduError, decode
from smpp.session import (
    ALLOWED,
    BIND_STATE,
    MAY_SEND,
    RESPONSE_OF,
    Session,
    State,
    Tick,
    Window,
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
    assert all(isinstance(cid, C) and not cid.is_response for cid in RESPONSE_OF)
    assert all(resp.is_response for resp in RESPONSE_OF.values())
    assert all(RESPONSE_OF[cid] in MAY_SEND for cid in ALLOWED if cid in RESPONSE_OF)
    for request, response in RESPONSE_OF.items():
        assert response.value == request | 0x80000000
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


# --- one session's state: sequence numbers, timing, the deliver window --------------------

BIND_TIMEOUT, INTERVAL, RESPONSE_TIMEOUT = 30.0, 20.0, 5.0


def new_session(now: float = 1000.0) -> Session:
    return Session(
        now,
        bind_timeout=BIND_TIMEOUT,
        enquire_link_interval=INTERVAL,
        response_timeout=RESPONSE_TIMEOUT,
    )


def bound_session(now: float = 1000.0, command: CommandId = C.bind_transceiver_resp) -> Session:
    session = new_session(now)
    session.sent(command, S.ESME_ROK)
    return session


def test_sequence_numbers_wrap_from_0x7fffffff_to_1() -> None:
    session = new_session()
    assert [session.next_sequence() for _ in range(3)] == [1, 2, 3]
    session.sequence = 0x7FFFFFFE
    assert [session.next_sequence() for _ in range(3)] == [0x7FFFFFFF, 1, 2]


def test_a_successful_bind_response_binds_and_names_the_bind_type() -> None:
    session = new_session()
    session.sent(C.bind_receiver_resp, S.ESME_RINVPASWD)
    assert (session.state, session.bind_type) == (State.OPEN, None)
    assert session.check(C.submit_sm) is S.ESME_RINVBNDSTS
    session.sent(C.bind_receiver_resp, S.ESME_ROK)
    assert (session.state, session.bind_type) == (State.BOUND_RX, "receiver")
    assert session.receives and session.can_send(C.deliver_sm)
    assert session.check(C.bind_transmitter) is S.ESME_RALYBND
    session.sent(C.unbind_resp, S.ESME_ROK)
    # one comparison, not `assert not session.receives`: mypy keeps the earlier narrowing
    assert (session.state, session.bind_type, session.receives) == (
        State.UNBOUND,
        "receiver",  # kept
        False,
    )
    session.lost()
    assert session.state is State.CLOSED
    assert not bound_session(command=C.bind_transmitter_resp).receives


def test_no_bind_in_time_closes() -> None:
    session = new_session(1000.0)
    assert session.next_tick(1000.0) == BIND_TIMEOUT
    assert session.next_tick(1010.0) == BIND_TIMEOUT - 10
    assert session.tick(1029.9) is Tick.WAIT  # a timer that fired early
    assert session.next_tick(1029.9) == pytest.approx(0.1)
    assert session.tick(1030.0) is Tick.BIND_TIMEOUT
    session.seen(1029.0)  # traffic does not replace a bind
    assert session.tick(1031.0) is Tick.BIND_TIMEOUT


def test_an_idle_peer_is_probed_and_closed_when_it_does_not_answer() -> None:
    session = bound_session(1000.0)
    assert session.next_tick(1000.0) == RESPONSE_TIMEOUT  # the shorter of the two
    assert session.tick(1019.0) is Tick.WAIT
    assert session.tick(1020.0) is Tick.PROBE
    assert session.probe_sent == 1020.0
    assert session.tick(1024.0) is Tick.WAIT  # one probe at a time
    assert session.tick(1025.0) is Tick.PEER_SILENT


def test_any_frame_answers_a_probe_and_restarts_the_idle_time() -> None:
    session = bound_session(1000.0)
    assert session.tick(1020.0) is Tick.PROBE
    session.seen(1022.0)
    assert session.probe_sent is None
    assert session.tick(1030.0) is Tick.WAIT  # not silent: it answered
    assert session.tick(1041.9) is Tick.WAIT
    assert session.tick(1042.0) is Tick.PROBE


def test_window_room_and_release() -> None:
    window: Window[str] = Window(2)
    assert (window.room, len(window)) == (2, 0)
    window.sent(7, "a")
    window.sent(8, "b")
    assert (window.room, len(window)) == (0, 2)
    with pytest.raises(AssertionError):
        window.sent(9, "c")
    assert window.release(99) is None  # not ours: nothing changes
    assert window.release(7) == "a"
    assert window.release(7) is None  # answered twice
    assert window.room == 1
    window.sent(0x7FFFFFFF, "c")
    assert window.drain() == ["b", "c"]  # oldest first
    assert (window.room, len(window)) == (2, 0)
