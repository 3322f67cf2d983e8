"""SMPP 3.4 PDU codec (sans-IO): ``Pdu``, ``decode``, ``encode``.

The vocabulary it speaks (command ids, statuses, tags, the ``BODIES`` and ``TLV_TYPES``
tables) lives in ``smpp.vocabulary`` and is re-exported here, so ``from smpp.pdu
import CommandId, Pdu, decode`` keeps working; ``smpp.bodies`` types each body for
``Pdu.body``. The wire layer imports only the standard library and itself.

Error policy: ``decode`` (of bytes or bytearray) raises only ``PduError``, whose
``status`` is the command_status the SMSC should answer with. ``encode`` also raises
only ``PduError``: ``ESME_RINVPARLEN`` for a value that does not fit its field (too
long, int out of range, wrong type, text that is not latin-1, a C-string with a NUL),
``ESME_RINVMSGLEN`` for a short_message over 254 octets, ``ESME_RINVNUMDESTS`` /
``ESME_RINVDESTFLAG`` for too many or malformed submit_multi destinations and
``ESME_RSYSERR`` for a missing mandatory field (``Pdu.make`` fills defaults). Error
messages name fields, never values, so they are safe to log.
"""

from __future__ import annotations

import linecache
import struct
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, field
from typing import TypeVar, cast

from smpp.bodies import BODY_TYPES
from smpp.vocabulary import (
    BODIES,
    HEADER_LENGTH,
    LIST_ADDRESS_LEN,
    RESPONSE_BIT,
    TLV_TYPES,
    CommandId,
    CommandStatus,
    DistributionList,
    Field,
    Kind,
    SmeAddress,
    Tag,
    TlvType,
    UnsuccessSme,
    describe,
)

__all__ = [
    "BODIES",
    "HEADER_LENGTH",
    "TLV_TYPES",
    "CommandId",
    "CommandStatus",
    "DistributionList",
    "Field",
    "Kind",
    "Pdu",
    "PduError",
    "SmeAddress",
    "Tag",
    "TlvType",
    "TlvValue",
    "UnsuccessSme",
    "decode",
    "describe",
    "encode",
    "generated_source",
]

# A decoded TLV value: int for int TLVs, str for C-strings, bytes otherwise (and for
# unknown tags).
TlvValue = int | str | bytes
_Body = TypeVar("_Body", bound=Mapping[str, object])


