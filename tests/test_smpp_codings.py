"""Every data_coding a client sends, over a real socket: to the handset's inbox, or refused."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import smpplib.gsm

from gateway.config import config_from_dict
from gateway.encoding import gsm7_encode
from gateway.logs import FIELDS
from smpp.pdu import CommandId, CommandStatus, Pdu
from tests.conftest import EVENT_TIMEOUT, RunningGateway, running_gateway
from tests.smpp_clients import RawEsme, smpplib_esme
from tests.test_smpp_server import submit_fields

C = CommandId
S = CommandStatus

# (data_coding, short_message, inbox body, binary, class)
ROUND_TRIPS: list[tuple[int, bytes, str, bool, int | None]] = [
    (0x00, gsm7_encode("@£ {ok}"), "@£ {ok}", False, None),
    (0x01, b"Hi\r\nthere ~", "Hi\r\nthere ~", False, None),
    (0x02, b"\x00\xffAB", "00ff4142", True, None),
    (0x03, "café".encode("latin-1"), "café", False, None),
    (0x04, b"\x06\x05\x04", "060504", True, None),
    (0x08, "日本 🙂".encode("utf-16-be"), "日本 🙂", False, None),
    (0xF0, gsm7_encode("flash!"), "flash!", False, 0),
    (0xF1, gsm7_encode("class 1"), "class 1", False, 1),
    (0xF2, gsm7_encode("to the SIM"), "to the SIM", False, 2),
    (0xF3, gsm7_encode("class 3"), "class 3", False, 3),
    (0xF5, b"\x01\x02", "0102", True, 1),
    (0xF6, b"\xca\xfe", "cafe", True, 2),
    (0x10, gsm7_encode("group flash"), "group flash", False, 0),
    (0x15, b"\xbe\xef", "beef", True, 1),
    (0x1A, "Ω class 2".encode("utf-16-be"), "Ω class 2", False, 2),
]


async def submit(raw: RawEsme, sequence: int, **fields: Any) -> Pdu:
    return await raw.request(Pdu.make(C.submit_sm, sequence, **submit_fields(**fields)))


async def inbox_of(gateway: RunningGateway, number: str) -> list[dict[str, Any]]:
    status, inbox = await gateway.get_json(f"/v1/simulator/handsets/{number}/messages")
    assert status == 200
    messages: list[dict[str, Any]] = inbox["messages"]
    return messages


async def test_every_data_coding_reaches_the_inbox(gateway: RunningGateway) -> None:
    raw = await RawEsme.connect(gateway.smpp_port)
    assert (await raw.bind()).command_status == S.ESME_ROK
    finals = gateway.finals()
    ids = []
    for index, (coding, data, *_) in enumerate(ROUND_TRIPS):
        answer = await submit(
            raw, index + 2, to=f"467012300{index:02d}", text=data, data_coding=coding
        )
        assert answer.command_status == S.ESME_ROK, hex(coding)
        ids.append(answer.params["message_id"])
    for _ in ROUND_TRIPS:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    await raw.close()
    for index, (coding, _, body, binary, kind) in enumerate(ROUND_TRIPS):
        [entry] = await inbox_of(gateway, f"+467012300{index:02d}")
        shown = (entry["body"], entry["binary"], entry["class"], entry["flash"])
        assert shown == (body, binary, kind, kind == 0), hex(coding)
        _, message = await gateway.get_json(f"/v1/messages/{ids[index]}")
        assert (message["class"], message["flash"]) == (kind, kind == 0), hex(coding)
        assert (message["encoding"] == "binary") == binary, hex(coding)


REFUSALS = [
    (0x01, b"\x00 at"),  # node-smpp's default: GSM 03.38 '@' labelled IA5
    (0x01, b"\x1b<"),  # a GSM escape labelled IA5
    (0x01, b"caf\xe9"),
    (0x05, b"JIS"),
    (0x0E, b"KS C 5601"),
    (0x1C, b"reserved alphabet"),
    (0x08, b"\xd8\x3d"),  # a lone surrogate, in no part of a long message
]


async def test_unsupported_or_garbled_codings_are_refused_with_a_log_line(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smpp.translate")
    raw = await RawEsme.connect(gateway.smpp_port)
    await raw.bind()
    for sequence, (coding, data) in enumerate(REFUSALS, start=2):
        answer = await submit(raw, sequence, text=data, data_coding=coding)
        assert answer.command_status == S.ESME_RSUBMITFAIL, hex(coding)
    await raw.close()
    named = [r.__dict__.get(FIELDS, {}) for r in caplog.records if r.msg == "smpp.coding_refused"]
    assert [f.get("data_coding") for f in named] == [f"{c:#04x}" for c, _ in REFUSALS]
    assert await inbox_of(gateway, "+46701234567") == []


@pytest.mark.parametrize(
    ("default_coding", "data", "body"),
    [("latin1", b"caf\xe9", "café"), ("ascii", b"plain", "plain"), ("gsm", b"\x00", "@")],
)
async def test_a_tenant_chooses_what_data_coding_0_means(
    config_dict: dict[str, Any], default_coding: str, data: bytes, body: str
) -> None:
    config_dict["tenants"][0]["smpp"]["default_coding"] = default_coding
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        finals = gateway.finals()
        raw = await RawEsme.connect(gateway.smpp_port)
        await raw.bind()
        assert (await submit(raw, 2, text=data)).command_status == S.ESME_ROK
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
        if default_coding == "ascii":  # as data_coding 1: a control octet is refused
            assert (await submit(raw, 3, text=b"\x00")).command_status == S.ESME_RSUBMITFAIL
        await raw.close()
        assert [m["body"] for m in await inbox_of(gateway, "+46701234567")] == [body]


async def test_an_emoji_split_between_ucs2_parts_survives(gateway: RunningGateway) -> None:
    """smpplib cuts a long UCS-2 message by octets, through a surrogate pair."""
    text = "ж" * 66 + "😀" + "ok" * 40
    parts, data_coding, esm_class = smpplib.gsm.make_parts(text)
    assert 0xD8 <= parts[0][-2] <= 0xDB  # the first part ends with half the emoji
    finals = gateway.finals()
    async with smpplib_esme(gateway.smpp_port) as esme:
        for part in parts:
            await esme.send(
                **submit_fields(text=part, data_coding=data_coding, esm_class=esm_class)
            )
        responses = [await esme.next("submit_sm_resp") for _ in parts]
        assert [r.status for r in responses] == [S.ESME_ROK] * len(parts)
    for _ in parts:
        await asyncio.wait_for(finals.get(), EVENT_TIMEOUT)
    [entry] = await inbox_of(gateway, "+46701234567")
    assert (entry["body"], entry["parts_missing"]) == (text, 0)
