"""SMPP 3.4 vocabulary: command ids, statuses, TLV tags and the layout of every body.

This is the spec as data, with no behaviour beyond ``describe``: ``BODIES`` lists the
mandatory fields of each PDU in wire order, ``TLV_TYPES`` how each known optional
parameter is typed. The codec (``smpp.pdu``) compiles its fast path from these tables,
``smpp.bodies`` types them for mypy, and the tests' reference decoder reads them
directly; change a layout here and all three follow (or a test says which did not).
Imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

HEADER_LENGTH = 16
RESPONSE_BIT = 0x80000000


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
        return bool(self.value & RESPONSE_BIT)


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


# Var. max (NUL included) of the addresses inside submit_multi's lists: an SME
# address's destination_addr, a dl_name, an unsuccess_sme's destination_addr.
LIST_ADDRESS_LEN = 21


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
