"""The TypedDicts of smpp.bodies agree with BODIES, and Pdu.body hands them out."""

from __future__ import annotations

import typing

import pytest

import smpp.bodies
from smpp.bodies import BODY_TYPES, DeliverSm, SubmitMulti, SubmitSm
from smpp.pdu import BODIES, CommandId, DistributionList, Kind, Pdu, SmeAddress, UnsuccessSme

KIND_TYPES: dict[Kind, object] = {
    Kind.INT1: int,
    Kind.INT2: int,
    Kind.INT4: int,
    Kind.CSTRING: str,
    Kind.OCTETS: bytes,
    Kind.DESTS: tuple[SmeAddress | DistributionList, ...],
    Kind.UNSUCCESS: tuple[UnsuccessSme, ...],
}


@pytest.mark.parametrize("cid", list(CommandId), ids=lambda c: c.name)
def test_each_body_type_matches_its_table(cid: CommandId) -> None:
    hints = typing.get_type_hints(BODY_TYPES[cid])
    assert list(hints) == [f.name for f in BODIES[cid]]  # same keys, in wire order
    assert hints == {f.name: KIND_TYPES[f.kind] for f in BODIES[cid]}


def test_every_command_has_a_body_type_and_every_type_is_used() -> None:
    assert set(BODY_TYPES) == set(CommandId)
    declared = {
        value
        for value in vars(smpp.bodies).values()
        if typing.is_typeddict(value) and value.__module__ == "smpp.bodies"
    }
    assert declared == set(BODY_TYPES.values())


def test_body_is_params_typed_and_refuses_another_commands_type() -> None:
    pdu = Pdu.make(CommandId.deliver_sm, 1, short_message=b"hi")
    assert pdu.body(DeliverSm) is pdu.params
    assert pdu.body(SubmitSm)["short_message"] == b"hi"  # one layout, two names
    with pytest.raises(TypeError, match="deliver_sm body is not SubmitMulti"):
        pdu.body(SubmitMulti)
