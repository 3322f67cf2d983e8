"""SMPP as real ESMEs speak it (issue 12): addresses, error bodies, receipts, ids, logs, TLS.

Each test drives the real gateway over real sockets; the few pure tables sit next
to the socket test of the same behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import aiosmpplib
import pytest
import trustme

from gateway.config import (
    AddressPolicy,
    MessageIdFormat,
    SmppCredentials,
    TenantConfig,
    config_from_dict,
)
from gateway.logs import FIELDS, describe
from gateway.server.appkeys import SMPP_SERVER
from smpp.bodies import DeliverSm, SubmitSmResp
from smpp.pdu import CommandId, CommandStatus, Pdu, Tag, decode
from smpp.translate import DecimalId, read_id, recipient, source, wire_id
from tests.conftest import base_config, merged, running_gateway
from tests.smpp_clients import RawEsme

C = CommandId
S = CommandStatus
TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_NETWORK, TON_ALPHANUMERIC = 0, 1, 2, 3, 5


def tenants_config(tmp_path: Path, **smpp: Any) -> dict[str, Any]:
    """The base config, the second tenant (no default_country) with these ``smpp`` keys.

    Its senders include a short code, which a config could not list before issue 12.
    """
    config = base_config(tmp_path)
    other = config["tenants"][1]
    other["senders"] = ["Other", "12345"]
    other["smpp"] = {**other["smpp"], **smpp}
    return config


def submit(to: str, dest_ton: int, sender: str = "Other", source_ton: int = 5) -> Pdu:
    return Pdu.make(
        C.submit_sm,
        2,
        source_addr_ton=source_ton,
        source_addr=sender,
        dest_addr_ton=dest_ton,
        dest_addr_npi=1,
        destination_addr=to,
        short_message=b"hello",
    )


async def submit_as_other(port: int, *pdus: Pdu) -> list[Pdu]:
    raw = await RawEsme.connect(port)
    try:
        assert (await raw.bind("other", "other-pw")).command_status == S.ESME_ROK
        return [await raw.request(pdu) for pdu in pdus]
    finally:
        await raw.close()


# --- 1. TON/NPI as real ESMEs send them ------------------------------------------------

# What Kannel and TON 0 clients send, for a tenant without default_country.
BARE_DIGITS = [
    submit("46701234567", TON_NATIONAL),  # Kannel's `to=46701234567`
    submit("46701234567", TON_UNKNOWN),  # TON 0 / NPI 1 clients
    submit("46701234567", TON_INTERNATIONAL, "12345", TON_NETWORK),  # a short-code sender
    submit("46701234567", TON_INTERNATIONAL, "12345", TON_UNKNOWN),
]


async def test_lenient_tenant_takes_bare_international_digits_and_short_codes(
    tmp_path: Path,
) -> None:
    async with running_gateway(config_from_dict(tenants_config(tmp_path))) as gateway:
        answers = await submit_as_other(gateway.smpp_port, *BARE_DIGITS)
        assert [a.command_status for a in answers] == [S.ESME_ROK] * len(BARE_DIGITS)
        for answer, pdu in zip(answers, BARE_DIGITS, strict=True):
            message_id = answer.params["message_id"]
            status, document = await gateway.get_json(
                f"/v1/messages/{message_id}", key="other-test-key"
            )
            assert status == 200
            assert document["to"] == "+46701234567"
            assert document["from"] == (
                "12345" if pdu.params["source_addr"] == "12345" else "Other"
            )


async def test_strict_tenant_refuses_what_its_ton_does_not_say(tmp_path: Path) -> None:
    config = config_from_dict(tenants_config(tmp_path, address_policy="strict"))
    async with running_gateway(config) as gateway:
        answers = await submit_as_other(
            gateway.smpp_port,
            submit("46701234567", TON_NATIONAL),  # national, and no default_country
            submit("46701234567", TON_UNKNOWN),
            submit("46701234567", TON_INTERNATIONAL, "46700000001", TON_UNKNOWN),
            submit("46701234567", TON_INTERNATIONAL, "12345", TON_NETWORK),
            submit("46701234567", TON_INTERNATIONAL),
        )
    assert [a.command_status for a in answers] == [
        S.ESME_RINVDSTADR,
        S.ESME_RINVDSTADR,
        S.ESME_RINVSRCADR,
        S.ESME_ROK,
        S.ESME_ROK,
    ]


LENIENT_SE = TenantConfig(id="se", senders=("Acme",), default_country="SE")
LENIENT_US = TenantConfig(id="us", senders=("Acme",), default_country="US")
STRICT_SE = TenantConfig(
    id="strict",
    senders=("Acme",),
    default_country="SE",
    smpp=SmppCredentials("strict", "pw", address_policy=AddressPolicy.STRICT),
)


@pytest.mark.parametrize(
    ("tenant", "wire", "ton", "read"),
    [
        (LENIENT_SE, "46701234567", TON_UNKNOWN, "+46701234567"),
        (LENIENT_SE, "0701234567", TON_UNKNOWN, "+46701234567"),  # national, trunk prefix
        (LENIENT_SE, "701234567", TON_NATIONAL, "+46701234567"),
        (LENIENT_SE, "0046701234567", TON_NATIONAL, "+46701234567"),
        # Possible both ways ("+20 25550123" is Egypt): the valid reading wins.
        (LENIENT_US, "2025550123", TON_UNKNOWN, "+12025550123"),
        (LENIENT_SE, "Acme", TON_UNKNOWN, "Acme"),  # no number: the pipeline refuses it
        (LENIENT_SE, "46701234567", TON_INTERNATIONAL, "+46701234567"),
        (LENIENT_SE, "46701234567", 4, None),
        (STRICT_SE, "0701234567", TON_NATIONAL, "0701234567"),  # for the default_country
        (STRICT_SE, "46701234567", TON_UNKNOWN, None),
    ],
)
def test_recipient_reading(tenant: TenantConfig, wire: str, ton: int, read: str | None) -> None:
    assert recipient(wire, ton, tenant) == read


@pytest.mark.parametrize(
    ("tenant", "wire", "ton", "read"),
    [
        (LENIENT_SE, "Acme", TON_ALPHANUMERIC, "Acme"),
        (LENIENT_SE, "Acme", TON_UNKNOWN, "Acme"),
        (STRICT_SE, "Acme", TON_UNKNOWN, None),
        (STRICT_SE, "12345", TON_NETWORK, "12345"),
        (STRICT_SE, "12345", TON_UNKNOWN, "12345"),
        (LENIENT_SE, "12345", TON_UNKNOWN, "12345"),
        (LENIENT_SE, "46700000001", TON_UNKNOWN, "+46700000001"),
    ],
)
def test_source_reading(tenant: TenantConfig, wire: str, ton: int, read: str | None) -> None:
    assert source(wire, ton, tenant) == read


# --- 2. error responses every client can parse -----------------------------------------


def aiosmpplib_parse(frame: bytes) -> Any:
    """What aiosmpplib makes of a response, as its ESME does with what it reads."""
    header = aiosmpplib.SmppMessage.parse_header(frame)
    parser = {
        C.submit_sm_resp: aiosmpplib.SubmitSmResp,
        C.bind_transceiver_resp: aiosmpplib.BindTransceiverResp,
    }[C(header.smpp_command)]
    return parser.from_pdu(frame, header)


async def refused_bind_and_submit(port: int) -> tuple[bytes, bytes]:
    """The bytes of a refused bind (wrong password) and of a refused submit_sm."""
    raw = await RawEsme.connect(port)
    try:
        await raw.send(Pdu.make(C.bind_transceiver, 1, system_id="other", password="wrong"))
        refused_bind = await raw.next_frame()
        assert (await raw.bind("other", "other-pw", sequence=2)).command_status == S.ESME_ROK
        await raw.send(submit("12", TON_INTERNATIONAL))
        return refused_bind, await raw.next_frame()
    finally:
        await raw.close()


async def test_refused_bind_and_submit_parse_in_aiosmpplib_by_default(tmp_path: Path) -> None:
    async with running_gateway(config_from_dict(tenants_config(tmp_path))) as gateway:
        bind, submit_resp = await refused_bind_and_submit(gateway.smpp_port)
    # Golden bytes: system_id "smsgw" and a message_id of one NUL.
    assert bind == bytes.fromhex("00000016 80000009 0000000e 00000001") + b"smsgw\0"
    assert submit_resp == bytes.fromhex("00000011 80000004 0000000b 00000002 00")
    parsed_bind = aiosmpplib_parse(bind)
    assert (parsed_bind.command_status, parsed_bind.system_id) == (S.ESME_RINVPASWD, "smsgw")
    parsed_submit = aiosmpplib_parse(submit_resp)
    assert (parsed_submit.command_status, parsed_submit.message_id) == (S.ESME_RINVDSTADR, "")


async def test_a_tenant_may_ask_for_spec_empty_error_bodies(tmp_path: Path) -> None:
    config = config_from_dict(tenants_config(tmp_path, error_body="empty"))
    async with running_gateway(config) as gateway:
        bind, submit_resp = await refused_bind_and_submit(gateway.smpp_port)
    assert bind == bytes.fromhex("00000010 80000009 0000000e 00000001")
    assert submit_resp == bytes.fromhex("00000010 80000004 0000000b 00000002")
    # Why "nul" is the default: aiosmpplib cannot read a bind response without a body.
    with pytest.raises(ValueError):
        aiosmpplib_parse(bind)


# --- 3. receipts naive parsers handle; ids as clients echo them ------------------------

SLOW = {"prefix": "+4670555", "outcome": "delivered", "latency": ["1h", "1h"]}


async def receipt_for(raw: RawEsme, pdu: Pdu) -> tuple[str, bytes]:
    """Submit with registered_delivery; the submit_sm_resp's id and the receipt's bytes."""
    pdu.params["registered_delivery"] = 1
    answer = await raw.request(pdu)
    assert answer.command_status == S.ESME_ROK
    frame = await raw.next_frame()
    receipt = decode(frame)
    assert receipt.command_id is C.deliver_sm
    await raw.send(Pdu.make(C.deliver_sm_resp, receipt.sequence_number, message_id=""))
    return answer.body(SubmitSmResp)["message_id"], frame


async def test_receipt_id_tlv_comes_last_and_echoed_ids_find_the_message(
    tmp_path: Path,
) -> None:
    config = merged(tenants_config(tmp_path), {"simulator": {"rules": [SLOW]}})
    async with running_gateway(config_from_dict(config)) as gateway:
        raw = await RawEsme.connect(gateway.smpp_port)
        assert (await raw.bind("other", "other-pw")).command_status == S.ESME_ROK
        message_id, frame = await receipt_for(raw, submit("46701234567", TON_INTERNATIONAL))
        tail = bytes.fromhex("0427 0001 02 0423 0003 030000 001e 0015") + message_id.encode()
        assert frame.endswith(tail + b"\0")  # a parser reading 65 octets gets the id

        # As Jasmin reports it: upper case, leading zeros stripped.
        echoed = message_id.upper().lstrip("0")
        assert echoed != message_id and len(echoed) < 20
        status, document = await gateway.get_json(f"/v1/messages/{echoed}", key="other-test-key")
        assert (status, document["id"]) == (200, message_id)
        query = await raw.request(Pdu.make(C.query_sm, 5, message_id=echoed, source_addr="Other"))
        assert query.command_status == S.ESME_ROK
        assert query.params["message_id"] == message_id

        pending = await raw.request(submit("46705551234", TON_INTERNATIONAL))
        pending_id = pending.body(SubmitSmResp)["message_id"].upper().lstrip("0")
        replace = await raw.request(
            Pdu.make(C.replace_sm, 6, message_id=pending_id, short_message=b"changed")
        )
        cancel = await raw.request(Pdu.make(C.cancel_sm, 7, message_id=pending_id))
        assert (replace.command_status, cancel.command_status) == (S.ESME_ROK, S.ESME_ROK)
        await raw.close()


async def test_decimal_message_ids_for_clients_that_read_numbers(tmp_path: Path) -> None:
    config = merged(
        tenants_config(tmp_path, message_id_format="decimal"),
        {"simulator": {"rules": [SLOW]}},
    )
    async with running_gateway(config_from_dict(config)) as gateway:
        raw = await RawEsme.connect(gateway.smpp_port)
        assert (await raw.bind("other", "other-pw")).command_status == S.ESME_ROK
        decimal_id, frame = await receipt_for(raw, submit("46701234567", TON_INTERNATIONAL))
        assert decimal_id.isdigit() and int(decimal_id) < 1 << 63
        receipt = decode(frame)
        assert receipt.tlvs[Tag.receipted_message_id] == decimal_id
        assert receipt.body(DeliverSm)["short_message"].startswith(f"id:{decimal_id} ".encode())

        status, listing = await gateway.get_json("/v1/messages", key="other-test-key")
        assert status == 200
        (document,) = listing["messages"]
        assert wire_id(document["id"], MessageIdFormat.DECIMAL) == decimal_id

        query = await raw.request(Pdu.make(C.query_sm, 5, message_id=decimal_id))
        assert (query.command_status, query.params["message_id"]) == (S.ESME_ROK, decimal_id)
        assert query.params["message_state"] == 2  # DELIVERED

        pending = await raw.request(submit("46705551234", TON_INTERNATIONAL))
        pending_id = pending.body(SubmitSmResp)["message_id"]
        cancel = await raw.request(Pdu.make(C.cancel_sm, 6, message_id=pending_id))
        assert cancel.command_status == S.ESME_ROK
        status, cancelled = await gateway.get_json(
            "/v1/messages?status=deleted", key="other-test-key"
        )
        assert wire_id(cancelled["messages"][0]["id"], MessageIdFormat.DECIMAL) == pending_id
        # A decimal id of no message of the tenant finds none.
        unknown = await raw.request(Pdu.make(C.query_sm, 7, message_id=str(int(pending_id) + 1)))
        assert unknown.command_status == S.ESME_RQUERYFAIL
        await raw.close()


def test_decimal_ids_read_back_to_their_millisecond_boot_and_sequence() -> None:
    message_id = "018f3a2b4c5d" + "abcd" + "0102"
    read = read_id(wire_id(message_id, MessageIdFormat.DECIMAL), MessageIdFormat.DECIMAL)
    assert isinstance(read, DecimalId)
    assert read.candidate("abcd") == message_id
    assert read.candidate("abce") is None  # other boot bits: another message
    assert read_id("1A230C47ED7773C0000", MessageIdFormat.HEX) == "01a230c47ed7773c0000"


# --- 4. a log line for every refused PDU -----------------------------------------------


async def test_every_refused_pdu_is_logged_without_address_or_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="smpp.server")
    secret_to, secret_body = "4670123", b"a body never logged"
    async with running_gateway(config_from_dict(tenants_config(tmp_path))) as gateway:
        raw = await RawEsme.connect(gateway.smpp_port)
        assert (await raw.bind("other", "wrong")).command_status == S.ESME_RINVPASWD
        assert (await raw.bind("other", "other-pw", sequence=2)).command_status == S.ESME_ROK
        refused = submit(secret_to, TON_INTERNATIONAL)
        refused.params["short_message"] = secret_body
        assert (await raw.request(refused)).command_status == S.ESME_RINVDSTADR
        early = submit("46701234567", TON_INTERNATIONAL)
        early.params["data_coding"] = 0x07  # refused before the pipeline
        assert (await raw.request(early)).command_status == S.ESME_RSUBMITFAIL
        await raw.close()
    refusals = [
        (r, getattr(r, FIELDS))
        for r in caplog.records
        if r.getMessage() in ("smpp.bind_refused", "smpp.refused")
    ]
    lines = {(r.getMessage(), r.levelno, f["command"], f["status"]) for r, f in refusals}
    assert lines == {
        ("smpp.bind_refused", logging.INFO, "bind_transceiver_resp", "ESME_RINVPASWD"),
        ("smpp.refused", logging.DEBUG, "submit_sm_resp", "ESME_RINVDSTADR"),
        ("smpp.refused", logging.DEBUG, "submit_sm_resp", "ESME_RSUBMITFAIL"),
    }
    sessions = {f["session"] for _, f in refusals}
    assert len(sessions) == 1 and isinstance(sessions.pop(), int)
    logged = "\n".join(f"{r.getMessage()} {describe(r)}" for r in caplog.records)
    for needle in (secret_to, secret_body.decode(), "other-pw", "wrong"):
        assert needle not in logged
    # The peer's address (the listener's own host is logged at start).
    assert not any("127.0.0.1" in str(describe(r)) for r, _ in refusals)


# --- 5. SMPP over TLS -------------------------------------------------------------------


async def test_tls_listener_binds_verified_clients_and_closes_plain_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    certificate.private_key_pem.write_to_path(str(key_file))
    caplog.set_level(logging.INFO)
    tls = {"port": 0, "cert_file": str(cert_file), "key_file": str(key_file)}
    config = merged(tenants_config(tmp_path), {"smpp": {"tls": tls}})
    verifying = ssl.create_default_context()
    authority.configure_trust(verifying)
    async with running_gateway(config_from_dict(config)) as gateway:
        tls_port = gateway.app[SMPP_SERVER].tls_port
        assert tls_port not in (0, gateway.smpp_port)
        raw = RawEsme(*await asyncio.open_connection("127.0.0.1", tls_port, ssl=verifying))
        assert (await raw.bind("other", "other-pw")).command_status == S.ESME_ROK
        answer = await raw.request(submit("46701234567", TON_INTERNATIONAL))
        assert answer.command_status == S.ESME_ROK
        await raw.close()

        # A plain-TCP ESME on the TLS port is closed, unanswered, and counted.
        plain = await RawEsme.connect(tls_port)
        await plain.send(Pdu.make(C.bind_transceiver, 1, system_id="other", password="other-pw"))
        assert await plain.closed_by_peer()
        await plain.close()
        async with gateway.http.get(f"{gateway.url}/metrics") as response:
            assert "smsgw_smpp_tls_failures_total 1.0" in await response.text()
        # The certificate is what a client checks: without trust in its CA, no session.
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", tls_port, ssl=ssl.create_default_context())
    assert "smpp.tls_failed" in [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
