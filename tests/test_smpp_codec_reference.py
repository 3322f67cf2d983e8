"""The generated codec against a plain reference codec read straight from the tables.

smpp/pdu.py compiles each body of BODIES into straight-line code for speed. The
reference below walks the same tables field by field, the obvious way, with no
generated code and no shared helpers; for every command, on random PDUs, both must
produce the same bytes, the same decoded PDU, and the same refusal status for
damaged frames and for values that do not fit. Change the generator, run this.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp.pdu import (
    BODIES,
    TLV_TYPES,
    CommandId,
    CommandStatus,
    DistributionList,
    Field,
    Kind,
    Pdu,
    PduError,
    SmeAddress,
    TlvType,
    UnsuccessSme,
    decode,
    encode,
    generated_source,
)
from smpp.vocabulary import LIST_ADDRESS_LEN
from tests.pdu_strategies import COUNTED, cstring, field_values, pdus

S = CommandStatus
INT_SIZES = {Kind.INT1: 1, Kind.INT2: 2, Kind.INT4: 4}
OVER_MAX = {Kind.OCTETS: S.ESME_RINVMSGLEN, Kind.DESTS: S.ESME_RINVNUMDESTS}
COMMAND_VALUES = {c.value for c in CommandId}
TLV_KINDS: dict[int, TlvType] = {int(tag): t for tag, t in TLV_TYPES.items()}
UNKNOWN_TLV = TlvType(Kind.OCTETS, 0, 0xFFFF)  # unknown tags carry raw bytes


class Refused(Exception):
    """The reference's refusal: only the status is compared with the codec's."""

    def __init__(self, status: CommandStatus) -> None:
        super().__init__(status.name)
        self.status = status


# --- reference decoder ----------------------------------------------------------------


class Reader:
    """A cursor over one body; every read checks that the body still holds it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def left(self) -> int:
        return len(self.body) - self.pos

    def take(self, n: int, short: CommandStatus = S.ESME_RINVCMDLEN) -> bytes:
        if n > self.left():
            raise Refused(short)
        chunk = self.body[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def cstring(self, max_len: int) -> str:
        if self.left() == 0:
            raise Refused(S.ESME_RINVCMDLEN)
        window = self.body[self.pos : self.pos + max_len]
        if 0 not in window:
            raise Refused(S.ESME_RINVPARLEN)  # too long, or the body ends first
        text = window[: window.index(0)]
        self.pos += len(text) + 1
        return text.decode("latin-1")

    def dest(self) -> SmeAddress | DistributionList:
        flag = self.number(1)
        if flag == 1:
            ton, npi = self.number(1), self.number(1)
            return SmeAddress(ton, npi, self.cstring(LIST_ADDRESS_LEN))
        if flag == 2:
            return DistributionList(self.cstring(LIST_ADDRESS_LEN))
        raise Refused(S.ESME_RINVDESTFLAG)

    def unsuccess(self) -> UnsuccessSme:
        ton, npi = self.number(1), self.number(1)
        return UnsuccessSme(ton, npi, self.cstring(LIST_ADDRESS_LEN), self.number(4))


def reference_body(fields: tuple[Field, ...], reader: Reader) -> dict[str, object]:
    params: dict[str, Any] = {}
    for i, f in enumerate(fields):
        if f.kind in INT_SIZES:
            params[f.name] = reader.number(INT_SIZES[f.kind])
        elif f.kind is Kind.CSTRING:
            params[f.name] = reader.cstring(f.max_len)
        else:
            n = params[fields[i - 1].name]
            if n > f.max_len:
                raise Refused(OVER_MAX.get(f.kind, S.ESME_RINVPARLEN))
            if f.kind is Kind.OCTETS:
                params[f.name] = reader.take(n, short=S.ESME_RINVPARLEN)
            elif f.kind is Kind.DESTS:
                params[f.name] = tuple(reader.dest() for _ in range(n))
            else:
                params[f.name] = tuple(reader.unsuccess() for _ in range(n))
    return params


def reference_tlvs(reader: Reader) -> dict[int, Any]:
    tlvs: dict[int, Any] = {}
    while reader.left():
        head = reader.take(4, short=S.ESME_RINVOPTPARSTREAM)
        tag, length = int.from_bytes(head[:2], "big"), int.from_bytes(head[2:], "big")
        value = reader.take(length, short=S.ESME_RINVOPTPARSTREAM)
        known = TLV_KINDS.get(tag)
        if known is None:
            tlvs[tag] = value
            continue
        if not known.min_len <= length <= known.max_len:
            raise Refused(S.ESME_RINVPARLEN)
        if known.kind in INT_SIZES:
            tlvs[tag] = int.from_bytes(value, "big")
        elif known.kind is Kind.CSTRING:
            if value.find(0) != length - 1:
                raise Refused(S.ESME_RINVPARLEN)  # not exactly one NUL, at the end
            tlvs[tag] = value[:-1].decode("latin-1")
        else:
            tlvs[tag] = value
    return tlvs


def reference_decode(raw: bytes) -> Pdu:
    if len(raw) < 16:
        raise Refused(S.ESME_RINVCMDLEN)
    length, cid, status, seq = struct.unpack(">IIII", raw[:16])
    if cid not in COMMAND_VALUES:
        raise Refused(S.ESME_RINVCMDID)
    if length != len(raw):
        raise Refused(S.ESME_RINVCMDLEN)
    command = CommandId(cid)
    if length == 16 and command.is_response:
        return Pdu(command, status, seq, {}, {})
    reader = Reader(raw[16:])
    params = reference_body(BODIES[command], reader)
    return Pdu(command, status, seq, params, reference_tlvs(reader))


# --- reference encoder ----------------------------------------------------------------
#
# strict=True refuses what the codec must refuse. strict=False writes whatever it is
# given (ints wrapped to their size, counts taken from params, C-strings unchecked),
# to make frames that carry values the decoders must refuse.


class Writer:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.out = bytearray()

    def refuse_if(self, bad: bool, status: CommandStatus = S.ESME_RINVPARLEN) -> None:
        if bad and self.strict:
            raise Refused(status)

    def number(self, value: int, size: int) -> None:
        self.refuse_if(not 0 <= value < 256**size)
        self.out += (value % 256**size).to_bytes(size, "big")

    def cstring(self, value: str, max_len: int) -> None:
        raw = value.encode("latin-1", errors="replace")
        self.refuse_if(raw != value.encode("latin-1", errors="ignore"))  # not latin-1 text
        self.refuse_if(len(raw) >= max_len or 0 in raw)
        self.out += raw + b"\0"

    def dest(self, dest: SmeAddress | DistributionList) -> None:
        if isinstance(dest, SmeAddress):
            self.out += bytes([1, dest.dest_addr_ton, dest.dest_addr_npi])
            self.cstring(dest.destination_addr, LIST_ADDRESS_LEN)
        else:
            self.out.append(2)
            self.cstring(dest.dl_name, LIST_ADDRESS_LEN)

    def unsuccess(self, sme: UnsuccessSme) -> None:
        self.out += bytes([sme.dest_addr_ton, sme.dest_addr_npi])
        self.cstring(sme.destination_addr, LIST_ADDRESS_LEN)
        self.number(sme.error_status_code, 4)


def reference_encode(pdu: Pdu, strict: bool = True) -> bytes:
    fields = BODIES[pdu.command_id]
    params: dict[str, Any] = pdu.params
    w = Writer(strict)
    if params or not pdu.command_id.is_response:
        for i, f in enumerate(fields):
            counted = fields[i + 1] if i + 1 < len(fields) else None
            if f.kind in INT_SIZES and counted is not None and counted.kind in COUNTED:
                n = len(params[counted.name])  # the count is the data's, not params'
                w.refuse_if(n > counted.max_len, OVER_MAX.get(counted.kind, S.ESME_RINVPARLEN))
                w.number(n if strict else params[f.name], INT_SIZES[f.kind])
            elif f.kind in INT_SIZES:
                w.number(params[f.name], INT_SIZES[f.kind])
            elif f.kind is Kind.CSTRING:
                w.cstring(params[f.name], f.max_len)
            elif f.kind is Kind.OCTETS:
                w.out += params[f.name]
            elif f.kind is Kind.DESTS:
                for dest in params[f.name]:
                    w.dest(dest)
            else:
                for sme in params[f.name]:
                    w.unsuccess(sme)
    for tag, value in pdu.tlvs.items():
        known = TLV_KINDS.get(tag, UNKNOWN_TLV)
        head = len(w.out)
        w.out += b"\0\0\0\0"  # tag and length, filled in below
        if isinstance(value, bytes):
            bad_length = not known.min_len <= len(value) <= known.max_len
            w.refuse_if(known.kind is not Kind.OCTETS or bad_length)
            w.out += value
        elif isinstance(value, str):
            w.refuse_if(known.kind is not Kind.CSTRING)
            w.cstring(value, known.max_len)
        else:
            w.refuse_if(known.kind not in INT_SIZES)
            w.number(value, INT_SIZES.get(known.kind, 4))
        struct.pack_into(">HH", w.out, head, tag, len(w.out) - head - 4)
    body = bytes(w.out)
    length = 16 + len(body)
    return (
        struct.pack(">IIII", length, pdu.command_id, pdu.command_status, pdu.sequence_number) + body
    )


# --- the comparisons ------------------------------------------------------------------

ALL_COMMANDS = pytest.mark.parametrize("cid", list(CommandId), ids=lambda c: c.name)
EXAMPLES = settings(max_examples=30, deadline=None)


def outcome(function: Any, arg: Any) -> Any:
    """What a codec function made of arg: its result, or the status it refused with."""
    try:
        return function(arg)
    except (PduError, Refused) as exc:
        return exc.status


@ALL_COMMANDS
@EXAMPLES
@given(data=st.data())
def test_same_bytes_and_same_pdu_both_ways(cid: CommandId, data: st.DataObject) -> None:
    pdu = data.draw(pdus(cid))
    raw = encode(pdu)
    assert raw == reference_encode(pdu)  # so the reference's bytes decode equal, too
    assert decode(raw) == reference_decode(raw) == pdu


def loose_values(f: Field) -> st.SearchStrategy[Any]:
    """Values for a field at, or just past, the edge of what it can hold."""
    if f.kind in INT_SIZES:
        top = 256 ** INT_SIZES[f.kind]
        return st.one_of(st.sampled_from([-1, 0, top - 1, top]), st.integers(0, 255))
    if f.kind is Kind.CSTRING:
        edge = st.text(st.sampled_from("a\xe9"), min_size=f.max_len - 2, max_size=f.max_len)
        nul = st.tuples(cstring(f.max_len), cstring(f.max_len)).map("\0".join)
        return st.one_of(edge, nul, st.just("\u20ac"))
    if f.kind is Kind.OCTETS:
        return st.binary(min_size=f.max_len - 1, max_size=f.max_len + 1)
    return field_values(f)  # 255-entry lists are covered by test_smpp_pdu


LOOSE_TLV = st.tuples(
    st.sampled_from(sorted(TLV_KINDS)),
    st.one_of(
        st.binary(max_size=5),  # often the wrong length for its tag
        st.tuples(cstring(8), cstring(8)).map("\0".join),  # a NUL inside a C-string
    ),
)


@st.composite
def loose_pdus(draw: st.DrawFn, command_id: CommandId) -> Pdu:
    """A valid PDU with one field, or one TLV, set at or past the edge of its range.

    A count field (sm_length, ...) only matters to the lenient encoder, which writes
    it as given: it is set around its data's length and its maximum, and is picked
    more often, as that is where the decoders' length checks are.
    """
    pdu: Pdu = draw(pdus(command_id))
    fields = BODIES[command_id]
    counts = {fields[i - 1].name: f for i, f in enumerate(fields) if f.kind in COUNTED}
    if fields and pdu.params and draw(st.booleans()):
        name = draw(st.sampled_from([f.name for f in fields] + sorted(counts) * 4))
        if name in counts:
            params: dict[str, Any] = pdu.params
            n, top = len(params[counts[name].name]), counts[name].max_len
            params[name] = draw(st.sampled_from([n - 1, n + 1, top, top + 1])) % 256
        else:
            pdu.params[name] = draw(loose_values(next(f for f in fields if f.name == name)))
    else:
        tag, value = draw(LOOSE_TLV)
        pdu.tlvs[tag] = value
    return pdu


@ALL_COMMANDS
@EXAMPLES
@given(data=st.data())
def test_values_that_do_not_fit_get_the_same_refusal(cid: CommandId, data: st.DataObject) -> None:
    pdu = data.draw(loose_pdus(cid))
    assert outcome(encode, pdu) == outcome(reference_encode, pdu)


def damage(raw: bytes, data: st.DataObject) -> bytes:
    """Overwrite a few body octets and maybe cut the body short, keeping the header true."""
    body = bytearray(raw[16:])
    for _ in range(data.draw(st.integers(0, 3)) if body else 0):
        octet = st.one_of(st.sampled_from([0, 1, 2, 0xFE, 0xFF]), st.integers(0, 0xFF))
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(octet)
    near_end = st.integers(max(0, len(body) - 2), len(body))
    body = body[: data.draw(st.one_of(near_end, st.integers(0, len(body))))]
    return struct.pack(">I", 16 + len(body)) + raw[4:16] + bytes(body)


@ALL_COMMANDS
@EXAMPLES
@given(data=st.data())
def test_bad_frames_get_the_same_answer(cid: CommandId, data: st.DataObject) -> None:
    pdu = data.draw(loose_pdus(cid))
    frame = damage(reference_encode(pdu, strict=False), data)
    assert outcome(decode, frame) == outcome(reference_decode, frame)


# --- the generated source itself ------------------------------------------------------


@ALL_COMMANDS
def test_generated_source_is_readable_python(cid: CommandId) -> None:
    source = generated_source(cid)
    compile(source, "<test>", "exec")
    assert f"def decode_{cid.name}(buf, pos, end):" in source
    assert f"def encode_{cid.name}(p, out):" in source
    for f in BODIES[cid]:
        assert repr(f.name) in source
