"""Message text on the SMPP wire: data_coding, user data headers, receipt text (sans-IO)."""

from __future__ import annotations

import functools
import struct
import time
from dataclasses import dataclass
from enum import StrEnum

from gateway.domain import Part, Status
from gateway.encoding import (
    Encoding,
    decode_ucs2,
    decode_ucs2_part,
    encode_ucs2,
    gsm7_decode,
    gsm7_encode,
    is_gsm7,
)

# data_coding values (SMPP 3.4 section 5.2.19) this gateway reads.
DC_DEFAULT = 0x00  # SMSC default alphabet: GSM 03.38 unless the tenant's default_coding says
DC_IA5 = 0x01
DC_BINARY = 0x02
DC_LATIN1 = 0x03
DC_BINARY_ALT = 0x04
DC_UCS2 = 0x08

ESM_UDHI = 0x40
ESM_DELIVERY_RECEIPT = 0x04

# The customary stat: words of a receipt (SMPP 3.4 appendix B).
RECEIPT_STAT: dict[Status, str] = {
    Status.DELIVERED: "DELIVRD",
    Status.EXPIRED: "EXPIRED",
    Status.DELETED: "DELETED",
    Status.UNDELIVERABLE: "UNDELIV",
    Status.REJECTED: "REJECTD",
}

RECEIPT_ERR: dict[Status, int] = {
    Status.DELIVERED: 0,
    Status.EXPIRED: 1,
    Status.DELETED: 2,
    Status.UNDELIVERABLE: 3,
    Status.REJECTED: 4,
}


class TextError(ValueError):
    """Bytes that cannot be read as message text under their data_coding or UDH."""


class Alphabet(StrEnum):
    """How the octets of a short_message are read."""

    GSM = "gsm"  # GSM 03.38, one septet per octet
    ASCII = "ascii"  # IA5: printable ASCII, CR and LF
    LATIN1 = "latin1"
    UCS2 = "ucs2"  # UTF-16BE
    BINARY = "binary"  # 8-bit data, kept as it is


# The alphabet of each GSM 03.38 general data coding group value (0x10-0x1F: bits 3-2).
_GROUP_ALPHABET = (Alphabet.GSM, Alphabet.BINARY, Alphabet.UCS2, None)
# IA5 text: printable ASCII, CR and LF. Anything else (GSM 03.38 septets such as '@' 0x00
# or ESC 0x1B sent as data_coding 1, as node-smpp does by default) would garble the text.
_IA5_TEXT = bytes(range(0x20, 0x7F)) + b"\r\n"


class Coding:
    """What a data_coding says: the alphabet and the GSM 03.38 message class (or None)."""

    __slots__ = ("alphabet", "message_class")

    def __init__(self, alphabet: Alphabet, message_class: int | None = None) -> None:
        self.alphabet = alphabet
        self.message_class = message_class


_FIXED = {
    DC_IA5: Coding(Alphabet.ASCII),
    DC_BINARY: Coding(Alphabet.BINARY),
    DC_LATIN1: Coding(Alphabet.LATIN1),
    DC_BINARY_ALT: Coding(Alphabet.BINARY),
    DC_UCS2: Coding(Alphabet.UCS2),
}
# What data_coding 0 means, one shared object per default alphabet (never mutated, as
# the ones above): nearly every submit names it.
_DEFAULT_CODINGS = {alphabet: Coding(alphabet) for alphabet in Alphabet}


def coding_of(data_coding: int, default: Alphabet = Alphabet.GSM) -> Coding:
    """The alphabet and class a data_coding names; ``default`` is what 0 means here.

    0xF0-0xFF: message class in bits 1-0, 8-bit data when bit 2 is set (bit 3 is
    reserved and ignored). 0x10-0x1F: the GSM 03.38 general data coding group with a
    class, its alphabet in bits 3-2 (11 is reserved, so refused).
    """
    if data_coding == DC_DEFAULT:
        return _DEFAULT_CODINGS[default]
    fixed = _FIXED.get(data_coding)
    if fixed is not None:
        return fixed
    if data_coding & 0xF0 == 0xF0:
        alphabet = Alphabet.BINARY if data_coding & 0x04 else Alphabet.GSM
        return Coding(alphabet, data_coding & 0x03)
    if data_coding & 0xF0 == 0x10:
        group = _GROUP_ALPHABET[(data_coding >> 2) & 0x03]
        if group is not None:
            return Coding(group, data_coding & 0x03)
    raise TextError(
        f"data_coding {data_coding:#04x} is not supported (0-4, 8, 0x10-0x1B, 0xF0-0xFF are)"
    )


def decode_text(data_coding: int, data: bytes, default: Alphabet = Alphabet.GSM) -> str:
    """The text of short_message or message_payload (without its UDH); hex for 8-bit data."""
    return decode_as(coding_of(data_coding, default).alphabet, data)


