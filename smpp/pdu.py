"""SMPP 3.4 PDU vocabulary and a sans-IO codec.

Everything the wire format needs is declared as data (``BODIES`` for the mandatory
body of each PDU, ``TLV_TYPES`` for optional parameters); at import the codec compiles
each body into straight-line decode/encode functions, so the hot path (submit_sm,
deliver_sm, their responses, enquire_link) does no table interpretation per PDU.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

HEADER_LENGTH = 16
_RESPONSE_BIT = 0x80000000


class CommandId(IntEnum):
    """SMPP 3.4 command_id values (spec section 5.1.2.1)."""

    generic_nack = 0x80000000
    bind_receiver = 0x00000001
    bind_receiver_resp = 0x80000001
    bind_transmitter = 0x00000002
    bind_transmitter_resp = 0x80000002
    query_sm = 0x00000003
    query_sm_resp = 0x80000003
    submit_sm = 0x00000004
    submit_sm_resp = 0x80000004
    deliver_sm = 0x00000005
    deliver_sm_resp = 0x80000005
    unbind = 0x00000006
    unbind_resp = 0x80000006
    replace_sm = 0x00000007
    replace_sm_resp = 0x80000007
    cancel_sm = 0x00000008
    cancel_sm_resp = 0x80000008
    bind_transceiver = 0x00000009
    bind_transceiver_resp = 0x80000009
    outbind = 0x0000000B
    enquire_link = 0x00000015
    enquire_link_resp = 0x80000015
    submit_multi = 0x00000021
    submit_multi_resp = 0x80000021
    alert_notification = 0x00000102
    data_sm = 0x00000103
    data_sm_resp = 0x80000103

    @property
    def is_response(self) -> bool:
        """True for response PDUs (and generic_nack): they never get an answer."""
        return bool(self.value & _RESPONSE_BIT)


class CommandStatus(IntEnum):
    """SMPP 3.4 command_status values (spec section 5.1.3)."""

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF


_S = CommandStatus
_DESCRIPTIONS: dict[int, str] = {
    _S.ESME_ROK: "No Error",
    _S.ESME_RINVMSGLEN: "Message Length is invalid",
    _S.ESME_RINVCMDLEN: "Command Length is invalid",
    _S.ESME_RINVCMDID: "Invalid Command ID",
    _S.ESME_RINVBNDSTS: "Incorrect BIND Status for given command",
    _S.ESME_RALYBND: "ESME Already in Bound State",
    _S.ESME_RINVPRTFLG: "Invalid Priority Flag",
    _S.ESME_RINVREGDLVFLG: "Invalid Registered Delivery Flag",
    _S.ESME_RSYSERR: "System Error",
    _S.ESME_RINVSRCADR: "Invalid Source Address",
    _S.ESME_RINVDSTADR: "Invalid Dest Addr",
    _S.ESME_RINVMSGID: "Message ID is invalid",
    _S.ESME_RBINDFAIL: "Bind Failed",
    _S.ESME_RINVPASWD: "Invalid Password",
    _S.ESME_RINVSYSID: "Invalid System ID",
    _S.ESME_RCANCELFAIL: "Cancel SM Failed",
    _S.ESME_RREPLACEFAIL: "Replace SM Failed",
    _S.ESME_RMSGQFUL: "Message Queue Full",
    _S.ESME_RINVSERTYP: "Invalid Service Type",
    _S.ESME_RINVNUMDESTS: "Invalid number of destinations",
    _S.ESME_RINVDLNAME: "Invalid Distribution List name",
    _S.ESME_RINVDESTFLAG: "Destination flag is invalid (submit_multi)",
    _S.ESME_RINVSUBREP: "Invalid 'submit with replace' request "
    "(i.e. submit_sm with replace_if_present_flag set)",
    _S.ESME_RINVESMCLASS: "Invalid esm_class field data",
    _S.ESME_RCNTSUBDL: "Cannot Submit to Distribution List",
    _S.ESME_RSUBMITFAIL: "submit_sm or submit_multi failed",
    _S.ESME_RINVSRCTON: "Invalid Source address TON",
    _S.ESME_RINVSRCNPI: "Invalid Source address NPI",
    _S.ESME_RINVDSTTON: "Invalid Destination address TON",
    _S.ESME_RINVDSTNPI: "Invalid Destination address NPI",
    _S.ESME_RINVSYSTYP: "Invalid system_type field",
    _S.ESME_RINVREPFLAG: "Invalid replace_if_present flag",
    _S.ESME_RINVNUMMSGS: "Invalid number of messages",
    _S.ESME_RTHROTTLED: "Throttling error (ESME has exceeded allowed message limits)",
    _S.ESME_RINVSCHED: "Invalid Scheduled Delivery Time",
    _S.ESME_RINVEXPIRY: "Invalid message validity period (Expiry time)",
    _S.ESME_RINVDFTMSGID: "Predefined Message Invalid or Not Found",
    _S.ESME_RX_T_APPN: "ESME Receiver Temporary App Error Code",
    _S.ESME_RX_P_APPN: "ESME Receiver Permanent App Error Code",
    _S.ESME_RX_R_APPN: "ESME Receiver Reject Message Error Code",
    _S.ESME_RQUERYFAIL: "query_sm request failed",
    _S.ESME_RINVOPTPARSTREAM: "Error in the optional part of the PDU Body",
    _S.ESME_ROPTPARNOTALLWD: "Optional Parameter not allowed",
    _S.ESME_RINVPARLEN: "Invalid Parameter Length",
    _S.ESME_RMISSINGOPTPARAM: "Expected Optional Parameter missing",
    _S.ESME_RINVOPTPARAMVAL: "Invalid Optional Parameter Value",
    _S.ESME_RDELIVERYFAILURE: "Delivery Failure (used for data_sm_resp)",
    _S.ESME_RUNKNOWNERR: "Unknown Error",
}


def describe(status: int) -> str:
    """Spec description of a command_status, for logs and HTTP error bodies."""
    text = _DESCRIPTIONS.get(status)
    if text is not None:
        return text
    if 0x400 <= status <= 0x4FF:
        return "vendor-specific error"
    return "reserved"


class Tag(IntEnum):
    """SMPP 3.4 optional parameter tags (spec section 5.3.2)."""

    dest_addr_subunit = 0x0005
    dest_network_type = 0x0006
    dest_bearer_type = 0x0007
    dest_telematics_id = 0x0008
    source_addr_subunit = 0x000D
    source_network_type = 0x000E
    source_bearer_type = 0x000F
    source_telematics_id = 0x0010
    qos_time_to_live = 0x0017
    payload_type = 0x0019
    additional_status_info_text = 0x001D
    receipted_message_id = 0x001E
    ms_msg_wait_facilities = 0x0030
    privacy_indicator = 0x0201
    source_subaddress = 0x0202
    dest_subaddress = 0x0203
    user_message_reference = 0x0204
    user_response_code = 0x0205
    source_port = 0x020A
    destination_port = 0x020B
    sar_msg_ref_num = 0x020C
    language_indicator = 0x020D
    sar_total_segments = 0x020E
    sar_segment_seqnum = 0x020F
    sc_interface_version = 0x0210
    callback_num_pres_ind = 0x0302
    callback_num_atag = 0x0303
    number_of_messages = 0x0304
    callback_num = 0x0381
    dpf_result = 0x0420
    set_dpf = 0x0421
    ms_availability_status = 0x0422
    network_error_code = 0x0423
    message_payload = 0x0424
    delivery_failure_reason = 0x0425
    more_messages_to_send = 0x0426
    message_state = 0x0427
    ussd_service_op = 0x0501
    display_time = 0x1201
    sms_signal = 0x1203
    ms_validity = 0x1204
    alert_on_message_delivery = 0x130C
    its_reply_type = 0x1380
    its_session_info = 0x1383


class Kind(StrEnum):
    """Wire representation of a field or TLV value."""

    INT1 = "int1"
    INT2 = "int2"
    INT4 = "int4"
    CSTRING = "cstring"  # NUL-terminated latin-1; max_len counts the NUL, as the spec does
    OCTETS = "octets"  # raw bytes; in a body, the length is the previous (int1) field
    DESTS = "dests"  # submit_multi dest_address list; count is the previous field
    UNSUCCESS = "unsuccess"  # submit_multi_resp unsuccess_sme list; count is the previous field


@dataclass(frozen=True, slots=True)
class Field:
    """One mandatory body field; max_len is the spec's Var. max (or max entries for lists)."""

    name: str
    kind: Kind
    max_len: int = 0


