"""Hypothesis strategies for SMPP PDUs, drawn from the vocabulary's own tables.

Every value is valid for its field or TLV (kind, range, max length), so ``Pdu.make``
of a draw always encodes; the codec tests round-trip these and compare them with a
reference codec.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from smpp.pdu import Pdu
from smpp.vocabulary import (
    BODIES,
    LIST_ADDRESS_LEN,
    TLV_TYPES,
    CommandId,
    DistributionList,
    Field,
    Kind,
    SmeAddress,
    TlvType,
    UnsuccessSme,
)

LATIN1_TEXT = st.characters(min_codepoint=1, max_codepoint=255)
U8 = st.integers(0, 0xFF)


def cstring(max_len: int) -> st.SearchStrategy[str]:
    return st.text(LATIN1_TEXT, max_size=max_len - 1)


ADDRESS = cstring(LIST_ADDRESS_LEN)
DEST = st.one_of(st.builds(SmeAddress, U8, U8, ADDRESS), st.builds(DistributionList, ADDRESS))
UNSUCCESS = st.builds(UnsuccessSme, U8, U8, ADDRESS, st.integers(0, 0xFFFFFFFF))

INTS: dict[Kind, st.SearchStrategy[int]] = {
    Kind.INT1: U8,
    Kind.INT2: st.integers(0, 0xFFFF),
    Kind.INT4: st.integers(0, 0xFFFFFFFF),
}
COUNTED = (Kind.OCTETS, Kind.DESTS, Kind.UNSUCCESS)


def field_values(f: Field) -> st.SearchStrategy[Any]:
    if f.kind in INTS:
        return INTS[f.kind]
    if f.kind is Kind.CSTRING:
        return cstring(f.max_len)
    if f.kind is Kind.OCTETS:
        return st.binary(max_size=f.max_len)
    return st.lists(DEST if f.kind is Kind.DESTS else UNSUCCESS, max_size=4)


def tlv_values(t: TlvType) -> st.SearchStrategy[Any]:
    if t.kind in INTS:
        return INTS[t.kind]
    if t.kind is Kind.CSTRING:
        return cstring(t.max_len)
    return st.binary(min_size=t.min_len, max_size=t.max_len)


def params_for(fields: tuple[Field, ...]) -> st.SearchStrategy[dict[str, Any]]:
    # Count fields (the one before counted data) are derived by Pdu.make, so skip them.
    derived = {fields[i - 1].name for i, f in enumerate(fields) if f.kind in COUNTED}
    return st.fixed_dictionaries({f.name: field_values(f) for f in fields if f.name not in derived})


KNOWN_TLV = st.sampled_from(sorted(TLV_TYPES)).flatmap(
    lambda tag: st.tuples(st.just(tag), tlv_values(TLV_TYPES[tag]))
)
UNKNOWN_TLV = st.tuples(
    st.integers(0, 0xFFFF).filter(lambda tag: tag not in TLV_TYPES), st.binary(max_size=40)
)
TLVS = st.lists(st.one_of(KNOWN_TLV, UNKNOWN_TLV), max_size=6).map(dict)


@st.composite
def pdus(draw: st.DrawFn, command_id: CommandId | None = None) -> Pdu:
    """A valid PDU of ``command_id``, or of any command if None."""
    cid = command_id if command_id is not None else draw(st.sampled_from(list(CommandId)))
    return Pdu.make(
        cid,
        draw(st.integers(0, 0xFFFFFFFF)),
        status=draw(st.integers(0, 0xFFFFFFFF)),
        tlvs=draw(TLVS),
        **draw(params_for(BODIES[cid])),
    )