class PduError(Exception):
    """A PDU that cannot be decoded or encoded; ``status`` is what to answer with."""

    def __init__(
        self,
        status: CommandStatus,
        message: str = "",
        *,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        super().__init__(message or describe(status))
        self.status = status
        self.command_id = command_id
        self.sequence_number = sequence_number


@dataclass(slots=True)
class Pdu:
    """One SMPP PDU; params and tlvs are left out of repr so message text never hits logs.

    ``params`` holds the mandatory fields by spec name; the derived count fields
    (sm_length, number_of_dests, no_unsuccess) are filled by ``decode`` and
    ``make`` but ignored by ``encode``, which counts the data itself. A response
    with an empty body (allowed by the spec when command_status is not ESME_ROK)
    has ``params == {}``. ``tlvs`` maps tag -> int/str/bytes for known tags and
    raw bytes for unknown ones, in wire order. ``body`` gives ``params`` its type.
    """

    command_id: CommandId
    command_status: int
    sequence_number: int
    params: dict[str, object] = field(default_factory=dict, repr=False)
    tlvs: dict[int, TlvValue] = field(default_factory=dict, repr=False)

    @classmethod
    def make(
        cls,
        command_id: CommandId,
        sequence_number: int,
        status: int = CommandStatus.ESME_ROK,
        tlvs: Mapping[int, object] | None = None,
        **fields: object,
    ) -> Pdu:
        """Build a PDU, defaulting omitted fields (0, "", b"", ()) and counting lists.

        An error response given no fields gets an empty body, as the spec asks for
        e.g. submit_sm_resp. Unknown field names raise TypeError, like a bad kwarg.
        """
        codec = _CODECS[command_id]
        unknown = fields.keys() - codec.defaults.keys()
        if unknown:
            raise TypeError(f"{command_id.name} has no field(s) {sorted(unknown)}")
        if not fields and status and command_id.is_response:
            params: dict[str, object] = {}
        else:
            params = {**codec.defaults, **fields}
            for count_name, data_name in codec.counts:
                data = params[data_name]
                if isinstance(data, list):
                    data = params[data_name] = tuple(data)  # decode yields tuples
                params[count_name] = len(cast("Sized", data))
        # TLV values are taken as given and type-checked by encode, like params.
        typed_tlvs = cast("dict[int, TlvValue]", dict(tlvs or {}))
        return cls(command_id, status, sequence_number, params, typed_tlvs)

    def body(self, kind: type[_Body]) -> _Body:
        """``params`` typed as ``kind``, this command's class in ``smpp.bodies``.

        ``pdu.body(SubmitSm)["short_message"]`` is ``bytes`` to mypy, with no cast at the
        call site. It is a view, not a copy: nothing is checked per field, only that
        ``kind`` is this command's body (a TypeError otherwise, since that is a bug).
        A response sent without a body (an error status) has no fields to read.
        """
        if BODY_TYPES[self.command_id] is not kind:
            raise TypeError(f"{self.command_id.name} body is not {kind.__name__}")
        return self.params  # type: ignore[return-value]  # typing.cast is a call, 2 a message


# --- codec ---------------------------------------------------------------------------
#
# Theory of operation. Reading or writing a body means walking its field table, and a
# loop that looks at each Field's kind per PDU measured ~2.7x slower on submit_sm than
# straight-line code; submit_sm and deliver_sm are the hot path. So at import _compile
# turns each BODIES entry into two plain functions, the way dataclasses builds __init__:
#
#   decode_<command>(buf, pos, end) -> (params, offset just past the body)
#       one block per field in wire order: a run of adjacent ints is one bounds check
#       and fixed offsets; a C-string is one bytes.find for its NUL within max_len;
#       short_message and the submit_multi lists take their length from the count
#       field read just before them.
#   encode_<command>(params, out)
#       appends the body to out: a run of ints is one struct.pack, whose count fields
#       are computed from their data by _count (params' own counts are ignored); a
#       C-string is length-checked and NUL-terminated; a bad value becomes a PduError
#       that names the field (the local `f`) and never quotes the value.
#
# Only bodies are generated. The header, the TLVs (a short loop over TLV_TYPES) and the
# error wrapping are the ordinary code below, and the generated code sees nothing but
# _GENERATED_GLOBALS. To read it: print(generated_source(CommandId.submit_sm)); its
# lines also show in tracebacks (the source is registered with linecache). The tests
# compare it on random PDUs of every command with a plain reference decoder/encoder
# read straight from the same tables (tests/test_smpp_codec_reference.py): change the
# generator, then run them.

_HEADER = struct.Struct(">IIII")
_TLV_HEADER = struct.Struct(">HH")
_INT_STRUCTS = {
    Kind.INT1: struct.Struct(">B"),
    Kind.INT2: struct.Struct(">H"),
    Kind.INT4: struct.Struct(">I"),
}
_DEFAULTS: dict[Kind, object] = {
    Kind.INT1: 0,
    Kind.INT2: 0,
    Kind.INT4: 0,
    Kind.CSTRING: "",
    Kind.OCTETS: b"",
    Kind.DESTS: (),
    Kind.UNSUCCESS: (),
}
# Status when a counted field (short_message or a submit_multi list) is over its max.
_OVER_MAX = {
    Kind.OCTETS: CommandStatus.ESME_RINVMSGLEN,
    Kind.DESTS: CommandStatus.ESME_RINVNUMDESTS,
    Kind.UNSUCCESS: CommandStatus.ESME_RINVPARLEN,
}
_NUL = b"\0"

# decoder(buf, pos, end) -> (params, offset just past the mandatory fields)
_Decoder = Callable[[bytes, int, int], tuple[dict[str, object], int]]
# encoder(params, out) appends the wire form of the mandatory fields to out
_Encoder = Callable[[Mapping[str, object], list[bytes]], None]


def _short(name: str) -> PduError:
    return PduError(CommandStatus.ESME_RINVCMDLEN, f"body ends before {name}")


def _cstring_error(pos: int, end: int, max_len: int, name: str) -> PduError:
    """No NUL within max_len: either the body ended (RINVCMDLEN) or the string is too long."""
    if pos >= end:
        return _short(name)
    return PduError(
        CommandStatus.ESME_RINVPARLEN, f"{name} longer than {max_len - 1} octets or unterminated"
    )


def _read_cstring(buf: bytes, pos: int, end: int, max_len: int, name: str) -> tuple[str, int]:
    nul = buf.find(0, pos, min(pos + max_len, end))
    if nul < 0:
        raise _cstring_error(pos, end, max_len, name)
    return buf[pos:nul].decode("latin-1"), nul + 1


def _cstring_bytes(value: object, max_len: int, name: str) -> bytes:
    if not isinstance(value, str):
        raise PduError(CommandStatus.ESME_RINVPARLEN, f"{name} must be str")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise PduError(CommandStatus.ESME_RINVPARLEN, f"{name} is not latin-1 text") from None
    if len(raw) >= max_len or _NUL in raw:
        raise PduError(
            CommandStatus.ESME_RINVPARLEN, f"{name} over {max_len - 1} octets or has a NUL"
        )
    return raw + _NUL


def _count(data: object, kind: Kind, max_len: int, name: str) -> int:
    """Length of short_message or a submit_multi list, checked before it is written."""
    ok = bytes | bytearray if kind is Kind.OCTETS else tuple | list
    if not isinstance(data, ok):
        raise PduError(CommandStatus.ESME_RINVPARLEN, f"{name} has the wrong type")
    if len(data) > max_len:
        raise PduError(_OVER_MAX[kind], f"{name} over {max_len}")
    return len(data)


def _read_dests(buf: bytes, pos: int, end: int) -> tuple[SmeAddress | DistributionList, int]:
    if pos >= end:
        raise _short("dest_flag")
    flag = buf[pos]
    if flag == 1:
        if pos + 3 > end:
            raise _short("dest_addr_ton")
        addr, stop = _read_cstring(buf, pos + 3, end, LIST_ADDRESS_LEN, "destination_addr")
        return SmeAddress(buf[pos + 1], buf[pos + 2], addr), stop
    if flag == 2:
        name, stop = _read_cstring(buf, pos + 1, end, LIST_ADDRESS_LEN, "dl_name")
        return DistributionList(name), stop
    raise PduError(CommandStatus.ESME_RINVDESTFLAG, "dest_flag is neither 1 nor 2")


def _write_dests(dest: object) -> bytes:
    if isinstance(dest, SmeAddress):
        head = bytes((1, dest.dest_addr_ton, dest.dest_addr_npi))
        return head + _cstring_bytes(dest.destination_addr, LIST_ADDRESS_LEN, "destination_addr")
    if isinstance(dest, DistributionList):
        return b"\x02" + _cstring_bytes(dest.dl_name, LIST_ADDRESS_LEN, "dl_name")
    raise PduError(CommandStatus.ESME_RINVDESTFLAG, "dest is not SmeAddress/DistributionList")


def _read_unsuccess(buf: bytes, pos: int, end: int) -> tuple[UnsuccessSme, int]:
    if pos + 2 > end:
        raise _short("unsuccess_sme")
    addr, stop = _read_cstring(buf, pos + 2, end, LIST_ADDRESS_LEN, "destination_addr")
    if stop + 4 > end:
        raise _short("error_status_code")
    (code,) = _INT_STRUCTS[Kind.INT4].unpack_from(buf, stop)
    return UnsuccessSme(buf[pos], buf[pos + 1], addr, code), stop + 4


def _write_unsuccess(sme: object) -> bytes:
    if not isinstance(sme, UnsuccessSme):
        raise PduError(CommandStatus.ESME_RINVPARLEN, "unsuccess_sme entry is not UnsuccessSme")
    head = bytes((sme.dest_addr_ton, sme.dest_addr_npi))
    addr = _cstring_bytes(sme.destination_addr, LIST_ADDRESS_LEN, "destination_addr")
    return head + addr + _INT_STRUCTS[Kind.INT4].pack(sme.error_status_code)


def _read_list(
    buf: bytes, pos: int, end: int, n: int, read: Callable[[bytes, int, int], tuple[object, int]]
) -> tuple[tuple[object, ...], int]:
    items = []
    for _ in range(n):
        item, pos = read(buf, pos, end)
        items.append(item)
    return tuple(items), pos


def _bad_value(name: str, exc: Exception) -> PduError:
    # The original exception is dropped: its text may quote the value.
    why = "not an int in range" if isinstance(exc, struct.error) else type(exc).__name__
    return PduError(CommandStatus.ESME_RINVPARLEN, f"{name} does not fit ({why})")


_INT_SIZES = {kind: st.size for kind, st in _INT_STRUCTS.items()}
_GENERATED_GLOBALS: dict[str, object] = {
    "PduError": PduError,
    "_S": CommandStatus,
    "_K": Kind,
    "_NUL": _NUL,
    "_short": _short,
    "_cstring_error": _cstring_error,
    "_count": _count,
    "_read_list": _read_list,
    "_read_dests": _read_dests,
    "_read_unsuccess": _read_unsuccess,
    "_write_dests": _write_dests,
    "_write_unsuccess": _write_unsuccess,
    "_bad_value": _bad_value,
    "_struct_error": struct.error,
    **{f"_unpack_{kind}": st.unpack_from for kind, st in _INT_STRUCTS.items()},
}


def _int_runs(fields: tuple[Field, ...]) -> list[list[Field]]:
    """Split fields into runs: adjacent ints share one run, anything else is alone."""
    runs: list[list[Field]] = []
    for f in fields:
        if f.kind in _INT_SIZES and runs and runs[-1][-1].kind in _INT_SIZES:
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def _counted(fields: tuple[Field, ...]) -> dict[str, Field]:
    """Map each count field (sm_length, ...) to the field whose length it carries."""
    return {fields[i - 1].name: f for i, f in enumerate(fields) if f.kind in _OVER_MAX}


def _decoder_source(fname: str, fields: tuple[Field, ...]) -> list[str]:
    counts = {data.name: count for count, data in _counted(fields).items()}
    out = [f"def {fname}(buf, pos, end):", "    p = {}"]
    for run in _int_runs(fields):
        f = run[0]
        if f.kind in _INT_SIZES:
            out.append(f"    if pos + {sum(_INT_SIZES[g.kind] for g in run)} > end:")
            out.append(f"        raise _short({f.name!r})")
            off = 0
            for g in run:
                at = f"pos + {off}" if off else "pos"
                value = f"buf[{at}]" if g.kind is Kind.INT1 else f"_unpack_{g.kind}(buf, {at})[0]"
                out.append(f"    p[{g.name!r}] = {value}")
                off += _INT_SIZES[g.kind]
            out.append(f"    pos += {off}")
        elif f.kind is Kind.CSTRING:
            out += [
                f"    lim = pos + {f.max_len}",
                "    nul = buf.find(0, pos, lim if lim < end else end)",
                "    if nul < 0:",
                f"        raise _cstring_error(pos, end, {f.max_len}, {f.name!r})",
                f"    p[{f.name!r}] = buf[pos:nul].decode('latin-1')",
                "    pos = nul + 1",
            ]
        else:
            count = counts[f.name]
            out += [
                f"    n = p[{count!r}]",
                f"    if n > {f.max_len}:",
                f"        raise PduError(_S.{_OVER_MAX[f.kind].name}, '{count} over {f.max_len}')",
            ]
            if f.kind is Kind.OCTETS:
                out += [
                    "    if pos + n > end:",
                    f"        raise PduError(_S.ESME_RINVPARLEN, '{count} runs past the body')",
                    f"    p[{f.name!r}] = buf[pos:pos + n]",
                    "    pos += n",
                ]
            else:
                out.append(f"    p[{f.name!r}], pos = _read_list(buf, pos, end, n, _read_{f.kind})")
    out.append("    return p, pos")
    return out


def _encoder_source(fname: str, fields: tuple[Field, ...]) -> list[str]:
    if not fields:
        return [f"def {fname}(p, out):", "    return"]
    counted = _counted(fields)
    # `f` names the field(s) being written, so that a bad value's error says which.
    out = [f"def {fname}(p, out):", "    f = ''", "    try:"]
    for run in _int_runs(fields):
        f = run[0]
        out.append(f"        f = {', '.join(g.name for g in run)!r}")
        if f.kind in _INT_SIZES:
            fmt = "".join(_INT_STRUCTS[g.kind].format[1:] for g in run)
            _GENERATED_GLOBALS[f"_pack_{fmt}"] = struct.Struct(">" + fmt).pack
            args = []
            for g in run:
                data = counted.get(g.name)
                if data is None:
                    args.append(f"p[{g.name!r}]")
                else:
                    args.append(
                        f"_count(p[{data.name!r}], _K.{data.kind.name}, {data.max_len}, "
                        f"{data.name!r})"
                    )
            out.append(f"        out.append(_pack_{fmt}({', '.join(args)}))")
        elif f.kind is Kind.CSTRING:
            out += [
                f"        v = p[{f.name!r}].encode('latin-1')",
                f"        if len(v) >= {f.max_len} or _NUL in v:",
                f"            raise PduError(_S.ESME_RINVPARLEN, '{f.name} over "
                f"{f.max_len - 1} octets or has a NUL')",
                "        out.append(v + _NUL)",
            ]
        elif f.kind is Kind.OCTETS:
            out.append(f"        out.append(p[{f.name!r}])")  # its type was checked by _count
        else:
            out.append(f"        out.extend(map(_write_{f.kind}, p[{f.name!r}]))")
    out += [
        "    except (AttributeError, TypeError, ValueError, _struct_error) as exc:",
        "        raise _bad_value(f, exc) from None",
    ]
    return out


@dataclass(frozen=True, slots=True)
class _Codec:
    decode: _Decoder
    encode: _Encoder
    defaults: dict[str, object]
    counts: tuple[tuple[str, str], ...]  # (count field, the field it counts)
    source: str  # what was compiled, for generated_source


def _compile(command_id: CommandId, fields: tuple[Field, ...]) -> _Codec:
    name = command_id.name
    decoder = _decoder_source(f"decode_{name}", fields)
    source = "\n".join([*decoder, "", *_encoder_source(f"encode_{name}", fields)]) + "\n"
    filename = f"<smpp.pdu codec for {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, object] = {}
    exec(compile(source, filename, "exec"), _GENERATED_GLOBALS, namespace)
    return _Codec(
        decode=cast(_Decoder, namespace[f"decode_{name}"]),
        encode=cast(_Encoder, namespace[f"encode_{name}"]),
        defaults={f.name: _DEFAULTS[f.kind] for f in fields},
        counts=tuple((count, data.name) for count, data in _counted(fields).items()),
        source=source,
    )


_CODECS: dict[int, _Codec] = {cid: _compile(cid, fields) for cid, fields in BODIES.items()}


def generated_source(command_id: CommandId) -> str:
    """The Python source compiled for one command's body: its decoder, then its encoder."""
    return _CODECS[command_id].source


_COMMAND_IDS: dict[int, CommandId] = {cid.value: cid for cid in CommandId}
_TLVS: dict[int, tuple[Kind, int, int, struct.Struct | None]] = {
    tag: (t.kind, t.min_len, t.max_len, _INT_STRUCTS.get(t.kind)) for tag, t in TLV_TYPES.items()
}
_UNKNOWN_TLV = (Kind.OCTETS, 0, 0xFFFF, None)  # unknown tags carry raw bytes both ways


def _decode_tlvs(buf: bytes, pos: int, end: int) -> dict[int, TlvValue]:
    tlvs: dict[int, TlvValue] = {}
    while pos < end:
        if pos + 4 > end:
            raise PduError(CommandStatus.ESME_RINVOPTPARSTREAM, "truncated TLV header")
        tag, length = _TLV_HEADER.unpack_from(buf, pos)
        pos += 4
        stop = pos + length
        if stop > end:
            raise PduError(
                CommandStatus.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04x} runs past the body"
            )
        known = _TLVS.get(tag)
        if known is None:
            tlvs[tag] = buf[pos:stop]
        else:
            kind, min_len, max_len, st = known
            if not min_len <= length <= max_len:
                raise PduError(CommandStatus.ESME_RINVPARLEN, f"TLV 0x{tag:04x} has a bad length")
            if st is not None:
                tlvs[tag] = st.unpack_from(buf, pos)[0]
            elif kind is Kind.CSTRING:
                if buf[stop - 1] != 0 or buf.find(0, pos, stop - 1) >= 0:
                    raise PduError(
                        CommandStatus.ESME_RINVPARLEN, f"TLV 0x{tag:04x} is not one C-string"
                    )
                tlvs[tag] = buf[pos : stop - 1].decode("latin-1")
            else:
                tlvs[tag] = buf[pos:stop]
        pos = stop
    return tlvs


