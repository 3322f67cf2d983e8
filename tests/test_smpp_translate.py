"""PDU <-> domain translation on its own: PDUs in, requests and responses out, no sockets."""

from __future__ import annotations

import calendar
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import MessageIdFormat, SmppConfig, SmppErrorCodes, TenantConfig
from gateway.domain import (
    Interface,
    Message,
    Notice,
    NoticeKind,
    Part,
    ReceiptRequest,
    RejectCode,
    Rejected,
    Status,
    SubmitRequest,
)
from gateway.encoding import Encoding
from smpp.bodies import DataSm, SubmitSm
from smpp.pdu import (
    CommandId,
    CommandStatus,
    Pdu,
    SmeAddress,
    Tag,
    UnsuccessSme,
    decode,
    encode,
)
from smpp.translate import (
    MESSAGE_STATE,
    TAG_KEYWORD,
    Translator,
    accepted_resp,
    deliver_sm,
    query_sm_resp,
    receipt_bytes,
    replace_body,
    replace_times,
    wire_address,
)

C = CommandId
S = CommandStatus
ACME = TenantConfig(id="acme")
# 2024-03-05 06:07:08 UTC
AT = float(calendar.timegm((2024, 3, 5, 6, 7, 8)))
CODES = SmppErrorCodes(recipient_opted_out=0x4A1, consent_required=0x4A2)
TRANSLATOR = Translator(SmppConfig(error_codes=CODES))


def submit(
    command: CommandId = C.submit_sm, tlvs: dict[int, object] | None = None, **fields: Any
) -> Pdu:
    """A submit_sm (or data_sm) as decode leaves it, from "Acme" to an international number."""
    fields = {
        "source_addr_ton": 5,
        "source_addr": "Acme",
        "dest_addr_ton": 1,
        "destination_addr": "46701234567",
        **fields,
    }
    return decode(encode(Pdu.make(command, 7, tlvs=tlvs, **fields)))


def request(pdu: Pdu) -> SubmitRequest | CommandStatus:
    body: SubmitSm | DataSm = (
        pdu.body(DataSm) if pdu.command_id is C.data_sm else pdu.body(SubmitSm)
    )
    return TRANSLATOR.request(pdu, ACME, body["destination_addr"], body["dest_addr_ton"], AT)


def message(**fields: Any) -> Message:
    values: dict[str, Any] = {
        "id": "m1",
        "tenant": "acme",
        "interface": Interface.SMPP,
        "sender": "Acme",
        "recipient": "+46701234567",
        "purpose": "transactional",
        "segments": 1,
        "encoding": Encoding.GSM7,
        "status": Status.ENROUTE,
        "submitted_at": AT,
        **fields,
    }
    return Message(**values)


# --- requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "send_at", "expires_at"),
    [
        ({}, None, None),
        (
            {"schedule_delivery_time": "240305070708000+", "validity_period": "000000010000000R"},
            datetime(2024, 3, 5, 7, 7, 8, tzinfo=UTC),
            datetime(2024, 3, 5, 7, 7, 8, tzinfo=UTC),
        ),
        (
            {"schedule_delivery_time": "000000000002000R", "validity_period": "240305091708004+"},
            datetime(2024, 3, 5, 6, 7, 10, tzinfo=UTC),
            datetime(2024, 3, 5, 8, 17, 8, tzinfo=UTC),
        ),
    ],
)
def test_schedule_and_validity_become_moments(
    fields: dict[str, Any], send_at: datetime | None, expires_at: datetime | None
) -> None:
    result = request(submit(short_message=b"hi", **fields))
    assert isinstance(result, SubmitRequest)
    assert (result.send_at, result.expires_at, result.validity) == (send_at, expires_at, None)


def test_malformed_times_answer_their_statuses() -> None:
    bad = "2403050707080"
    assert request(submit(schedule_delivery_time=bad)) is S.ESME_RINVSCHED
    assert request(submit(validity_period=bad)) is S.ESME_RINVEXPIRY
    assert replace_times(Pdu.make(C.replace_sm, 1, schedule_delivery_time=bad), AT) is (
        S.ESME_RINVSCHED
    )
    assert replace_times(Pdu.make(C.replace_sm, 1), AT) == (None, None)


