"""The SMPP server driven by the real smpplib client (and raw sockets for abuse)."""

from __future__ import annotations

from typing import Any

import smpplib.consts
import smpplib.gsm

from smpp.pdu import CommandId, CommandStatus, Pdu
from tests.conftest import RunningGateway
from tests.smpp_clients import RawEsme, smpplib_esme

C = CommandId
S = CommandStatus
INTERNATIONAL = smpplib.consts.SMPP_TON_INTL
ALPHANUMERIC = smpplib.consts.SMPP_TON_ALNUM
DELIVERY_RECEIPT = 0x04


def submit_fields(to: str = "46701234567", text: bytes = b"hello", **extra: Any) -> dict[str, Any]:
    return {
        "source_addr_ton": ALPHANUMERIC,
        "source_addr": "Acme",
        "dest_addr_ton": INTERNATIONAL,
        "dest_addr_npi": smpplib.consts.SMPP_NPI_ISDN,
        "destination_addr": to,
        "short_message": text,
        **extra,
    }


async def test_long_ucs2_message_receipts_query_and_cancel(gateway: RunningGateway) -> None:
    text = "Привет, это длинное сообщение! " * 6  # 186 UCS-2 characters: three parts
    parts, data_coding, esm_class = smpplib.gsm.make_parts(text)
    assert len(parts) == 3
    async with smpplib_esme(gateway.smpp_port) as esme:
        for part in parts:
            await esme.send(
                **submit_fields(
                    text=part, data_coding=data_coding, esm_class=esm_class, registered_delivery=1
                )
            )
        responses = [await esme.next("submit_sm_resp") for _ in parts]
        assert all(r.status == S.ESME_ROK for r in responses)
        ids = [r.message_id.decode() for r in responses]
        assert len(set(ids)) == 3

        receipts = [await esme.next("deliver_sm") for _ in parts]
        for receipt in receipts:
            assert receipt.esm_class == DELIVERY_RECEIPT
            assert b"stat:DELIVRD" in receipt.short_message
            assert receipt.receipted_message_id.decode() in ids
            assert receipt.short_message.startswith(
                f"id:{receipt.receipted_message_id.decode()}".encode()
            )
            assert receipt.message_state == 2
        assert {r.receipted_message_id.decode() for r in receipts} == set(ids)

        await esme.send(
            command="query_sm", message_id=ids[0], source_addr_ton=ALPHANUMERIC, source_addr="Acme"
        )
        query = await esme.next("query_sm_resp")
        assert (query.status, query.message_state) == (S.ESME_ROK, 2)

    # smpplib has no cancel_sm: a second session of the tenant sends it with our codec.
    raw = await RawEsme.connect(gateway.smpp_port)
    assert (await raw.bind()).command_status == S.ESME_ROK
    cancel = await raw.request(
        Pdu.make(
            C.cancel_sm, 2, message_id=ids[0], source_addr_ton=ALPHANUMERIC, source_addr="Acme"
        )
    )
    assert (cancel.command_id, cancel.command_status) == (C.cancel_sm_resp, S.ESME_RCANCELFAIL)
    await raw.close()

    status, inbox = await gateway.get_json("/v1/simulator/handsets/+46701234567/messages")
    assert status == 200
    [message] = inbox["messages"]
    assert message["body"] == text
    assert sorted(message["message_ids"]) == sorted(ids)
    assert message["parts_missing"] == 0
