"""How a text travels as SMS: each part's characters, units and encoding, and why.

`breakdown` is pure and shared by ``GET /v1/messages/{id}/segments`` (a stored body)
and ``POST /v1/segments`` (a draft), so a preview and the accepted message never
disagree; both count through `gateway.encoding` as the pipeline does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.encoding import (
    Encoding,
    analyse,
    analyse_binary,
    encode_ucs2,
    gsm7_encode,
    is_gsm7,
    split_parts,
)

# 8-bit data in hex: two characters per octet, 134 octets per part once a UDH is needed.
_HEX_SINGLE = 280
_HEX_PART = 268
# A concatenation UDH with an 8-bit reference: 05 00 03 ref total seq.
CONCATENATION_UDH_OCTETS = 6


@dataclass(frozen=True, slots=True)
class Segment:
    """One SMS of a text: ``units`` are septets (GSM 03.38), UTF-16 units or octets."""

    seq: int
    total: int
    text: str
    units: int
    # Characters of this part outside GSM 03.38, in order of first appearance.
    forcing_ucs2: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Breakdown:
    encoding: Encoding
    units: int
    segments: tuple[Segment, ...]
    # Every character that made the text UCS-2, once each, in order of first appearance.
    forcing_ucs2: tuple[str, ...]


def breakdown(body: str, *, binary: bool = False) -> Breakdown:
    """The parts ``body`` travels as. Raises ValueError on a lone surrogate, as `analyse` does."""
    if binary:
        info = analyse_binary(len(body) // 2)
        size = _HEX_SINGLE if len(body) <= _HEX_SINGLE else _HEX_PART
        texts = [body[i : i + size] for i in range(0, len(body), size)] or [""]
        return Breakdown(
            info.encoding,
            info.units,
            _numbered([(text, len(text) // 2, ()) for text in texts]),
            (),
        )
    info = analyse(body)
    texts = split_parts(body, info.encoding)
    if info.encoding is Encoding.GSM7:
        gsm_parts = [(text, len(gsm7_encode(text)), ()) for text in texts]
        return Breakdown(info.encoding, info.units, _numbered(gsm_parts), ())
    ucs2_parts = [(text, len(encode_ucs2(text)) // 2, _forcing(text)) for text in texts]
    return Breakdown(info.encoding, info.units, _numbered(ucs2_parts), _forcing(body))


def _forcing(text: str) -> tuple[str, ...]:
    """The distinct characters of ``text`` that GSM 03.38 cannot carry."""
    return tuple(char for char in dict.fromkeys(text) if not is_gsm7(char))


def _numbered(parts: Sequence[tuple[str, int, tuple[str, ...]]]) -> tuple[Segment, ...]:
    return tuple(
        Segment(seq, len(parts), text, units, forcing)
        for seq, (text, units, forcing) in enumerate(parts, start=1)
    )