def test_data_sm_validity_is_its_time_to_live() -> None:
    result = request(submit(C.data_sm, tlvs={Tag.message_payload: b"x", Tag.qos_time_to_live: 30}))
    assert isinstance(result, SubmitRequest)
    assert result.validity == timedelta(seconds=30)
    assert result.send_at is None


def test_submit_sm_becomes_a_request() -> None:
    assert request(submit(short_message=b"hello", registered_delivery=1)) == SubmitRequest(
        tenant=ACME,
        interface=Interface.SMPP,
        to="+46701234567",
        sender="Acme",
        body="hello",
        purpose=None,
        receipt=ReceiptRequest.FINAL,
        part=None,
    )


def test_data_sm_reads_message_payload() -> None:
    result = request(submit(C.data_sm, tlvs={Tag.message_payload: b"from payload"}))
    assert isinstance(result, SubmitRequest)
    assert result.body == "from payload"


@pytest.mark.parametrize(
    ("fields", "tlvs", "expected"),
    [
        # both short_message and message_payload
        ({"short_message": b"a"}, {Tag.message_payload: b"b"}, S.ESME_RSUBMITFAIL),
        ({"short_message": b"\xe9t\xe9"}, {}, S.ESME_RSUBMITFAIL),  # bit 7 in GSM 03.38
        ({"short_message": b"hi", "data_coding": 0x05}, {}, S.ESME_RSUBMITFAIL),
        ({"short_message": b"\x05\x00\x03", "esm_class": 0x40}, {}, S.ESME_RINVESMCLASS),
        ({"short_message": b"hi"}, {Tag.sar_msg_ref_num: 1}, S.ESME_RMISSINGOPTPARAM),
        (
            {"short_message": b"hi"},
            {Tag.sar_msg_ref_num: 1, Tag.sar_segment_seqnum: 3, Tag.sar_total_segments: 2},
            S.ESME_RINVOPTPARAMVAL,
        ),
        ({"short_message": b"hi", "service_type": "NOPE"}, {}, S.ESME_RINVSERTYP),
        ({"short_message": b"hi", "registered_delivery": 3}, {}, S.ESME_RINVREGDLVFLG),
    ],
)
def test_submit_sm_refused(
    fields: dict[str, Any], tlvs: dict[int, object], expected: CommandStatus
) -> None:
    assert request(submit(tlvs=tlvs, **fields)) is expected


def test_concatenation_from_udh_or_sar_tlvs() -> None:
    udh = submit(short_message=b"\x05\x00\x03\x2a\x02\x01part one", esm_class=0x40)
    result = request(udh)
    assert isinstance(result, SubmitRequest)
    assert (result.part, result.body) == (Part(0x2A, 1, 2), "part one")
    sar: dict[int, object] = {
        Tag.sar_msg_ref_num: 9,
        Tag.sar_segment_seqnum: 2,
        Tag.sar_total_segments: 2,
    }
    result = request(submit(tlvs=sar, short_message=b"part two"))
    assert isinstance(result, SubmitRequest)
    assert result.part == Part(9, 2, 2)


@pytest.mark.parametrize(
    ("service_type", "purpose"), [("", None), ("CMT", None), ("MKT", "marketing")]
)
def test_service_type_names_the_purpose(service_type: str, purpose: str | None) -> None:
    result = request(submit(short_message=b"hi", service_type=service_type))
    assert isinstance(result, SubmitRequest)
    assert result.purpose == purpose


# --- responses --------------------------------------------------------------------------


def test_submit_resp() -> None:
    sm, data = submit(short_message=b"hi"), submit(C.data_sm)
    assert TRANSLATOR.submit_resp(sm, message()) == Pdu.make(C.submit_sm_resp, 7, message_id="m1")
    assert TRANSLATOR.submit_resp(data, message()) == Pdu.make(C.data_sm_resp, 7, message_id="m1")
    opted_out = Rejected(RejectCode.RECIPIENT_OPTED_OUT, "")
    assert TRANSLATOR.submit_resp(sm, opted_out) == Pdu.make(C.submit_sm_resp, 7, status=0x4A1)
    throttled = Rejected(RejectCode.THROTTLED, "")
    assert TRANSLATOR.submit_resp(sm, throttled) == Pdu.make(
        C.submit_sm_resp, 7, status=S.ESME_RTHROTTLED
    )
    assert TRANSLATOR.submit_resp(sm, Rejected(RejectCode.NO_RESPONSE, "")) is None


