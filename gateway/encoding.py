"""SMS text encodings (GSM 03.38 default alphabet and UCS-2) and concatenated-SMS segmentation.

`analyse` runs for every accepted message, so the alphabet checks are precomputed C-level
lookups (`bytes.translate`, a `codecs` charmap) rather than per-character Python loops.
"""

import codecs
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache, partial
from types import MappingProxyType
from typing import Final


class Encoding(StrEnum):
    """Wire encoding of a message body (SMPP data_coding 0 or 8, or 8-bit data)."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"
    # 8-bit data (SMPP data_coding 2 or 4): the body is the octets in hex.
    BINARY = "binary"


# GSM 03.38 basic character set: the character at index i has septet code i. Code 0x1B is the
# escape to the extension table, not a character (3GPP TS 23.038 section 6.2.1).
GSM7_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10
    " !\"#¤%&'()*+,-./"  # 0x20
    "0123456789:;<=>?"  # 0x30
    "¡ABCDEFGHIJKLMNO"  # 0x40
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50
    "¿abcdefghijklmno"  # 0x60
    "pqrstuvwxyzäöñüà"  # 0x70
)

# GSM 03.38 extension table (section 6.2.1.1): code -> character, sent as ESC (0x1B) + code.
GSM7_EXTENSION: Final[Mapping[int, str]] = MappingProxyType(
    {
        0x0A: "\f",
        0x14: "^",
        0x28: "{",
        0x29: "}",
        0x2F: "\\",
        0x3C: "[",
        0x3D: "~",
        0x3E: "]",
        0x40: "|",
        0x65: "€",
    }
)

_ESC: Final = 0x1B
_GSM7_SINGLE: Final = 160  # septets in a single SMS
_GSM7_PART: Final = 153  # septets per part once a 6-octet concatenation UDH is needed
_UCS2_SINGLE: Final = 70  # UTF-16 code units in a single SMS
_UCS2_PART: Final = 67
_OCTETS_SINGLE: Final = 140  # 8-bit octets in a single SMS
_OCTETS_PART: Final = 134


def _ascii_bytes(chars: str) -> bytes:
    return bytes(ord(c) for c in chars if c.isascii())


# ASCII fast path: deleting the basic-table bytes leaves only extension or non-GSM characters.
_ASCII_BASIC: Final = _ascii_bytes(GSM7_BASIC.replace("\x1b", ""))
_ASCII_EXTENSION: Final = _ascii_bytes("".join(GSM7_EXTENSION.values()))


def _packing_table() -> str:
    """Decoding table for a one-byte-per-character internal form used to test the alphabet.

    Basic characters map to their own code and extension characters to 0x80 | code, so the
    extension count is the number of non-ASCII bytes. `codecs.charmap_build` only builds its
    fast C lookup when byte 0 maps to U+0000, so '@' (code 0) borrows the unused ESC slot and
    NUL encodes to 0x00, which callers treat as "not GSM".
    """
    table = ["\ufffe"] * 256  # U+FFFE marks an unmapped byte
    table[0] = "\x00"
    for code, char in enumerate(GSM7_BASIC):
        if code != _ESC:
            table[code or _ESC] = char
    for code, char in GSM7_EXTENSION.items():
        table[0x80 | code] = char
    return "".join(table)


_PACK_MAP: Final = codecs.charmap_build(_packing_table())
_PACKED_TO_SEPTET: Final = bytes(0 if b == _ESC else b for b in range(256))
# Packed extension byte (as int for a memchr test, as bytes for replace) -> ESC + code;
# bytes.replace keeps the expansion in C.
_ESCAPES: Final = tuple(
    (0x80 | code, bytes((0x80 | code,)), bytes((_ESC, code))) for code in GSM7_EXTENSION
)
_LOW_HALF: Final = bytes(range(0x80))
_MASK_7BIT: Final = bytes(b & 0x7F for b in range(256))
# Character shown for ESC + code. Unknown codes fall back to the basic table (6.2.1.1 note);
# ESC ESC is reserved for a further extension table and is shown as a space until one exists.
_ESCAPED_CHAR: Final = "".join(
    " " if code == _ESC else GSM7_EXTENSION.get(code, GSM7_BASIC[code]) for code in range(128)
)


@dataclass(frozen=True, slots=True)
class BodyInfo:
    """How a body travels: its encoding, its length in that encoding and its SMS count."""

    encoding: Encoding
    # septets for GSM7 (extension chars count 2), UTF-16 code units for UCS2, octets for BINARY
    units: int
    segments: int


# Results are immutable, so they are shared: building a frozen dataclass costs about as much as
# the analysis itself. Single segments come from a table, longer bodies from a bounded cache.
_SINGLE_GSM7: Final = tuple(BodyInfo(Encoding.GSM7, n, 1) for n in range(_GSM7_SINGLE + 1))
_SINGLE_UCS2: Final = tuple(BodyInfo(Encoding.UCS2, n, 1) for n in range(_UCS2_SINGLE + 1))
_multi_gsm7: Final = lru_cache(maxsize=2048)(partial(BodyInfo, Encoding.GSM7))
_multi_ucs2: Final = lru_cache(maxsize=2048)(partial(BodyInfo, Encoding.UCS2))


def _gsm7_units(text: str) -> int | None:
    """Septet count of `text`, or None when it is not representable in GSM 03.38."""
    if text.isascii():
        special = text.encode("ascii").translate(None, _ASCII_BASIC)
        if special and special.translate(None, _ASCII_EXTENSION):
            return None
        return len(text) + len(special)
    packed = codecs.charmap_encode(text, "ignore", _PACK_MAP)[0]
    if len(packed) != len(text) or 0 in packed:
        return None
    if packed.isascii():
        return len(packed)
    return len(packed) + len(packed.translate(None, _LOW_HALF))


def _cuts(units: int, size: int, is_lead: Callable[[int], bool]) -> Iterator[tuple[int, int]]:
    """Greedy [start, end) ranges of at most `size` units that never end on a pair's first unit."""
    start = 0
    while start < units:
        end = min(start + size, units)
        if end < units and is_lead(end - 1):
            end -= 1
        yield start, end
        start = end


