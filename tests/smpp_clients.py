"""SMPP clients for tests: the real smpplib client in a thread, and a raw socket ESME.

smpplib is blocking: it binds and sends from a worker thread, and a listener
thread reads everything the gateway sends; PDUs cross to the event loop through
an asyncio.Queue, so tests await them with a timeout instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from smpp.framer import Framer
from smpp.pdu import CommandId, CommandStatus, Pdu, decode, encode

TIMEOUT = 10.0


class SmpplibEsme:
    """smpplib's Client with its replies and deliveries surfaced as awaitable events."""

    def __init__(self, port: int) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=30, allow_unknown_opt_params=True
        )
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.backlog: list[Any] = []
        self.window: threading.Semaphore | None = None
        self.client.set_message_sent_handler(self._on_event)
        self.client.set_message_received_handler(self._on_event)
        self.client.set_query_resp_handler(self._on_event)
        self.client.set_error_pdu_handler(self._on_error)
        self._listener: threading.Thread | None = None

    def _on_event(self, pdu: Any = None, **_: Any) -> None:
        if self.window is not None and pdu.command == "submit_sm_resp":
            self.window.release()
        self.loop.call_soon_threadsafe(self.events.put_nowait, pdu)

    def _on_error(self, pdu: Any) -> None:
        """smpplib calls this before the regular handler of an error response: no duplicates."""
        if pdu.command not in ("submit_sm_resp", "query_sm_resp"):
            self._on_event(pdu)

    async def bind(
        self, kind: str = "transceiver", system_id: str = "acme", password: str = "acme-pw"
    ) -> None:
        await asyncio.to_thread(self.client.connect)
        bind = getattr(self.client, f"bind_{kind}")
        await asyncio.to_thread(bind, system_id=system_id, password=password)
        self._listener = threading.Thread(target=self._listen, daemon=True)
        self._listener.start()

    def _listen(self) -> None:
        with contextlib.suppress(Exception):
            self.client.listen()

    async def send(self, **fields: Any) -> Any:
        """Send a submit_sm (or any PDU given as ``command=``) without waiting for its answer."""
        command = fields.pop("command", "submit_sm")
        pdu = smpplib.smpp.make_pdu(command, client=self.client, **fields)
        await asyncio.to_thread(self.client.send_pdu, pdu)
        return pdu

    async def next(self, command: str | None = None) -> Any:
        """The next PDU from the gateway (of ``command``; others stay for later calls)."""
        for index, pdu in enumerate(self.backlog):
            if command is None or pdu.command == command:
                return self.backlog.pop(index)
        while True:
            pdu = await asyncio.wait_for(self.events.get(), TIMEOUT)
            if command is None or pdu.command == command:
                return pdu
            self.backlog.append(pdu)

    async def unbind(self) -> None:
        """Send unbind; the gateway answers and closes, which ends the listener thread."""
        await self.send(command="unbind")
        assert self._listener is not None
        await asyncio.to_thread(self._listener.join, TIMEOUT)
        assert not self._listener.is_alive(), "the gateway did not close after unbind"

    def close(self) -> None:
        sock = self.client._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                # shutdown, unlike close, wakes the listener thread blocked in recv.
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.client.disconnect()
        if sock is not None:
            sock.close()  # after an unbind or a refused bind smpplib leaves it open
        if self._listener is not None:
            self._listener.join(TIMEOUT)


@contextlib.asynccontextmanager
async def smpplib_esme(
    port: int, kind: str = "transceiver", **credentials: str
) -> AsyncIterator[SmpplibEsme]:
    esme = SmpplibEsme(port)
    await esme.bind(kind, **credentials)
    try:
        yield esme
    finally:
        esme.close()


class RawEsme:
    """A socket that speaks our own codec, for what no well-behaved client sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = Framer(1 << 20)

    @classmethod
    async def connect(cls, port: int) -> RawEsme:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def bind(
        self,
        system_id: str = "acme",
        password: str = "acme-pw",
        sequence: int = 1,
        command: CommandId = CommandId.bind_transceiver,
    ) -> Pdu:
        await self.send(
            Pdu.make(
                command,
                sequence,
                system_id=system_id,
                password=password,
                interface_version=0x34,
            )
        )
        return await self.next()

    async def request(self, pdu: Pdu) -> Pdu:
        await self.send(pdu)
        return await self.next()

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, pdu: Pdu) -> None:
        await self.send_bytes(encode(pdu))

    async def next(self) -> Pdu:
        """The next PDU from the gateway; EOFError once it closed the connection."""
        return decode(await self.next_frame())

    async def next_frame(self) -> bytes:
        """The next PDU's bytes as they came, for third-party parsers and golden bytes."""

        async def read() -> bytes:
            while (frame := self.framer.next_frame()) is None:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError
                self.framer.receive_data(data)
            return frame

        return await asyncio.wait_for(read(), TIMEOUT)

    async def closed_by_peer(self) -> bool:
        """Wait until the gateway closes the connection (reading and dropping what comes)."""

        async def drain() -> None:
            while await self.reader.read(65536):
                pass

        await asyncio.wait_for(drain(), TIMEOUT)
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_session(port: int, command: CommandId) -> AsyncIterator[RawEsme]:
    """A `RawEsme` bound as ``command`` for acme, closed after, also when the test fails:
    a socket left open is found unclosed in some later test, which then errors."""
    esme = await RawEsme.connect(port)
    try:
        response = await esme.bind(command=command)
        assert response.command_status == CommandStatus.ESME_ROK, response
        yield esme
    finally:
        await esme.close()
