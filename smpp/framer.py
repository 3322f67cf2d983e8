"""Incremental SMPP framer: bytes in, whole PDU frames out (sans-IO, h11 style).

Feed whatever the transport delivered to ``receive_data`` and call ``next_frame``
until it returns None. Frames are cut on command_length alone; decoding them is
``smpp.pdu.decode``'s job, so a frame with garbage inside still comes out whole and
the session can answer it with the right sequence_number.
"""

from __future__ import annotations

import struct

from smpp.pdu import HEADER_LENGTH, CommandStatus, PduError

_HEADER = struct.Struct(">IIII")


class FrameError(PduError):
    """A command_length the stream cannot be re-synchronised after: nack, then close.

    ``status`` is always ESME_RINVCMDLEN; command_id and sequence_number come from the
    bad header so the generic_nack can carry them. The framer stays broken: every later
    ``next_frame`` raises the same error.
    """


class Framer:
    """Cuts a byte stream into PDU frames.

    The buffer is a bytearray read through an offset, so many small PDUs arriving in
    one chunk cost O(total) rather than O(n^2); consumed bytes are dropped once they
    are at least half the buffer.
    """

    def __init__(self, max_command_length: int = 65536) -> None:
        if max_command_length < HEADER_LENGTH:
            raise ValueError("max_command_length must allow at least a PDU header")
        self._max = max_command_length
        self._buf = bytearray()
        self._pos = 0

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the transport."""
        if self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """Return the next whole PDU (header included), or None until more data arrives.

        The header is judged once all 16 octets are in, so a bad command_length is
        reported together with the command_id and sequence_number that follow it.
        """
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < HEADER_LENGTH:
            return None
        length, command_id, _, sequence_number = _HEADER.unpack_from(buf, pos)
        if length < HEADER_LENGTH or length > self._max:
            raise FrameError(
                CommandStatus.ESME_RINVCMDLEN,
                f"command_length {length} outside {HEADER_LENGTH}..{self._max}",
                command_id=command_id,
                sequence_number=sequence_number,
            )
        end = pos + length
        if end > len(buf):
            return None
        self._pos = end
        return bytes(buf[pos:end])