def _gsm7_cuts(septets: bytes) -> Iterator[tuple[int, int]]:
    """Part ranges in septets; encoded text only holds ESC as the first half of a pair."""
    return _cuts(len(septets), _GSM7_PART, lambda i: septets[i] == _ESC)


def _ucs2_cuts(utf16: bytes) -> Iterator[tuple[int, int]]:
    """Part ranges in UTF-16 units; a high byte of D8-DB marks a pair's first (high) half."""
    return _cuts(len(utf16) >> 1, _UCS2_PART, lambda i: 0xD8 <= utf16[2 * i] <= 0xDB)


def analyse(body: str) -> BodyInfo:
    """Pick the encoding for `body` and count its units and SMS segments.

    Raises ValueError if `body` holds a lone surrogate code point, which no SMS can carry.
    """
    units = _gsm7_units(body)
    if units is not None:
        if units <= _GSM7_SINGLE:
            return _SINGLE_GSM7[units]
        if units == len(body):  # no escape pairs, so every part but the last is full
            return _multi_gsm7(units, -(-units // _GSM7_PART))
        return _multi_gsm7(units, sum(1 for _ in _gsm7_cuts(gsm7_encode(body))))
    utf16 = encode_ucs2(body)
    units = len(utf16) >> 1
    if units <= _UCS2_SINGLE:
        return _SINGLE_UCS2[units]
    if units == len(body):  # no surrogate pairs
        return _multi_ucs2(units, -(-units // _UCS2_PART))
    return _multi_ucs2(units, sum(1 for _ in _ucs2_cuts(utf16)))


def analyse_binary(octets: int) -> BodyInfo:
    """Octet and SMS count of 8-bit data, which travels as it is."""
    size = _OCTETS_SINGLE if octets <= _OCTETS_SINGLE else _OCTETS_PART
    return BodyInfo(Encoding.BINARY, octets, max(1, -(-octets // size)))


def split_parts(body: str, encoding: Encoding) -> list[str]:
    """Split `body` into the texts of its concatenated-SMS parts, as counted by `analyse`.

    Splitting happens in the encoded form so each part respects the per-part unit limit
    without breaking an escape sequence or a surrogate pair. Raises ValueError if `body`
    cannot be encoded in `encoding`.
    """
    if encoding == Encoding.GSM7:
        septets = gsm7_encode(body)
        if len(septets) <= _GSM7_SINGLE:
            return [body]
        return [gsm7_decode(septets[start:end]) for start, end in _gsm7_cuts(septets)]
    utf16 = encode_ucs2(body)
    if len(utf16) >> 1 <= _UCS2_SINGLE:
        return [body]
    return [decode_ucs2(utf16[2 * start : 2 * end]) for start, end in _ucs2_cuts(utf16)]


def is_gsm7(text: str) -> bool:
    """True if `text` fits the GSM 03.38 default alphabet (basic or extension table)."""
    return _gsm7_units(text) is not None


def _not_gsm7(text: str, index: int) -> ValueError:
    return ValueError(f"character U+{ord(text[index]):04X} at index {index} is not in GSM 03.38")


def gsm7_encode(text: str) -> bytes:
    """Encode to unpacked GSM 03.38 septets, one per octet, extension chars as ESC + code.

    Raises ValueError naming the first character outside the alphabet.
    """
    try:
        packed = codecs.charmap_encode(text, "strict", _PACK_MAP)[0]
    except UnicodeEncodeError as exc:
        raise _not_gsm7(text, exc.start) from None
    if 0 in packed:  # only NUL packs to 0x00 (see _packing_table)
        raise _not_gsm7(text, packed.index(0))
    septets = packed.translate(_PACKED_TO_SEPTET)
    if not septets.isascii():
        for marker, packed_char, escaped in _ESCAPES:
            if marker in septets:
                septets = septets.replace(packed_char, escaped)
    return septets


def gsm7_decode(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets, tolerating what real SMSCs send.

    Bit 7 is ignored, an unknown escape shows the basic-table character and a trailing
    lone ESC is dropped, so decoding never fails.
    """
    if not data.isascii():
        data = data.translate(_MASK_7BIT)
    chunks: list[str] = []
    start = 0
    while (esc := data.find(_ESC, start)) >= 0:
        chunks.append(codecs.charmap_decode(data[start:esc], "strict", GSM7_BASIC)[0])
        if esc + 1 < len(data):
            chunks.append(_ESCAPED_CHAR[data[esc + 1]])
        start = esc + 2
    chunks.append(codecs.charmap_decode(data[start:], "strict", GSM7_BASIC)[0])
    return "".join(chunks)


def decode_ucs2(data: bytes) -> str:
    """Decode SMPP "UCS2" (really UTF-16BE: phones send emoji as surrogate pairs).

    Raises ValueError on an odd trailing byte or an unpaired surrogate.
    """
    return data.decode("utf-16-be")


# A UTF-16 surrogate pair split across two parts of a long message (smpplib's make_parts
# and other clients cut by octets) leaves each part with half a character. Each half is
# kept as a private-use stand-in, U+F000 plus its offset from U+D800 (high halves
# U+F000-F3FF, low U+F400-F7FF), which every store and count handles as one UCS-2 unit;
# the inbox joins a high stand-in ending a part and a low one starting the next.
_HALF_BASE: Final = 0xF000 - 0xD800


def decode_ucs2_part(data: bytes) -> str:
    """A part of a long UCS-2 message: as `decode_ucs2`, a pair's half at an edge kept.

    Raises ValueError on an odd length or an unpaired surrogate inside the part.
    """
    head = tail = ""
    if len(data) >= 2 and 0xDC <= data[0] <= 0xDF:
        head, data = chr((data[0] << 8 | data[1]) + _HALF_BASE), data[2:]
    if len(data) >= 2 and len(data) % 2 == 0 and 0xD8 <= data[-2] <= 0xDB:
        tail, data = chr((data[-2] << 8 | data[-1]) + _HALF_BASE), data[:-2]
    return head + decode_ucs2(data) + tail


def join_ucs2_halves(texts: list[str]) -> str:
    """Join the texts of a long message's parts, mending pairs split at their edges."""
    joined = [texts[0]] if texts else []
    for text in texts[1:]:
        before = joined[-1]
        if (
            before
            and text
            and 0xF000 <= ord(before[-1]) <= 0xF3FF
            and 0xF400 <= ord(text[0]) <= 0xF7FF
        ):
            pair = (chr(ord(before[-1]) - _HALF_BASE) + chr(ord(text[0]) - _HALF_BASE)).encode(
                "utf-16-be", "surrogatepass"
            )
            joined[-1] = before[:-1] + decode_ucs2(pair)
            text = text[1:]
        joined.append(text)
    return "".join(joined)


def encode_ucs2(text: str) -> bytes:
    """Encode as UTF-16BE; raises ValueError if `text` holds a lone surrogate code point."""
    return text.encode("utf-16-be")