@dataclass(frozen=True, slots=True)
class TlvType:
    """How a known TLV's value is typed and which value lengths (octets) are legal."""

    kind: Kind
    min_len: int
    max_len: int


@dataclass(frozen=True, slots=True)
class SmeAddress:
    """submit_multi dest_address with dest_flag 1 (an SME address)."""

    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DistributionList:
    """submit_multi dest_address with dest_flag 2 (a distribution list name)."""

    dl_name: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class UnsuccessSme:
    """submit_multi_resp unsuccess_sme entry: a destination the SMSC refused, and why."""

    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str = field(repr=False)
    error_status_code: int = 0


def _f(name: str, kind: Kind = Kind.INT1, max_len: int = 0) -> Field:
    return Field(name, kind, max_len)


def _c(name: str, max_len: int) -> Field:
    return Field(name, Kind.CSTRING, max_len)


def _address(prefix: str, name: str, max_len: int) -> tuple[Field, ...]:
    """An SME address as the spec lays it out: TON, NPI, then the digits (a C-string)."""
    return (_f(f"{prefix}_ton"), _f(f"{prefix}_npi"), _c(name, max_len))


_BIND = (
    _c("system_id", 16),
    _c("password", 9),
    _c("system_type", 13),
    _f("interface_version"),
    *_address("addr", "address_range", 41),
)
_BIND_RESP = (_c("system_id", 16),)

