"""SMPP PDU codec: golden bytes, smpplib interop, round-trip properties and fuzzing."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import smpplib.command_codes
import smpplib.consts
import smpplib.smpp
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp.pdu import (
    BODIES,
    TLV_TYPES,
    CommandId,
    CommandStatus,
    DistributionList,
    Pdu,
    PduError,
    SmeAddress,
    Tag,
    UnsuccessSme,
    decode,
    describe,
    encode,
)
from tests.pdu_strategies import U8, pdus

S = CommandStatus


def header(length: int, command_id: int, status: int, seq: int) -> bytes:
    return struct.pack(">IIII", length, command_id, status, seq)


# --- golden PDUs: bytes written out by hand from the spec layouts ---------------------

GOLDEN: dict[str, tuple[bytes, Pdu]] = {
    "bind_transceiver": (
        bytes.fromhex("0000002a 00000009 00000000 00000001")
        + b"smppclient1\0"  # system_id
        + b"password\0"  # password
        + b"\0"  # system_type
        + b"\x34\x00\x00"  # interface_version, addr_ton, addr_npi
        + b"\0",  # address_range
        Pdu.make(
            CommandId.bind_transceiver,
            1,
            system_id="smppclient1",
            password="password",
            interface_version=0x34,
        ),
    ),
    "submit_sm": (
        bytes.fromhex("0000003c 00000004 00000000 00000002")
        + b"\0"  # service_type
        + b"\x05\x00Shop\0"  # source_addr_ton, source_addr_npi, source_addr
        + b"\x01\x01447700900123\0"  # dest_addr_ton, dest_addr_npi, destination_addr
        + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        + b"\0\0"  # schedule_delivery_time, validity_period
        + b"\x01\x00\x00\x00"  # registered_delivery, replace_if_present, data_coding, default id
        + b"\x05Hello"  # sm_length, short_message
        + bytes.fromhex("0204 0002 0007"),  # user_message_reference = 7
        Pdu.make(
            CommandId.submit_sm,
            2,
            source_addr_ton=5,
            source_addr="Shop",
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr="447700900123",
            registered_delivery=1,
            short_message=b"Hello",
            tlvs={Tag.user_message_reference: 7},
        ),
    ),
    "submit_sm_resp": (
        bytes.fromhex("00000019 80000004 00000000 00000002") + b"msg-0001\0",
        Pdu.make(CommandId.submit_sm_resp, 2, message_id="msg-0001"),
    ),
    "deliver_sm": (
        bytes.fromhex("0000005b 00000005 00000000 00000003")
        + b"\0"
        + b"\x01\x01447700900123\0"
        + b"\x05\x00Shop\0"
        + b"\x04\x00\x00"  # esm_class = SMSC delivery receipt
        + b"\0\0"
        + b"\x00\x00\x00\x00"
        + b"\x18id:msg-0001 stat:DELIVRD"
        + bytes.fromhex("001e 0009")
        + b"msg-0001\0"  # receipted_message_id
        + bytes.fromhex("0427 0001 02"),  # message_state = DELIVERED
        Pdu.make(
            CommandId.deliver_sm,
            3,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="447700900123",
            dest_addr_ton=5,
            destination_addr="Shop",
            esm_class=0x04,
            short_message=b"id:msg-0001 stat:DELIVRD",
            tlvs={Tag.receipted_message_id: "msg-0001", Tag.message_state: 2},
        ),
    ),
    "enquire_link": (
        bytes.fromhex("00000010 00000015 00000000 00000004"),
        Pdu.make(CommandId.enquire_link, 4),
    ),
    "generic_nack": (
        bytes.fromhex("00000010 80000000 00000003 00000005"),
        Pdu.make(CommandId.generic_nack, 5, status=S.ESME_RINVCMDID),
    ),
    "submit_multi": (
        bytes.fromhex("00000046 00000021 00000000 00000006")
        + b"\0"
        + b"\x01\x01447700900000\0"
        + b"\x02"  # number_of_dests
        + b"\x01\x01\x01447700900001\0"  # dest_flag 1: ton, npi, destination_addr
        + b"\x02friends\0"  # dest_flag 2: dl_name
        + b"\x00\x00\x00"
        + b"\0\0"
        + b"\x00\x00\x00\x00"
        + b"\x02Hi",
        Pdu.make(
            CommandId.submit_multi,
            6,
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr="447700900000",
            dest_address=[SmeAddress(1, 1, "447700900001"), DistributionList("friends")],
            short_message=b"Hi",
        ),
    ),
    "submit_multi_resp": (
        bytes.fromhex("0000002c 80000021 00000000 00000006")
        + b"multi-1\0"
        + b"\x01"  # no_unsuccess
        + b"\x01\x01447700900001\0"
        + bytes.fromhex("0000000b"),  # error_status_code = ESME_RINVDSTADR
        Pdu.make(
            CommandId.submit_multi_resp,
            6,
            message_id="multi-1",
            unsuccess_sme=(UnsuccessSme(1, 1, "447700900001", S.ESME_RINVDSTADR),),
        ),
    ),
}


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_decode(name: str) -> None:
    raw, expected = GOLDEN[name]
    assert decode(raw) == expected


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_encode(name: str) -> None:
    raw, expected = GOLDEN[name]
    assert encode(expected) == raw


def test_decoded_values_have_the_documented_types() -> None:
    pdu = decode(GOLDEN["deliver_sm"][0])
    assert pdu.command_id is CommandId.deliver_sm
    assert pdu.params["sm_length"] == 24
    assert pdu.params["short_message"] == b"id:msg-0001 stat:DELIVRD"
    assert pdu.params["destination_addr"] == "Shop"
    assert pdu.tlvs == {0x001E: "msg-0001", 0x0427: 2}
    multi = decode(GOLDEN["submit_multi"][0])
    assert multi.params["number_of_dests"] == 2
    assert multi.params["dest_address"] == (
        SmeAddress(1, 1, "447700900001"),
        DistributionList("friends"),
    )


def test_repr_leaves_out_message_content() -> None:
    _, pdu = GOLDEN["deliver_sm"]
    assert "Shop" not in repr(pdu) and "DELIVRD" not in repr(pdu)
    assert "deliver_sm" in repr(pdu)
    assert "447700900001" not in repr(SmeAddress(1, 1, "447700900001"))


# --- vocabulary agrees with smpplib's tables ------------------------------------------


def test_command_ids_match_smpplib() -> None:
    assert {c.name: c.value for c in CommandId} == smpplib.command_codes.commands


def test_statuses_match_smpplib() -> None:
    theirs = {
        name.removeprefix("SMPP_"): value
        for name, value in vars(smpplib.consts).items()
        if name.startswith("SMPP_ESME_")
    }
    assert {s.name: s.value for s in CommandStatus} == theirs


def test_tags_match_smpplib() -> None:
    assert {t.name: t.value for t in Tag} == smpplib.consts.OPTIONAL_PARAMS
    assert set(TLV_TYPES) == set(Tag)


def test_describe() -> None:
    assert describe(S.ESME_RTHROTTLED).startswith("Throttling error")
    assert describe(0) == "No Error"
    assert describe(0x400) == describe(0x4FF) == "vendor-specific error"
    assert describe(0x100) == describe(0x500) == describe(0x09) == "reserved"


def test_bodies_cover_every_command() -> None:
    assert set(BODIES) == set(CommandId)
    assert BODIES[CommandId.data_sm][-1].name == "data_coding"  # no short_message
    for cid in (CommandId.generic_nack, CommandId.unbind, CommandId.enquire_link_resp):
        assert BODIES[cid] == ()


# --- interoperability with smpplib (the reference client) -----------------------------


class _Client:
    """The bits of smpplib.client.Client that its PDU classes touch."""

    def __init__(self, sequence: int = 1) -> None:
        self.sequence = sequence  # smpplib PDUs read their sequence from the client

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def smpplib_parse(raw: bytes) -> Any:
    return smpplib.smpp.parse_pdu(raw, client=_Client())


def smpplib_make(name: str, seq: int, **kwargs: Any) -> bytes:
    pdu = smpplib.smpp.make_pdu(name, client=_Client(seq), sequence=seq, **kwargs)
    raw: bytes = pdu.generate()
    return raw


def test_smpplib_bind_transceiver_to_us() -> None:
    raw = smpplib_make(
        "bind_transceiver", 11, system_id="esme", password="secret", system_type="VMA"
    )
    pdu = decode(raw)
    assert (pdu.command_id, pdu.sequence_number) == (CommandId.bind_transceiver, 11)
    assert pdu.params["system_id"] == "esme"
    assert pdu.params["password"] == "secret"
    assert pdu.params["system_type"] == "VMA"
    assert pdu.params["interface_version"] == 0x34


def test_us_bind_transceiver_to_smpplib() -> None:
    theirs = smpplib_parse(GOLDEN["bind_transceiver"][0])
    assert theirs.command == "bind_transceiver"
    assert theirs.sequence == 1
    assert theirs.system_id == b"smppclient1"
    assert theirs.password == b"password"
    assert theirs.interface_version == 0x34


def test_smpplib_submit_sm_to_us() -> None:
    raw = smpplib_make(
        "submit_sm",
        12,
        source_addr_ton=5,
        source_addr="Shop",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        short_message=b"\x00\x01caf\xe9",
        data_coding=8,
        registered_delivery=1,
        user_message_reference=9,
        sar_msg_ref_num=0x1234,
        sar_total_segments=2,
        sar_segment_seqnum=1,
    )
    pdu = decode(raw)
    assert pdu.command_id is CommandId.submit_sm
    assert pdu.sequence_number == 12
    assert pdu.params["source_addr"] == "Shop"
    assert pdu.params["destination_addr"] == "447700900123"
    assert pdu.params["short_message"] == b"\x00\x01caf\xe9"
    assert pdu.params["sm_length"] == 6
    assert pdu.params["data_coding"] == 8
    assert pdu.params["registered_delivery"] == 1
    assert pdu.tlvs == {
        Tag.user_message_reference: 9,
        Tag.sar_msg_ref_num: 0x1234,
        Tag.sar_total_segments: 2,
        Tag.sar_segment_seqnum: 1,
    }
    assert encode(pdu) == raw


def test_us_submit_sm_to_smpplib() -> None:
    theirs = smpplib_parse(GOLDEN["submit_sm"][0])
    assert theirs.command == "submit_sm"
    assert theirs.source_addr == b"Shop"
    assert theirs.destination_addr == b"447700900123"
    assert theirs.short_message == b"Hello"
    assert theirs.registered_delivery == 1
    assert theirs.user_message_reference == 7


def test_smpplib_deliver_sm_to_us() -> None:
    raw = smpplib_make(
        "deliver_sm",
        13,
        source_addr="447700900123",
        destination_addr="Shop",
        esm_class=4,
        short_message=b"id:abc stat:DELIVRD",
        receipted_message_id="abc",
        message_state=2,
    )
    pdu = decode(raw)
    assert pdu.command_id is CommandId.deliver_sm
    assert pdu.params["short_message"] == b"id:abc stat:DELIVRD"
    assert pdu.params["esm_class"] == 4
    assert pdu.tlvs == {Tag.receipted_message_id: "abc", Tag.message_state: 2}


def test_us_deliver_sm_to_smpplib() -> None:
    theirs = smpplib_parse(GOLDEN["deliver_sm"][0])
    assert theirs.command == "deliver_sm"
    assert theirs.esm_class == 4
    assert theirs.short_message == b"id:msg-0001 stat:DELIVRD"
    assert theirs.receipted_message_id == b"msg-0001"
    assert theirs.message_state == 2


def test_query_sm_both_ways() -> None:
    raw = smpplib_make("query_sm", 14, message_id="abc", source_addr_ton=1, source_addr="123")
    pdu = decode(raw)
    assert pdu == Pdu.make(
        CommandId.query_sm, 14, message_id="abc", source_addr_ton=1, source_addr="123"
    )
    theirs = smpplib_parse(encode(pdu))
    assert (theirs.command, theirs.message_id, theirs.source_addr) == ("query_sm", b"abc", b"123")


def test_enquire_link_both_ways() -> None:
    raw = smpplib_make("enquire_link", 15)
    assert decode(raw) == Pdu.make(CommandId.enquire_link, 15)
    theirs = smpplib_parse(encode(Pdu.make(CommandId.enquire_link_resp, 15)))
    assert (theirs.command, theirs.sequence) == ("enquire_link_resp", 15)


def test_smpplib_reads_our_bodyless_error_response() -> None:
    raw = encode(Pdu.make(CommandId.submit_sm_resp, 16, status=S.ESME_RTHROTTLED))
    assert raw == header(16, CommandId.submit_sm_resp, S.ESME_RTHROTTLED, 16)
    theirs = smpplib_parse(raw)
    assert (theirs.command, theirs.status) == ("submit_sm_resp", S.ESME_RTHROTTLED)


# --- decode errors --------------------------------------------------------------------


def frame(command_id: int, body: bytes, seq: int = 42, status: int = 0) -> bytes:
    return header(16 + len(body), command_id, status, seq) + body


def decode_error(raw: bytes) -> PduError:
    with pytest.raises(PduError) as info:
        decode(raw)
    return info.value


SM_HEAD = b"\0" + b"\x00\x00a\0" + b"\x00\x00b\0" + b"\x00\x00\x00" + b"\0\0" + b"\x00" * 4


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"", S.ESME_RINVCMDLEN),
        (header(16, 0x15, 0, 1)[:15], S.ESME_RINVCMDLEN),
        (frame(0x12345, b""), S.ESME_RINVCMDID),
        (header(17, CommandId.enquire_link, 0, 42), S.ESME_RINVCMDLEN),
        (frame(CommandId.submit_sm, b""), S.ESME_RINVCMDLEN),
        (frame(CommandId.bind_transmitter, b"sys\0pw\0"), S.ESME_RINVCMDLEN),
        (frame(CommandId.bind_transmitter, b"x" * 16 + b"\0pw\0\0\x34\0\0\0"), S.ESME_RINVPARLEN),
        (frame(CommandId.submit_sm_resp, b"abc"), S.ESME_RINVPARLEN),
        (frame(CommandId.submit_sm, SM_HEAD + b"\xff" + b"x" * 255), S.ESME_RINVMSGLEN),
        (frame(CommandId.submit_sm, SM_HEAD + b"\x05abc"), S.ESME_RINVPARLEN),
        (frame(CommandId.enquire_link, b"\x00\x05"), S.ESME_RINVOPTPARSTREAM),
        (frame(CommandId.enquire_link, bytes.fromhex("0427 0002 01")), S.ESME_RINVOPTPARSTREAM),
        (frame(CommandId.enquire_link, bytes.fromhex("0427 0002 0102")), S.ESME_RINVPARLEN),
        (frame(CommandId.enquire_link, bytes.fromhex("001e 0003 616263")), S.ESME_RINVPARLEN),
        (frame(CommandId.enquire_link, bytes.fromhex("001e 0000")), S.ESME_RINVPARLEN),
        (frame(CommandId.enquire_link, bytes.fromhex("0423 0002 0102")), S.ESME_RINVPARLEN),
        (frame(CommandId.submit_multi, b"\0\x00\x00a\0\x03\x03x\0"), S.ESME_RINVDESTFLAG),
        (frame(CommandId.submit_multi, b"\0\x00\x00a\0\xff"), S.ESME_RINVNUMDESTS),
        (frame(CommandId.submit_multi, b"\0\x00\x00a\0\x02\x02x\0"), S.ESME_RINVCMDLEN),
        (frame(CommandId.submit_multi_resp, b"id\0\x01\x01\x01x\0\0\0"), S.ESME_RINVCMDLEN),
    ],
)
def test_decode_errors(raw: bytes, status: CommandStatus) -> None:
    error = decode_error(raw)
    assert error.status is status
    if len(raw) >= 16:  # the header was readable: the answer can carry its ids
        assert error.command_id == struct.unpack(">I", raw[4:8])[0]
        assert error.sequence_number == 42


def test_decode_error_carries_command_id_and_sequence() -> None:
    error = decode_error(frame(0x0000ABCD, b"", seq=77))
    assert (error.status, error.command_id, error.sequence_number) == (S.ESME_RINVCMDID, 0xABCD, 77)
    error = decode_error(frame(CommandId.submit_sm, b"\0", seq=78))
    assert (error.status, error.command_id, error.sequence_number) == (
        S.ESME_RINVCMDLEN,
        CommandId.submit_sm,
        78,
    )


def test_unknown_tlvs_are_kept_raw_and_round_trip() -> None:
    body = bytes.fromhex("1400 0003 aabbcc  0427 0001 06  fffe 0000")
    pdu = decode(frame(CommandId.enquire_link, body))
    assert pdu.tlvs == {0x1400: b"\xaa\xbb\xcc", Tag.message_state: 6, 0xFFFE: b""}
    assert encode(pdu) == frame(CommandId.enquire_link, body)


def test_responses_may_omit_their_body() -> None:
    for status in (S.ESME_RSYSERR, S.ESME_ROK):
        for cid in (CommandId.bind_transceiver_resp, CommandId.deliver_sm_resp):
            raw = header(16, cid, status, 9)
            pdu = decode(raw)
            assert pdu == Pdu(cid, status, 9, {}, {})
            assert encode(pdu) == raw


def test_make_gives_error_responses_an_empty_body() -> None:
    assert Pdu.make(CommandId.bind_receiver_resp, 1, status=S.ESME_RBINDFAIL).params == {}
    assert Pdu.make(CommandId.submit_sm_resp, 1).params == {"message_id": ""}
    with_id = Pdu.make(CommandId.data_sm_resp, 1, status=S.ESME_RDELIVERYFAILURE, message_id="x")
    assert with_id.params == {"message_id": "x"}


def test_make_counts_and_rejects_unknown_fields() -> None:
    pdu = Pdu.make(CommandId.submit_sm, 1, short_message=b"abc", sm_length=99)
    assert pdu.params["sm_length"] == 3
    multi = Pdu.make(CommandId.submit_multi, 1, dest_address=[DistributionList("a")])
    assert multi.params["number_of_dests"] == 1
    assert isinstance(multi.params["dest_address"], tuple)
    with pytest.raises(TypeError, match="mesage_id"):
        Pdu.make(CommandId.submit_sm_resp, 1, mesage_id="x")


# --- encode errors --------------------------------------------------------------------


def encode_error(pdu: Pdu) -> PduError:
    with pytest.raises(PduError) as info:
        encode(pdu)
    assert info.value.command_id == pdu.command_id
    assert info.value.sequence_number == pdu.sequence_number
    return info.value


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"source_addr": "x" * 21}, S.ESME_RINVPARLEN),
        ({"source_addr": "a\0b"}, S.ESME_RINVPARLEN),
        ({"source_addr": "€"}, S.ESME_RINVPARLEN),
        ({"source_addr": b"123"}, S.ESME_RINVPARLEN),
        ({"esm_class": 256}, S.ESME_RINVPARLEN),
        ({"esm_class": -1}, S.ESME_RINVPARLEN),
        ({"short_message": "text"}, S.ESME_RINVPARLEN),
        ({"short_message": b"x" * 255}, S.ESME_RINVMSGLEN),
        ({"tlvs": {Tag.message_state: 256}}, S.ESME_RINVPARLEN),
        ({"tlvs": {Tag.message_state: "2"}}, S.ESME_RINVPARLEN),
        ({"tlvs": {Tag.receipted_message_id: b"abc"}}, S.ESME_RINVPARLEN),
        ({"tlvs": {Tag.receipted_message_id: "x" * 65}}, S.ESME_RINVPARLEN),
        ({"tlvs": {Tag.network_error_code: b"\x01\x02"}}, S.ESME_RINVPARLEN),
        ({"tlvs": {Tag.message_payload: "text"}}, S.ESME_RINVPARLEN),
        ({"tlvs": {0x1400: 5}}, S.ESME_RINVPARLEN),
        ({"tlvs": {0x10000: b""}}, S.ESME_RINVPARLEN),
    ],
)
def test_encode_errors(fields: dict[str, Any], status: CommandStatus) -> None:
    error = encode_error(Pdu.make(CommandId.submit_sm, 3, **fields))
    assert error.status is status


def test_encode_error_names_the_field_not_the_value() -> None:
    error = encode_error(
        Pdu.make(CommandId.submit_sm, 3, destination_addr="4477009001239999999999")
    )
    assert "destination_addr" in str(error)
    assert "4477009001239999999999" not in str(error)
    error = encode_error(Pdu.make(CommandId.submit_sm, 3, destination_addr="€ 447700900123"))
    assert str(error) == "destination_addr does not fit (UnicodeEncodeError)"
    assert error.__suppress_context__  # the UnicodeEncodeError quoting the text is not chained


def test_encode_other_errors() -> None:
    assert encode_error(Pdu(CommandId.submit_sm, 0, 1, {"service_type": ""})).status is (
        S.ESME_RSYSERR
    )
    assert encode_error(Pdu.make(CommandId.enquire_link, 2**32)).status is S.ESME_RINVPARLEN
    too_many = Pdu.make(CommandId.submit_multi, 1, dest_address=[DistributionList("a")] * 255)
    assert encode_error(too_many).status is S.ESME_RINVNUMDESTS
    bad_dest = Pdu.make(CommandId.submit_multi, 1, dest_address=["447700900001"])
    assert encode_error(bad_dest).status is S.ESME_RINVDESTFLAG
    bad_sme = Pdu.make(CommandId.submit_multi_resp, 1, unsuccess_sme=[SmeAddress(1, 1, "1")])
    assert encode_error(bad_sme).status is S.ESME_RINVPARLEN


# --- properties -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(pdus())
def test_round_trip_every_pdu(pdu: Pdu) -> None:
    raw = encode(pdu)
    assert len(raw) == struct.unpack(">I", raw[:4])[0]
    assert decode(raw) == pdu


@pytest.mark.parametrize("cid", list(CommandId))
def test_round_trip_defaults(cid: CommandId) -> None:
    pdu = Pdu.make(cid, 1)
    assert decode(encode(pdu)) == pdu


def only_pdu_errors(raw: bytes) -> None:
    try:
        decode(raw)
    except PduError as exc:
        assert isinstance(exc.status, CommandStatus)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    only_pdu_errors(raw)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(CommandId)), st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_fuzz_valid_header_random_body(cid: CommandId, body: bytes, status: int) -> None:
    only_pdu_errors(frame(cid, body, status=status))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(GOLDEN)), st.data())
def test_fuzz_mutated_golden(name: str, data: st.DataObject) -> None:
    raw = bytearray(GOLDEN[name][0])
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(U8)
    cut = data.draw(st.integers(16, len(raw)))
    only_pdu_errors(bytes(raw))
    only_pdu_errors(struct.pack(">I", cut) + bytes(raw[4:cut]))
