"""Message text on the SMPP wire: data_coding, user data headers, receipt text (sans-IO)."""

from __future__ import annotations

import functools
import struct
import time
from dataclasses import dataclass

from gateway.domain import Part, Status
from gateway.encoding import decode_ucs2, encode_ucs2, gsm7_decode, gsm7_encode, is_gsm7

# data_coding values (SMPP 3.4 section 5.2.19) this gateway reads.
DC_DEFAULT = 0x00  # SMSC default alphabet: GSM 03.38, one septet per octet
DC_IA5 = 0x01
DC_LATIN1 = 0x03
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


def decode_text(data_coding: int, data: bytes) -> str:
    """The text of short_message or message_payload (without its UDH)."""
    if (data_coding == DC_DEFAULT or data_coding & 0xF4 == 0xF0) and not data.isascii():
        # One septet per octet: bit 7 set is no GSM 03.38 character, whatever it meant.
        raise TextError("GSM 03.38 text has an octet of 0x80 or more")
    try:
        if data_coding == DC_DEFAULT:
            return gsm7_decode(data)
        if data_coding == DC_IA5:
            return data.decode("ascii")
        if data_coding == DC_LATIN1:
            return data.decode("latin-1")
        if data_coding == DC_UCS2:
            return decode_ucs2(data)
        if data_coding & 0xF4 == 0xF0:
            return gsm7_decode(data)  # coding group 1111, default alphabet
    except ValueError as exc:
        raise TextError(f"text does not decode under data_coding {data_coding:#04x}") from exc
    raise TextError(f"data_coding {data_coding:#04x} is not supported (use 0, 1, 3 or 8)")


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


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    message_id: str
    status: Status
    submitted_at: float
    done_at: float


def receipt_text(facts: ReceiptFacts) -> bytes:
    """The customary receipt text; ``text:`` stays empty so no body travels in a receipt."""
    delivered = 1 if facts.status is Status.DELIVERED else 0
    return (
        f"id:{facts.message_id} sub:001 dlvrd:{delivered:03d}"
        f" submit date:{_smpp_date(facts.submitted_at)} done date:{_smpp_date(facts.done_at)}"
        f" stat:{RECEIPT_STAT[facts.status]} err:{RECEIPT_ERR[facts.status]:03d} text:"
    ).encode("ascii")


def _smpp_date(timestamp: float) -> str:
    return _smpp_minute(int(timestamp // 60))


@functools.lru_cache(maxsize=16)
def _smpp_minute(minute: int) -> str:
    """YYMMDDhhmm; receipts of one burst share a few minutes, so formatting is cached."""
    return time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))