_SOURCE = _address("source_addr", "source_addr", 21)
_DEST = _address("dest_addr", "destination_addr", 21)
_MESSAGE_TAIL = (
    _f("esm_class"),
    _f("protocol_id"),
    _f("priority_flag"),
    _c("schedule_delivery_time", 17),
    _c("validity_period", 17),
    _f("registered_delivery"),
    _f("replace_if_present_flag"),
    _f("data_coding"),
    _f("sm_default_msg_id"),
    _f("sm_length"),
    _f("short_message", Kind.OCTETS, 254),
)
_SM = (
    _c("service_type", 6),
    *_SOURCE,
    *_DEST,
    *_MESSAGE_TAIL,
)
_MESSAGE_ID = (_c("message_id", 65),)

BODIES: dict[CommandId, tuple[Field, ...]] = {
    CommandId.generic_nack: (),
    CommandId.bind_receiver: _BIND,
    CommandId.bind_receiver_resp: _BIND_RESP,
    CommandId.bind_transmitter: _BIND,
    CommandId.bind_transmitter_resp: _BIND_RESP,
    CommandId.bind_transceiver: _BIND,
    CommandId.bind_transceiver_resp: _BIND_RESP,
    CommandId.outbind: (_c("system_id", 16), _c("password", 9)),
    CommandId.unbind: (),
    CommandId.unbind_resp: (),
    CommandId.enquire_link: (),
    CommandId.enquire_link_resp: (),
    CommandId.submit_sm: _SM,
    CommandId.submit_sm_resp: _MESSAGE_ID,
    CommandId.deliver_sm: _SM,
    # The spec says deliver_sm_resp.message_id is unused (NULL, max 1); some ESMEs
    # fill it anyway, so accept a full message_id rather than nack their responses.
    CommandId.deliver_sm_resp: _MESSAGE_ID,
    CommandId.submit_multi: (
        _c("service_type", 6),
        *_SOURCE,
        _f("number_of_dests"),
        _f("dest_address", Kind.DESTS, 254),
        *_MESSAGE_TAIL,
    ),
    CommandId.submit_multi_resp: (
        _c("message_id", 65),
        _f("no_unsuccess"),
        _f("unsuccess_sme", Kind.UNSUCCESS, 254),
    ),
    CommandId.data_sm: (
        _c("service_type", 6),
        *_address("source_addr", "source_addr", 65),
        *_address("dest_addr", "destination_addr", 65),
        _f("esm_class"),
        _f("registered_delivery"),
        _f("data_coding"),
    ),
    CommandId.data_sm_resp: _MESSAGE_ID,
    CommandId.query_sm: (
        _c("message_id", 65),
        *_SOURCE,
    ),
    CommandId.query_sm_resp: (
        _c("message_id", 65),
        _c("final_date", 17),
        _f("message_state"),
        _f("error_code"),
    ),
    CommandId.cancel_sm: (
        _c("service_type", 6),
        _c("message_id", 65),
        *_SOURCE,
        *_DEST,
    ),
    CommandId.cancel_sm_resp: (),
    CommandId.replace_sm: (
        _c("message_id", 65),
        *_SOURCE,
        _c("schedule_delivery_time", 17),
        _c("validity_period", 17),
        _f("registered_delivery"),
        _f("sm_default_msg_id"),
        _f("sm_length"),
        _f("short_message", Kind.OCTETS, 254),
    ),
    CommandId.replace_sm_resp: (),
    CommandId.alert_notification: (
        *_address("source_addr", "source_addr", 65),
        *_address("esme_addr", "esme_addr", 65),
    ),
}