def test_every_rejection_has_a_status() -> None:
    assert set(TRANSLATOR.reject_status) == set(RejectCode)
    assert TRANSLATOR.status(RejectCode.CONSENT_REQUIRED) == 0x4A2
    assert TRANSLATOR.status(RejectCode.PROCESSING_RESTRICTED) == 0x403  # the default
    assert set(MESSAGE_STATE) == set(Status)


def test_multi_resp_lists_each_refusal_after_the_early_ones() -> None:
    early = UnsuccessSme(0, 0, "friends", S.ESME_RINVDLNAME)
    accepted = [SmeAddress(1, 1, "46700000001"), SmeAddress(1, 1, "46700000002")]
    results: list[Message | Rejected] = [
        Rejected(RejectCode.INVALID_RECIPIENT, ""),
        message(id="m2"),
    ]
    multi = Pdu.make(C.submit_multi, 9)
    assert TRANSLATOR.multi_resp(multi, accepted, results, [early]) == Pdu.make(
        C.submit_multi_resp,
        9,
        message_id="m2",
        unsuccess_sme=(early, UnsuccessSme(1, 1, "46700000001", S.ESME_RINVDSTADR)),
    )


def test_cancel_and_replace_status() -> None:
    not_pending = Rejected(RejectCode.NOT_PENDING, "")
    unavailable = Rejected(RejectCode.STORE_UNAVAILABLE, "")
    assert TRANSLATOR.cancel_status(None) == S.ESME_ROK
    assert TRANSLATOR.cancel_status(not_pending) == S.ESME_RCANCELFAIL
    assert TRANSLATOR.cancel_status(unavailable) == S.ESME_RSYSERR
    assert TRANSLATOR.replace_status(None) == S.ESME_ROK
    assert TRANSLATOR.replace_status(not_pending) == S.ESME_RREPLACEFAIL


def test_replace_body() -> None:
    assert replace_body(Pdu.make(C.replace_sm, 1, short_message=b"new text")) == "new text"
    assert replace_body(Pdu.make(C.replace_sm, 1, short_message=b"\xff")) is S.ESME_RREPLACEFAIL


def test_query_sm_resp() -> None:
    query = Pdu.make(C.query_sm, 4, message_id="m1")
    assert query_sm_resp(query, None) == Pdu.make(C.query_sm_resp, 4, status=S.ESME_RQUERYFAIL)
    assert query_sm_resp(query, message()) == Pdu.make(
        C.query_sm_resp, 4, message_id="m1", final_date="", message_state=1, error_code=0
    )
    failed = message(status=Status.UNDELIVERABLE, final_at=AT, error="absent")
    assert query_sm_resp(query, failed) == Pdu.make(
        C.query_sm_resp,
        4,
        message_id="m1",
        final_date="240305060708000+",
        message_state=5,
        error_code=1,
    )


# --- addresses and deliver_sm -----------------------------------------------------------


def test_wire_address() -> None:
    assert wire_address("+46701234567") == (1, 1, "46701234567")
    assert wire_address("Acme") == (5, 0, "Acme")
    assert wire_address("12345") == (3, 0, "12345")