def _encode_tlvs(tlvs: Mapping[int, TlvValue], out: list[bytes]) -> None:
    for tag, value in tlvs.items():
        name = f"TLV 0x{tag:04x}"
        kind, min_len, max_len, st = _TLVS.get(tag, _UNKNOWN_TLV)
        try:
            if st is not None:
                raw = st.pack(value)
            elif kind is Kind.CSTRING:
                raw = _cstring_bytes(value, max_len, name)
            elif isinstance(value, bytes | bytearray):
                raw = bytes(value)
                if not min_len <= len(raw) <= max_len:
                    raise PduError(CommandStatus.ESME_RINVPARLEN, f"{name} has a bad length")
            else:
                raise PduError(CommandStatus.ESME_RINVPARLEN, f"{name} must be bytes")
            out.append(_TLV_HEADER.pack(tag, len(raw)))  # tag itself may be out of range
        except struct.error as exc:
            raise _bad_value(name, exc) from None
        out.append(raw)


def decode(frame: bytes) -> Pdu:
    """Decode one whole PDU (header included) as cut by the Framer; raises only PduError."""
    n = len(frame)
    if n < HEADER_LENGTH:
        raise PduError(CommandStatus.ESME_RINVCMDLEN, "frame shorter than a PDU header")
    length, cid, status, seq = _HEADER.unpack_from(frame)
    command_id = _COMMAND_IDS.get(cid)
    if command_id is None:
        raise PduError(
            CommandStatus.ESME_RINVCMDID,
            f"unknown command_id 0x{cid:08x}",
            command_id=cid,
            sequence_number=seq,
        )
    if length != n:
        raise PduError(
            CommandStatus.ESME_RINVCMDLEN,
            "command_length does not match the frame",
            command_id=cid,
            sequence_number=seq,
        )
    try:
        if n == HEADER_LENGTH and cid & RESPONSE_BIT:
            return Pdu(command_id, status, seq, {}, {})  # error responses may omit the body
        params, pos = _CODECS[cid].decode(frame, HEADER_LENGTH, n)
        return Pdu(command_id, status, seq, params, _decode_tlvs(frame, pos, n) if pos < n else {})
    except PduError as exc:
        exc.command_id = cid
        exc.sequence_number = seq
        raise


def encode(pdu: Pdu) -> bytes:
    """Encode a PDU to wire bytes; raises only PduError (see the module docstring)."""
    cid = pdu.command_id
    seq = pdu.sequence_number
    out: list[bytes] = []
    try:
        codec = _CODECS.get(cid)
        if codec is None:
            raise PduError(CommandStatus.ESME_RINVCMDID, "not an SMPP 3.4 command_id")
        if pdu.params or not cid & RESPONSE_BIT:
            codec.encode(pdu.params, out)
        if pdu.tlvs:
            _encode_tlvs(pdu.tlvs, out)
        body = b"".join(out)
        try:
            header = _HEADER.pack(HEADER_LENGTH + len(body), cid, pdu.command_status, seq)
        except struct.error as exc:
            raise _bad_value("header", exc) from None
    except KeyError as exc:
        raise PduError(
            CommandStatus.ESME_RSYSERR,
            f"missing mandatory field {exc.args[0]!r}",
            command_id=cid,
            sequence_number=seq,
        ) from None
    except PduError as exc:
        exc.command_id = cid
        exc.sequence_number = seq
        raise
    return header + body