def decode_as(alphabet: Alphabet, data: bytes, *, part: bool = False) -> str:
    """``data`` read in ``alphabet`` (8-bit data as hex).

    A ``part`` of a long message may start or end with half a UTF-16 surrogate pair,
    which the inbox mends when it joins the parts (see `decode_ucs2_part`).
    """
    if alphabet is Alphabet.BINARY:
        return data.hex()
    if alphabet is Alphabet.GSM:
        if not data.isascii():
            # One septet per octet: bit 7 set is no GSM 03.38 character, whatever it meant.
            raise TextError("GSM 03.38 text has an octet of 0x80 or more")
        return gsm7_decode(data)
    if alphabet is Alphabet.ASCII:
        if data.translate(None, _IA5_TEXT):
            raise TextError("IA5 text has a control octet or one of 0x80 or more")
        return data.decode("ascii")
    if alphabet is Alphabet.LATIN1:
        return data.decode("latin-1")
    try:
        return decode_ucs2_part(data) if part else decode_ucs2(data)
    except ValueError as exc:
        raise TextError("UCS-2 text does not decode") from exc


def data_coding_of(encoding: Encoding, message_class: int | None) -> int:
    """The data_coding that names ``encoding`` and ``message_class``: `coding_of` inverted.

    With a class, the 0xF0 group for GSM 03.38 and 8-bit data, 0x18 for UCS-2.
    """
    if message_class is None:
        return {Encoding.GSM7: DC_DEFAULT, Encoding.UCS2: DC_UCS2}.get(encoding, DC_BINARY_ALT)
    if encoding == Encoding.UCS2:
        return 0x18 | message_class
    return (0xF4 if encoding == Encoding.BINARY else 0xF0) | message_class


def encode_text(text: str) -> tuple[int, bytes]:
    """``(data_coding, octets)`` for text we send: GSM 03.38 when it fits, else UCS-2."""
    if is_gsm7(text):
        return DC_DEFAULT, gsm7_encode(text)
    return DC_UCS2, encode_ucs2(text)


def split_udh(data: bytes) -> tuple[Part | None, bytes]:
    """Cut the user data header off ``data``; the concatenation part, if the header has one.

    Information elements 0x00 (8-bit reference) and 0x08 (16-bit reference) carry the
    concatenation; others (ports, indications) are skipped as a handset would.
    """
    if not data:
        raise TextError("UDHI is set but the message is empty")
    end = 1 + data[0]
    if end > len(data):
        raise TextError("the user data header runs past the message")
    part = None
    pos = 1
    while pos < end:
        if pos + 2 > end:
            raise TextError("truncated information element in the user data header")
        iei, length = data[pos], data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) != length or pos + 2 + length > end:
            raise TextError("information element runs past the user data header")
        if iei == 0x00 and length == 3:
            part = concatenation_part(value[0], value[2], value[1])
        elif iei == 0x08 and length == 4:
            part = concatenation_part(struct.unpack(">H", value[:2])[0], value[3], value[2])
        pos += 2 + length
    return part, data[end:]


def concatenation_part(ref: int, seq: int, total: int) -> Part:
    """A part of a concatenated message, from a UDH or the sar_* TLVs alike.

    Sequence numbers run 1..total: a part 0, or of 0 parts, could never be joined.
    """
    if not 1 <= seq <= total:
        raise TextError("concatenation sequence number outside 1..total")
    return Part(ref, seq, total)


# The parts of a receipt's text that follow from its status alone, formatted once.
_RECEIPT_DLVRD = {
    status: f" dlvrd:{1 if status is Status.DELIVERED else 0:03d}" for status in RECEIPT_STAT
}
_RECEIPT_TAIL = {
    status: f" stat:{RECEIPT_STAT[status]} err:{RECEIPT_ERR[status]:03d} text:"
    for status in RECEIPT_STAT
}


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    message_id: str
    status: Status
    submitted_at: float
    done_at: float


def receipt_text(facts: ReceiptFacts) -> bytes:
    """The customary receipt text; ``text:`` stays empty so no body travels in a receipt."""
    return receipt_line(facts.message_id, facts.status, facts.submitted_at, facts.done_at)


def receipt_line(message_id: str, status: Status, submitted_at: float, done_at: float) -> bytes:
    """`receipt_text` from its fields, for the receipt template (no ReceiptFacts a receipt)."""
    return (
        f"id:{message_id} sub:001{_RECEIPT_DLVRD[status]}"
        f" submit date:{_smpp_date(submitted_at)} done date:{_smpp_date(done_at)}"
        f"{_RECEIPT_TAIL[status]}"
    ).encode("ascii")


def _smpp_date(timestamp: float) -> str:
    return _smpp_minute(int(timestamp // 60))


@functools.lru_cache(maxsize=16)
def _smpp_minute(minute: int) -> str:
    """YYMMDDhhmm; receipts of one burst share a few minutes, so formatting is cached."""
    return time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))