def test_receipt_deliver_sm_golden_bytes() -> None:
    receipt = Notice(
        tenant="acme",
        kind=NoticeKind.RECEIPT,
        message_id="m1",
        handset="+46701234567",
        address="Acme",
        created_at=AT + 60,
        expires_at=AT + 3600,
        status=Status.DELIVERED,
        submitted_at=AT,
    )
    text = (
        b"id:m1 sub:001 dlvrd:001 submit date:2403050607 done date:2403050608"
        b" stat:DELIVRD err:000 text:"
    )
    body = (
        b"\x00"  # service_type
        b"\x01\x0146701234567\x00"  # source: the handset, international
        b"\x05\x00Acme\x00"  # destination: the sender, alphanumeric
        b"\x04\x00\x00\x00\x00\x00\x00\x00"  # esm_class: receipt ... data_coding 0
        + b"\x00"
        + bytes([len(text)])
        + text
        + b"\x04\x27\x00\x01\x02"  # message_state DELIVERED
        + b"\x04\x23\x00\x03\x03\x00\x00"  # network_error_code: GSM, 0
        + b"\x00\x1e\x00\x03m1\x00"  # receipted_message_id, last
    )
    frame = encode(deliver_sm(receipt, 0x7FFFFFFF))
    assert frame[16:] == body
    assert frame[:16] == (16 + len(body)).to_bytes(4, "big") + bytes.fromhex(
        "00000005 00000000 7fffffff"
    )


# Addresses a receipt may carry: E.164, short codes, alphanumeric senders, and some the
# template leaves to the generic encoder (too long, not Latin-1).
ADDRESSES = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.from_regex(r"[0-9]{3,8}", fullmatch=True),
    st.text(st.characters(min_codepoint=32, max_codepoint=0x17F), min_size=1, max_size=24),
)
MESSAGE_IDS = st.from_regex(r"[0-9a-f]{20}", fullmatch=True)
FINAL = [s for s in Status if s.is_final]


@given(
    handset=ADDRESSES,
    address=ADDRESSES,
    message_id=MESSAGE_IDS,
    status=st.sampled_from(FINAL),
    submitted=st.floats(0, 4e9),
    sequence=st.integers(1, 0x7FFFFFFF),
    ids=st.sampled_from(MessageIdFormat),
)
def test_receipt_template_matches_the_generic_encoder(
    handset: str,
    address: str,
    message_id: str,
    status: Status,
    submitted: float,
    sequence: int,
    ids: MessageIdFormat,
) -> None:
    receipt = Notice(
        "acme", NoticeKind.RECEIPT, message_id, handset, address, submitted + 5, submitted + 60,
        status=status, submitted_at=submitted,
    )  # fmt: skip
    try:
        expected: bytes | type[Exception] = encode(deliver_sm(receipt, sequence, ids))
    except Exception as exc:  # the template must refuse what the encoder refuses, alike
        expected = type(exc)
    try:
        got: bytes | type[Exception] = receipt_bytes(receipt, sequence, ids)
    except Exception as exc:
        got = type(exc)
    assert got == expected


@given(
    message_id=MESSAGE_IDS,
    sequence=st.integers(1, 0x7FFFFFFF),
    command=st.sampled_from([C.submit_sm, C.data_sm]),
    ids=st.sampled_from(MessageIdFormat),
)
def test_accepted_resp_template_matches_the_generic_encoder(
    message_id: str, sequence: int, command: CommandId, ids: MessageIdFormat
) -> None:
    request = Pdu.make(command, sequence)
    resp = TRANSLATOR.submit_resp(request, message(id=message_id), ids)
    assert resp is not None
    assert accepted_resp(request, message_id, ids) == encode(resp)


def test_mobile_originated_deliver_sm() -> None:
    mo = Notice(
        tenant="acme",
        kind=NoticeKind.MO,
        message_id="m2",
        handset="+46701234567",
        address="+46700000000",
        created_at=AT,
        expires_at=AT + 3600,
        body="STOP",
        keyword="stop",
    )
    pdu = deliver_sm(mo, 3)
    assert pdu.params["source_addr"] == "46701234567"
    assert pdu.params["destination_addr"] == "46700000000"
    assert (pdu.params["dest_addr_ton"], pdu.params["dest_addr_npi"]) == (1, 1)
    assert (pdu.params["esm_class"], pdu.params["data_coding"]) == (0, 0)
    assert pdu.params["short_message"] == b"STOP"
    assert pdu.tlvs == {TAG_KEYWORD: b"stop"}

    long = deliver_sm(dataclasses.replace(mo, body="Ж" * 128, keyword=None), 4)
    assert (long.params["data_coding"], long.params["short_message"]) == (0x08, b"")
    assert long.tlvs == {Tag.message_payload: "Ж".encode("utf-16-be") * 128}
