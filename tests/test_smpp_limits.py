"""What a hostile SMPP peer can make us hold: guesses, sessions, output buffers."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from gateway.config import config_from_dict
from gateway.server.appkeys import SMPP_SERVER
from smpp.pdu import CommandId, CommandStatus, Pdu, encode
from smpp.session import State
from tests.conftest import EVENT_TIMEOUT, running_gateway
from tests.smpp_clients import RawEsme
from tests.test_smpp_notices import scraped
from tests.test_smpp_server import submit_fields

C = CommandId
S = CommandStatus


def bind(sequence: int, password: str) -> bytes:
    pdu = Pdu.make(
        C.bind_transceiver,
        sequence,
        system_id="acme",
        password=password,
        interface_version=0x34,
    )
    return encode(pdu)


async def test_thousands_of_guesses_are_throttled_and_the_right_bind_still_binds(
    config_dict: dict[str, Any],
) -> None:
    # 20 ms spacing (a wait of at most 80 ms): ten concurrent checks overrun it even when
    # a loaded machine spreads their arrival over tens of milliseconds (1 ms did not).
    config_dict["smpp"].update({"failed_bind_delay": "20ms", "max_bind_delay": "20ms"})
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        # Guesses over ten connections at once: checks queue behind each other, and
        # those that would wait too long are refused without being checked.
        guessers = [await RawEsme.connect(gateway.smpp_port) for _ in range(10)]
        for guesser in guessers:
            await guesser.send_bytes(b"".join(bind(seq, "wrong") for seq in range(1, 21)))
        for guesser in guessers:
            for sequence in range(1, 21):
                answer = await guesser.next()
                assert answer.sequence_number == sequence
                assert answer.command_status in (S.ESME_RINVPASWD, S.ESME_RBINDFAIL)
            await guesser.close()
        refused = await scraped(
            gateway, "smsgw_auth_failures_total", interface="smpp", verdict="refused"
        )
        failed = await scraped(
            gateway, "smsgw_auth_failures_total", interface="smpp", verdict="failed"
        )
        assert refused > 0 and refused + failed == 200

    config_dict["smpp"].update({"failed_bind_delay": "1ms", "max_bind_delay": "1ms"})
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        # 2,000 wrong passwords and then the right one, in one write on one connection:
        # each is checked only after the one before it was answered.
        raw = await RawEsme.connect(gateway.smpp_port)
        guesses = b"".join(bind(seq, "wrong") for seq in range(1, 2001))
        await raw.send_bytes(guesses + bind(2001, "acme-pw"))
        for sequence in range(1, 2001):
            answer = await raw.next()
            assert (answer.sequence_number, answer.command_status) == (sequence, S.ESME_RINVPASWD)
        answer = await raw.next()
        assert (answer.sequence_number, answer.command_status) == (2001, S.ESME_ROK)
        submit = await raw.request(Pdu.make(C.submit_sm, 2002, **submit_fields()))
        assert submit.command_status == S.ESME_ROK
        failed_after = await scraped(
            gateway, "smsgw_auth_failures_total", interface="smpp", verdict="failed"
        )
        assert failed_after == 2000
        await raw.close()


async def test_a_full_tenant_is_refused_at_once_and_not_as_a_failed_login(
    config_dict: dict[str, Any],
) -> None:
    config_dict["tenants"][0]["smpp"]["max_sessions"] = 1
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        first = await RawEsme.connect(gateway.smpp_port)
        assert (await first.bind()).command_status == S.ESME_ROK
        second = await RawEsme.connect(gateway.smpp_port)
        await second.send_bytes(bind(1, "acme-pw") + bind(2, "wrong"))
        assert (await second.next()).command_status == S.ESME_RBINDFAIL
        assert (await second.next()).command_status == S.ESME_RBINDFAIL
        assert (
            await scraped(gateway, "smsgw_auth_failures_total", interface="smpp", verdict="failed")
            == 0
        )
        await first.close()
        await second.close()


async def test_an_unbind_with_trailing_octets_still_ends_the_session(
    config_dict: dict[str, Any],
) -> None:
    config_dict["tenants"][0]["smpp"]["max_sessions"] = 2
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        for _ in range(3):
            raw = await RawEsme.connect(gateway.smpp_port)
            assert (await raw.bind()).command_status == S.ESME_ROK
            await raw.send_bytes(struct.pack(">IIII", 20, C.unbind, 0, 2) + b"junk")
            assert (await raw.next()).command_id == C.unbind_resp
            assert await raw.closed_by_peer()
            await raw.close()
        sessions = [await RawEsme.connect(gateway.smpp_port) for _ in range(2)]
        for session in sessions:
            assert (await session.bind()).command_status == S.ESME_ROK
        for session in sessions:
            await session.close()


async def test_a_peer_that_never_reads_cannot_grow_our_output_buffer(
    config_dict: dict[str, Any],
) -> None:
    limit = 512 * 1024
    count = 30_000  # their submit_sm_resp alone are over a megabyte
    async with running_gateway(config_from_dict(config_dict)) as gateway:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", gateway.smpp_port))
        raw = RawEsme(*await asyncio.open_connection(sock=sock))
        assert (await raw.bind()).command_status == S.ESME_ROK
        [connection] = [
            c for c in gateway.app[SMPP_SERVER].connections if c.state is not State.OPEN
        ]
        assert connection.transport is not None
        server_socket = connection.transport.get_extra_info("socket")
        server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        submits = (
            Pdu.make(C.submit_sm, seq, **submit_fields(to=f"4670{seq:07d}", registered_delivery=1))
            for seq in range(2, 2 + count)
        )
        raw.writer.write(b"".join(encode(pdu) for pdu in submits))  # and never read again

        # Sample the gateway's buffer for this peer until it stops reading from it with
        # nothing in the pipeline (back-pressure), or the buffer passes the limit.
        largest = 0
        deadline = loop.time() + EVENT_TIMEOUT
        while largest <= limit and loop.time() < deadline:
            largest = max(largest, connection.transport.get_write_buffer_size())
            if not connection.transport.is_reading() and connection.pending_submits == 0:
                break
            await asyncio.sleep(0.01)
        largest = max(largest, connection.transport.get_write_buffer_size())
        assert not connection.transport.is_reading()
        assert largest <= limit
        raw.writer.transport.abort()
