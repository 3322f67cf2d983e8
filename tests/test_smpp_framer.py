"""SMPP framer: frames come out whole however the stream is chunked."""

from __future__ import annotations

import struct

import pytest

from smpp.framer import FrameError, Framer
from smpp.pdu import CommandId, CommandStatus, Pdu, PduError, Tag, decode, encode

PDUS = [
    Pdu.make(CommandId.bind_transceiver, 1, system_id="esme", password="pw"),
    Pdu.make(CommandId.submit_sm, 2, destination_addr="447700900123", short_message=b"Hi"),
    Pdu.make(CommandId.submit_sm_resp, 2, message_id="m-1"),
    Pdu.make(CommandId.enquire_link, 3),
    Pdu.make(CommandId.deliver_sm, 4, tlvs={Tag.message_payload: b"x" * 300}),
    Pdu.make(CommandId.generic_nack, 5, status=CommandStatus.ESME_RINVCMDID),
]
FRAMES = [encode(pdu) for pdu in PDUS]
STREAM = b"".join(FRAMES)


def drain(framer: Framer) -> list[bytes]:
    out = []
    while (frame := framer.next_frame()) is not None:
        out.append(frame)
    return out


def test_whole_frames() -> None:
    framer = Framer()
    for raw in FRAMES:
        framer.receive_data(raw)
        assert drain(framer) == [raw]


def test_byte_by_byte() -> None:
    framer = Framer()
    got = []
    for i in range(len(STREAM)):
        framer.receive_data(STREAM[i : i + 1])
        got += drain(framer)
    assert got == FRAMES


def test_all_in_one_chunk() -> None:
    framer = Framer()
    framer.receive_data(STREAM)
    assert drain(framer) == FRAMES
    assert [decode(frame) for frame in FRAMES] == PDUS


def test_split_at_every_offset() -> None:
    for cut in range(len(STREAM) + 1):
        framer = Framer()
        framer.receive_data(STREAM[:cut])
        got = drain(framer)
        framer.receive_data(STREAM[cut:])
        got += drain(framer)
        assert got == FRAMES, cut


def test_many_small_pdus_in_one_chunk() -> None:
    enquire = encode(Pdu.make(CommandId.enquire_link, 1))
    framer = Framer()
    framer.receive_data(enquire * 50_000 + enquire[:7])
    assert len(drain(framer)) == 50_000
    framer.receive_data(enquire[7:])
    assert drain(framer) == [enquire]


def test_frame_of_exactly_max_length() -> None:
    framer = Framer(max_command_length=32)
    framer.receive_data(struct.pack(">IIII", 32, 0x80000015, 0, 1) + bytes(16))
    assert framer.next_frame() is not None


@pytest.mark.parametrize("length", [0, 15, 65537, 2**31])
def test_bad_command_length(length: int) -> None:
    framer = Framer()
    framer.receive_data(struct.pack(">IIII", length, CommandId.submit_sm, 0, 99))
    with pytest.raises(FrameError) as info:
        framer.next_frame()
    error = info.value
    assert isinstance(error, PduError)
    assert error.status is CommandStatus.ESME_RINVCMDLEN
    assert (error.command_id, error.sequence_number) == (CommandId.submit_sm, 99)
    with pytest.raises(FrameError):  # the stream cannot be resynchronised
        framer.next_frame()


def test_bad_length_waits_for_the_whole_header() -> None:
    framer = Framer()
    framer.receive_data(struct.pack(">II", 0, 0x15))
    assert framer.next_frame() is None
    framer.receive_data(struct.pack(">II", 0, 7))
    with pytest.raises(FrameError) as info:
        framer.next_frame()
    assert info.value.sequence_number == 7


def test_bad_length_after_good_frames() -> None:
    framer = Framer(max_command_length=1000)
    framer.receive_data(FRAMES[0] + struct.pack(">IIII", 1001, 0x4, 0, 3))
    assert framer.next_frame() == FRAMES[0]
    with pytest.raises(FrameError):
        framer.next_frame()


def test_max_command_length_must_fit_a_header() -> None:
    with pytest.raises(ValueError):
        Framer(max_command_length=15)