def _int(size: int) -> TlvType:
    return TlvType(Kind(f"int{size}"), size, size)


def _octets(min_len: int, max_len: int) -> TlvType:
    return TlvType(Kind.OCTETS, min_len, max_len)


def _cstr(max_len: int) -> TlvType:
    return TlvType(Kind.CSTRING, 1, max_len)


TLV_TYPES: dict[Tag, TlvType] = {
    Tag.dest_addr_subunit: _int(1),
    Tag.dest_network_type: _int(1),
    Tag.dest_bearer_type: _int(1),
    Tag.dest_telematics_id: _int(2),
    Tag.source_addr_subunit: _int(1),
    Tag.source_network_type: _int(1),
    Tag.source_bearer_type: _int(1),
    Tag.source_telematics_id: _int(1),
    Tag.qos_time_to_live: _int(4),
    Tag.payload_type: _int(1),
    Tag.additional_status_info_text: _cstr(256),
    Tag.receipted_message_id: _cstr(65),
    Tag.ms_msg_wait_facilities: _int(1),
    Tag.privacy_indicator: _int(1),
    Tag.source_subaddress: _octets(2, 23),
    Tag.dest_subaddress: _octets(2, 23),
    Tag.user_message_reference: _int(2),
    Tag.user_response_code: _int(1),
    Tag.source_port: _int(2),
    Tag.destination_port: _int(2),
    Tag.sar_msg_ref_num: _int(2),
    Tag.language_indicator: _int(1),
    Tag.sar_total_segments: _int(1),
    Tag.sar_segment_seqnum: _int(1),
    Tag.sc_interface_version: _int(1),
    Tag.callback_num_pres_ind: _int(1),
    # Octet string, not C-string: its first octet is a data_coding and may be 0.
    Tag.callback_num_atag: _octets(0, 65),
    Tag.number_of_messages: _int(1),
    Tag.callback_num: _octets(4, 19),
    Tag.dpf_result: _int(1),
    Tag.set_dpf: _int(1),
    Tag.ms_availability_status: _int(1),
    Tag.network_error_code: _octets(3, 3),  # network_type (1) + error_code (2)
    Tag.message_payload: _octets(0, 0xFFFF),
    Tag.delivery_failure_reason: _int(1),
    Tag.more_messages_to_send: _int(1),
    Tag.message_state: _int(1),
    Tag.ussd_service_op: _int(1),
    Tag.display_time: _int(1),
    Tag.sms_signal: _int(2),
    Tag.ms_validity: _int(1),
    Tag.alert_on_message_delivery: _octets(0, 0),  # presence is the value: b""
    Tag.its_reply_type: _int(1),
    Tag.its_session_info: _octets(2, 2),
}


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
    raw bytes for unknown ones, in wire order.
    """

    command_id: CommandId
    command_status: int
    sequence_number: int
    params: dict[str, object] = field(default_factory=dict, repr=False)
    tlvs: dict[int, object] = field(default_factory=dict, repr=False)

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
                params[count_name] = len(data)  # type: ignore[arg-type]
        return cls(command_id, status, sequence_number, params, dict(tlvs or {}))


# --- codec ---------------------------------------------------------------------------
#
# Each command's mandatory body is compiled once, at import, from BODIES into a pair of
# straight-line functions (decoder and encoder), the way dataclasses builds __init__:
# a loop interpreting the field table per PDU measured ~2.7x slower on submit_sm. The
# generated source is registered with linecache so tracebacks through it stay readable.

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
_ADDR_LEN = 21  # max of submit_multi addresses and dl_name, NUL included
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
        addr, stop = _read_cstring(buf, pos + 3, end, _ADDR_LEN, "destination_addr")
        return SmeAddress(buf[pos + 1], buf[pos + 2], addr), stop
    if flag == 2:
        name, stop = _read_cstring(buf, pos + 1, end, _ADDR_LEN, "dl_name")
        return DistributionList(name), stop
    raise PduError(CommandStatus.ESME_RINVDESTFLAG, "dest_flag is neither 1 nor 2")


def _write_dests(dest: object) -> bytes:
    if isinstance(dest, SmeAddress):
        head = bytes((1, dest.dest_addr_ton, dest.dest_addr_npi))
        return head + _cstring_bytes(dest.destination_addr, _ADDR_LEN, "destination_addr")
    if isinstance(dest, DistributionList):
        return b"\x02" + _cstring_bytes(dest.dl_name, _ADDR_LEN, "dl_name")
    raise PduError(CommandStatus.ESME_RINVDESTFLAG, "dest is not SmeAddress/DistributionList")


def _read_unsuccess(buf: bytes, pos: int, end: int) -> tuple[UnsuccessSme, int]:
    if pos + 2 > end:
        raise _short("unsuccess_sme")
    addr, stop = _read_cstring(buf, pos + 2, end, _ADDR_LEN, "destination_addr")
    if stop + 4 > end:
        raise _short("error_status_code")
    (code,) = _INT_STRUCTS[Kind.INT4].unpack_from(buf, stop)
    return UnsuccessSme(buf[pos], buf[pos + 1], addr, code), stop + 4


def _write_unsuccess(sme: object) -> bytes:
    if not isinstance(sme, UnsuccessSme):
        raise PduError(CommandStatus.ESME_RINVPARLEN, "unsuccess_sme entry is not UnsuccessSme")
    head = bytes((sme.dest_addr_ton, sme.dest_addr_npi))
    addr = _cstring_bytes(sme.destination_addr, _ADDR_LEN, "destination_addr")
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


def _compile(command_id: CommandId, fields: tuple[Field, ...]) -> _Codec:
    name = command_id.name
    lines = _decoder_source(f"decode_{name}", fields) + _encoder_source(f"encode_{name}", fields)
    source = "\n".join(lines) + "\n"
    filename = f"<smpp.pdu codec for {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, object] = {}
    exec(compile(source, filename, "exec"), _GENERATED_GLOBALS, namespace)
    return _Codec(
        decode=namespace[f"decode_{name}"],  # type: ignore[arg-type]
        encode=namespace[f"encode_{name}"],  # type: ignore[arg-type]
        defaults={f.name: _DEFAULTS[f.kind] for f in fields},
        counts=tuple((count, data.name) for count, data in _counted(fields).items()),
    )


_CODECS: dict[int, _Codec] = {cid: _compile(cid, fields) for cid, fields in BODIES.items()}
_COMMAND_IDS: dict[int, CommandId] = {cid.value: cid for cid in CommandId}
_TLVS: dict[int, tuple[Kind, int, int, struct.Struct | None]] = {
    tag: (t.kind, t.min_len, t.max_len, _INT_STRUCTS.get(t.kind)) for tag, t in TLV_TYPES.items()
}
_UNKNOWN_TLV = (Kind.OCTETS, 0, 0xFFFF, None)  # unknown tags carry raw bytes both ways


def _decode_tlvs(buf: bytes, pos: int, end: int) -> dict[int, object]:
    tlvs: dict[int, object] = {}
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


def _encode_tlvs(tlvs: Mapping[int, object], out: list[bytes]) -> None:
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
        if n == HEADER_LENGTH and cid & _RESPONSE_BIT:
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
        if pdu.params or not cid & _RESPONSE_BIT:
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
