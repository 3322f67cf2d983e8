"""PDUs to domain requests and back (pure: no I/O, no store, no server).

Every function here reads a PDU (or a domain object) and the configuration facts it
needs, and returns the result or the command_status that refuses it:

* ``Translator.request``: submit_sm, data_sm or one submit_multi destination ->
  `SubmitRequest`, or why not;
* ``Translator.submit_resp`` / ``multi_resp`` / ``cancel_status`` / ``replace_status``:
  pipeline results -> responses, through the one table ``REJECT_STATUS`` plus
  ``[smpp.error_codes]``;
* ``deliver_sm``: a `Notice` (receipt or mobile-originated message) -> deliver_sm;
* ``query_sm_resp`` and ``replace_body``: the other operations on a message.

Policy (the submit rate limit, what a session may send) stays with the server.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gateway.config import (
    AddressPolicy,
    DefaultCoding,
    ErrorBody,
    MessageIdFormat,
    SmppConfig,
    TenantConfig,
)
from gateway.domain import (
    Interface,
    Message,
    Notice,
    NoticeKind,
    Part,
    ReceiptRequest,
    RejectCode,
    Rejected,
    Status,
    SubmitRequest,
)
from gateway.ids import normalise_id
from gateway.logs import log_event
from gateway.numbers import InvalidNumber, is_short_code, read_bare_digits
from smpp.bodies import DataSm, ReplaceSm, SubmitMulti, SubmitSm
from smpp.pdu import (
    HEADER_LENGTH,
    CommandId,
    CommandStatus,
    Pdu,
    SmeAddress,
    Tag,
    UnsuccessSme,
    encode,
)
from smpp.session import response_for
from smpp.text import (
    ESM_DELIVERY_RECEIPT,
    ESM_UDHI,
    RECEIPT_ERR,
    Alphabet,
    ReceiptFacts,
    TextError,
    coding_of,
    concatenation_part,
    decode_as,
    decode_text,
    encode_text,
    receipt_line,
    receipt_text,
    split_udh,
)
from smpp.times import TimeFormatError, absolute_time, parse_time

HEX = MessageIdFormat.HEX
log = logging.getLogger(__name__)

# What data_coding 0 means under a tenant's smpp.default_coding.
DEFAULT_ALPHABET: dict[DefaultCoding, Alphabet] = {
    DefaultCoding.GSM: Alphabet.GSM,
    DefaultCoding.LATIN1: Alphabet.LATIN1,
    DefaultCoding.ASCII: Alphabet.ASCII,
}

S = CommandStatus

TON_UNKNOWN = 0
TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_NETWORK_SPECIFIC = 3
TON_ALPHANUMERIC = 5
NPI_UNKNOWN = 0
NPI_ISDN = 1
# Vendor-specific TLV on a mobile-originated deliver_sm: the keyword it matched
# ("stop", "start", "help"), so the tenant sees an opt-out as one.
TAG_KEYWORD = 0x1501
# network_error_code's network_type (5.3.2.31): the simulated network is GSM.
NETWORK_GSM = b"\x03"
SYSTEM_ID = "smsgw"
# What a failed response carries under error_body = "nul" (empty under "empty").
ERROR_FIELDS: dict[CommandId, dict[str, object]] = {
    CommandId.submit_sm_resp: {"message_id": ""},
    CommandId.data_sm_resp: {"message_id": ""},
    CommandId.bind_transmitter_resp: {"system_id": SYSTEM_ID},
    CommandId.bind_receiver_resp: {"system_id": SYSTEM_ID},
    CommandId.bind_transceiver_resp: {"system_id": SYSTEM_ID},
}
# Longest text that goes in short_message; longer goes in message_payload.
MAX_SHORT_MESSAGE = 254

# message_state values (section 5.3.2.35), for query_sm_resp and receipts.
MESSAGE_STATE: dict[Status, int] = {
    Status.ACCEPTED: 1,  # ENROUTE: SMPP's ACCEPTED means "read on behalf of the subscriber"
    Status.SCHEDULED: 1,  # ENROUTE too: SCHEDULED (0) is SMPP 5.0's, unknown to 3.4 clients
    Status.ENROUTE: 1,
    Status.DELIVERED: 2,
    Status.EXPIRED: 3,
    Status.DELETED: 4,
    Status.UNDELIVERABLE: 5,
    Status.REJECTED: 8,
}

# The one table from pipeline rejections to command_status (privacy rejections come
# from ``[smpp.error_codes]``, in the vendor-specific range: see `Translator`).
REJECT_STATUS: dict[RejectCode, int] = {
    RejectCode.INVALID_REQUEST: S.ESME_RSUBMITFAIL,
    RejectCode.INVALID_RECIPIENT: S.ESME_RINVDSTADR,
    RejectCode.UNKNOWN_SENDER: S.ESME_RINVSRCADR,
    RejectCode.BODY_TOO_LONG: S.ESME_RINVMSGLEN,
    RejectCode.CALLBACK_NOT_ALLOWED: S.ESME_RSUBMITFAIL,
    RejectCode.STORE_UNAVAILABLE: S.ESME_RSYSERR,
    RejectCode.THROTTLED: S.ESME_RTHROTTLED,
    RejectCode.QUEUE_FULL: S.ESME_RMSGQFUL,
    RejectCode.SYSTEM_ERROR: S.ESME_RSYSERR,
    RejectCode.NO_RESPONSE: S.ESME_RSYSERR,
    RejectCode.NOT_PENDING: S.ESME_RREPLACEFAIL,
    RejectCode.INVALID_VALIDITY: S.ESME_RINVEXPIRY,
    RejectCode.TOO_MANY_SCHEDULED: S.ESME_RMSGQFUL,
}


# registered_delivery's low bits by value: a dict lookup, where calling the enum costs
# 0.5 us a submit (timeit).
_RECEIPT_REQUESTS = {request.value: request for request in ReceiptRequest}


class Translator:
    """The translation under one ``[smpp]`` configuration: its service types and error codes."""

    __slots__ = ("reject_status", "service_types")

    def __init__(self, config: SmppConfig) -> None:
        self.service_types = config.service_types
        codes = config.error_codes
        self.reject_status: dict[RejectCode, int] = {
            **REJECT_STATUS,
            RejectCode.RECIPIENT_OPTED_OUT: codes.recipient_opted_out,
            RejectCode.CONSENT_REQUIRED: codes.consent_required,
            RejectCode.PROCESSING_RESTRICTED: codes.processing_restricted,
        }

    def status(self, code: RejectCode) -> int:
        """The command_status that reports a pipeline rejection."""
        return self.reject_status[code]

    def request(
        self, pdu: Pdu, tenant: TenantConfig, destination: str, dest_ton: int, now: float
    ) -> SubmitRequest | CommandStatus:
        """submit_sm / data_sm / one submit_multi destination as a request for the pipeline.

        Relative times count from ``now`` (epoch seconds).
        """
        body: SubmitSm | SubmitMulti | DataSm
        command = pdu.command_id
        tlvs = pdu.tlvs
        validity: timedelta | None = None
        if command is CommandId.data_sm:
            body, short_message = pdu.body(DataSm), b""  # its text is in message_payload
            send_at = expires_at = None
            time_to_live = tlvs.get(Tag.qos_time_to_live)
            if isinstance(time_to_live, int):
                validity = timedelta(seconds=time_to_live)
        else:
            with_text: SubmitSm | SubmitMulti = (
                pdu.body(SubmitMulti) if command is CommandId.submit_multi else pdu.body(SubmitSm)
            )
            body, short_message = with_text, with_text["short_message"]
            times = message_times(
                with_text["schedule_delivery_time"], with_text["validity_period"], now
            )
            if isinstance(times, CommandStatus):
                return times
            send_at, expires_at = times
        payload = tlvs.get(Tag.message_payload)
        if payload is not None and short_message:
            return S.ESME_RSUBMITFAIL  # the spec allows one or the other
        data = payload if isinstance(payload, bytes) else short_message
        esm_class = body["esm_class"]
        part: Part | None = None
        try:
            if esm_class & ESM_UDHI:
                part, data = split_udh(data)
        except TextError:
            return S.ESME_RINVESMCLASS
        data_coding = body["data_coding"]
        try:
            coding = coding_of(data_coding, DEFAULT_ALPHABET[_default_coding(tenant)])
            is_part = part is not None or Tag.sar_msg_ref_num in tlvs
            text = decode_as(coding.alphabet, data, part=is_part)
        except TextError as exc:
            log_event(
                log,
                "smpp.coding_refused",
                logging.DEBUG,
                data_coding=f"{data_coding:#04x}",
                reason=str(exc),
            )
            return S.ESME_RSUBMITFAIL
        if part is None and Tag.sar_msg_ref_num in tlvs:
            reference = tlvs[Tag.sar_msg_ref_num]
            number = tlvs.get(Tag.sar_segment_seqnum)
            total = tlvs.get(Tag.sar_total_segments)
            # decode reads all three as ints, so a value that is not one is a missing tag
            if not (
                isinstance(reference, int) and isinstance(number, int) and isinstance(total, int)
            ):
                return S.ESME_RMISSINGOPTPARAM
            try:
                part = concatenation_part(reference, number, total)
            except TextError:
                return S.ESME_RINVOPTPARAMVAL
        service_type = body["service_type"]
        purpose = self.service_types.get(service_type)
        if purpose is None and service_type not in ("", "CMT"):
            return S.ESME_RINVSERTYP
        receipt = _RECEIPT_REQUESTS.get(body["registered_delivery"] & 0x03)
        if receipt is None:
            return S.ESME_RINVREGDLVFLG
        to = recipient(destination, dest_ton, tenant)
        if to is None:
            return S.ESME_RINVDSTADR
        sender = source(body["source_addr"], body["source_addr_ton"], tenant)
        if sender is None:
            return S.ESME_RINVSRCADR
        return SubmitRequest(
            tenant=tenant,
            interface=Interface.SMPP,
            to=to,
            sender=sender,
            body=text,
            purpose=purpose,
            receipt=receipt,
            part=part,
            binary=coding.alphabet is Alphabet.BINARY,
            message_class=coding.message_class,
            send_at=send_at,
            expires_at=expires_at,
            validity=validity,
        )

    def submit_resp(
        self, request: Pdu, result: Message | Rejected, ids: MessageIdFormat = HEX
    ) -> Pdu | None:
        """The submit_sm_resp / data_sm_resp for a pipeline result; None when none is due."""
        command = response_for(request.command_id)
        if isinstance(result, Message):
            return Pdu.make(command, request.sequence_number, message_id=wire_id(result.id, ids))
        if result.code is RejectCode.NO_RESPONSE:
            return None
        return Pdu.make(command, request.sequence_number, status=self.reject_status[result.code])

    def multi_resp(
        self,
        request: Pdu,
        accepted: Sequence[SmeAddress],
        results: Sequence[Message | Rejected],
        refused: Sequence[UnsuccessSme],
        ids: MessageIdFormat = HEX,
    ) -> Pdu:
        """submit_multi_resp: the first accepted message's id, and every refused destination.

        ``refused`` are those refused before the pipeline saw them, ``results`` what the
        pipeline made of the ``accepted`` ones.
        """
        first_id = ""
        unsuccessful = list(refused)
        for dest, result in zip(accepted, results, strict=True):
            if isinstance(result, Message):
                first_id = first_id or result.id
            else:
                unsuccessful.append(unsuccess(dest, self.reject_status[result.code]))
        return Pdu.make(
            CommandId.submit_multi_resp,
            request.sequence_number,
            message_id=wire_id(first_id, ids) if first_id else "",
            unsuccess_sme=tuple(unsuccessful),
        )

    def cancel_status(self, rejected: Rejected | None) -> int:
        """cancel_sm_resp's status: a message that is not pending cannot be cancelled."""
        if rejected is None:
            return S.ESME_ROK
        if rejected.code is RejectCode.NOT_PENDING:
            return S.ESME_RCANCELFAIL
        return self.reject_status[rejected.code]

    def replace_status(self, rejected: Rejected | None) -> int:
        """replace_sm_resp's status."""
        return S.ESME_ROK if rejected is None else self.reject_status[rejected.code]


def with_error_body(pdu: Pdu, style: ErrorBody) -> Pdu:
    """A failed response sent without a body, given the fields ``style`` asks for."""
    fields = ERROR_FIELDS.get(pdu.command_id)
    if style is ErrorBody.EMPTY or fields is None or pdu.params or not pdu.command_status:
        return pdu
    return Pdu.make(pdu.command_id, pdu.sequence_number, pdu.command_status, None, **fields)


def error_body_of(config: SmppConfig, tenant: TenantConfig | None) -> ErrorBody:
    """The tenant's error_body, else the ``[smpp]`` one."""
    if tenant is None or tenant.smpp is None or tenant.smpp.error_body is None:
        return config.error_body
    return tenant.smpp.error_body


def replace_body(pdu: Pdu) -> str | CommandStatus:
    """The new text of a replace_sm (always in the default alphabet), or why not."""
    try:
        return decode_text(0, pdu.body(ReplaceSm)["short_message"])
    except TextError:
        return S.ESME_RREPLACEFAIL


def replace_times(pdu: Pdu, now: float) -> tuple[datetime | None, datetime | None] | CommandStatus:
    """A replace_sm's new schedule and validity end (None keeps the message's own)."""
    body = pdu.body(ReplaceSm)
    return message_times(body["schedule_delivery_time"], body["validity_period"], now)


def message_times(
    schedule: str, validity: str, now: float
) -> tuple[datetime | None, datetime | None] | CommandStatus:
    """schedule_delivery_time and validity_period as moments, or the status that refuses
    a malformed one (relative times count from ``now``)."""
    if not schedule and not validity:  # nearly every submit: 1.3 -> 0.1 us (timeit)
        return None, None
    moment = datetime.fromtimestamp(now, UTC)
    try:
        send_at = parse_time(schedule, moment)
    except TimeFormatError:
        return S.ESME_RINVSCHED
    try:
        expires_at = parse_time(validity, moment)
    except TimeFormatError:
        return S.ESME_RINVEXPIRY
    return send_at, expires_at


def whole_submission(submission: str, members: Sequence[Message]) -> Message:
    """What query_sm answers for a submit_multi's id: the state of the whole submission.

    While any destination is pending, a pending one (ENROUTE); then a failed one if
    any failed (the last to end); else the last delivered. The id stays the one asked.
    """
    pending = [m for m in members if not m.status.is_final]
    if pending:
        chosen = pending[0]
    else:
        failed = [m for m in members if m.status is not Status.DELIVERED]
        chosen = max(failed or members, key=lambda m: m.final_at or 0.0)
    return dataclasses.replace(chosen, id=submission)


def query_sm_resp(request: Pdu, message: Message | None, ids: MessageIdFormat = HEX) -> Pdu:
    """query_sm_resp for a message of the tenant (None: the tenant has no such message)."""
    if message is None:
        return Pdu.make(CommandId.query_sm_resp, request.sequence_number, S.ESME_RQUERYFAIL)
    final = ""
    if message.final_at is not None:
        final = absolute_time(datetime.fromtimestamp(message.final_at, UTC))
    return Pdu.make(
        CommandId.query_sm_resp,
        request.sequence_number,
        message_id=wire_id(message.id, ids),
        final_date=final,
        message_state=MESSAGE_STATE[message.status],
        error_code=0 if message.error is None else 1,
    )


# --- message ids on the wire (smpp.message_id_format) ------------------------------------
#
# Our ids are <ms:12 hex><boot:4 hex><seq:4 hex>, 80 bits: too many for clients that
# read ids as 64-bit numbers (Kannel's msg-id-type). Their decimal form keeps the
# millisecond and the sequence whole and the boot's low 6 bits:
#   decimal = ms << 22 | (boot & 0x3F) << 16 | seq
# which fits a signed 64-bit integer until 2039 and an unsigned one until 2109. It is
# no bijection, so it is read back by lookup (`DecimalId`): ids of one millisecond in
# one store come from one run of the gateway unless the clock stepped back over a
# restart, and even then match only if their boots agree in those 6 bits. When two
# messages do match, the id names neither (query_sm fails) rather than the wrong one.
_BOOT_BITS = 0x3F


class DecimalId:
    """A decimal message id taken apart: which millisecond, sequence and boot bits."""

    __slots__ = ("boot_bits", "ms", "seq")

    def __init__(self, value: int) -> None:
        self.ms = value >> 22
        self.boot_bits = (value >> 16) & _BOOT_BITS
        self.seq = value & 0xFFFF

    @property
    def floor(self) -> str:
        """The smallest id of its millisecond."""
        return f"{self.ms:012x}"

    def candidate(self, boot: str) -> str | None:
        """The id it names among those of one boot (4 hex digits), or None if none."""
        if int(boot, 16) & _BOOT_BITS != self.boot_bits:
            return None
        return f"{self.floor}{boot}{self.seq:04x}"


def wire_id(message_id: str, ids: MessageIdFormat) -> str:
    """A message id as a session of this format sends it."""
    if ids is MessageIdFormat.HEX:
        return message_id
    value = int(message_id, 16)
    boot_bits = (value >> 16) & _BOOT_BITS
    return str((value >> 32) << 22 | boot_bits << 16 | (value & 0xFFFF))


def read_id(wire: str, ids: MessageIdFormat) -> str | DecimalId:
    """The id a client sent back (query_sm, cancel_sm, replace_sm): normalised hex, or a
    decimal id to look up."""
    if ids is MessageIdFormat.HEX:
        return normalise_id(wire)
    digits = wire.strip()
    if digits.isdigit() and digits.isascii() and int(digits) < 1 << 64:
        return DecimalId(int(digits))
    return wire  # finds nothing


def unsuccess(dest: SmeAddress, status: int) -> UnsuccessSme:
    """A submit_multi destination refused with ``status``."""
    return UnsuccessSme(dest.dest_addr_ton, dest.dest_addr_npi, dest.destination_addr, status)


def recipient(address: str, ton: int, tenant: TenantConfig) -> str | None:
    """A destination_addr as the pipeline reads it, under the tenant's address_policy.

    None refuses it (ESME_RINVDSTADR). TON 1 is international (the '+' added), TON 2
    national (the pipeline reads it with the tenant's default_country); leniently,
    TON 0 and TON 2 digits are read as international or national, whichever they form.
    """
    if ton == TON_INTERNATIONAL:
        return international(address)
    lenient = _policy(tenant) is AddressPolicy.LENIENT
    if lenient and ton in (TON_UNKNOWN, TON_NATIONAL):
        return _bare_digits(address, tenant, national_first=ton == TON_NATIONAL)
    return address if ton == TON_NATIONAL else None


def source(address: str, ton: int, tenant: TenantConfig) -> str | None:
    """A source_addr as the pipeline reads it (the tenant's senders decide the rest).

    None refuses it (ESME_RINVSRCADR). Short codes (3-8 digits) go as written with TON
    0 or 3, alphanumeric senders with TON 5 (leniently with TON 0 too); numbers as
    for `recipient`.
    """
    short_code = ton in (TON_UNKNOWN, TON_NETWORK_SPECIFIC) and is_short_code(address)
    if ton == TON_ALPHANUMERIC or short_code:
        return address
    if ton == TON_UNKNOWN and _policy(tenant) is AddressPolicy.LENIENT and not address.isdigit():
        return address  # an alphanumeric sender without its TON
    return recipient(address, ton, tenant)


def international(address: str) -> str:
    """A TON 1 address with its '+'."""
    return address if not address or address.startswith("+") else "+" + address


def _bare_digits(address: str, tenant: TenantConfig, *, national_first: bool) -> str:
    """E.164 for TON 0 / TON 2 digits; what is no number goes on for the pipeline to refuse."""
    try:
        return read_bare_digits(address, tenant.default_country, national_first=national_first)
    except InvalidNumber:
        return address


def _default_coding(tenant: TenantConfig) -> DefaultCoding:
    return DefaultCoding.GSM if tenant.smpp is None else tenant.smpp.default_coding


def _policy(tenant: TenantConfig) -> AddressPolicy:
    return AddressPolicy.LENIENT if tenant.smpp is None else tenant.smpp.address_policy


def wire_address(address: str) -> tuple[int, int, str]:
    """``(ton, npi, addr)`` for an address we send: E.164 without '+', a short code, or text."""
    if address.startswith("+"):
        return TON_INTERNATIONAL, NPI_ISDN, address[1:]
    if is_short_code(address):
        return TON_NETWORK_SPECIFIC, NPI_UNKNOWN, address
    return TON_ALPHANUMERIC, 0, address


def deliver_sm(notice: Notice, sequence: int, ids: MessageIdFormat = HEX) -> Pdu:
    """The deliver_sm carrying a receipt or a mobile-originated message.

    A receipt's TLVs put receipted_message_id last, after message_state and
    network_error_code: a parser that reads a fixed 65 octets after its tag (as
    some do, for the field's maximum) then still gets the right id.
    """
    source_ton, source_npi, source = wire_address(notice.handset)
    dest_ton, dest_npi, dest = wire_address(notice.address)
    tlvs: dict[int, object] = {}
    if notice.kind is NoticeKind.RECEIPT:
        assert notice.status is not None and notice.submitted_at is not None
        esm_class, data_coding = ESM_DELIVERY_RECEIPT, 0
        message_id = wire_id(notice.message_id, ids)
        short_message = receipt_text(
            ReceiptFacts(message_id, notice.status, notice.submitted_at, notice.created_at)
        )
        tlvs[Tag.message_state] = MESSAGE_STATE[notice.status]
        tlvs[Tag.network_error_code] = NETWORK_GSM + RECEIPT_ERR[notice.status].to_bytes(2, "big")
        tlvs[Tag.receipted_message_id] = message_id
    else:
        esm_class = 0
        data_coding, short_message = encode_text(notice.body)
        if notice.keyword:
            tlvs[TAG_KEYWORD] = notice.keyword.encode("ascii")
        if len(short_message) > MAX_SHORT_MESSAGE:
            tlvs[Tag.message_payload] = short_message
            short_message = b""
    return Pdu.make(
        CommandId.deliver_sm,
        sequence,
        tlvs=tlvs,
        source_addr_ton=source_ton,
        source_addr_npi=source_npi,
        source_addr=source,
        dest_addr_ton=dest_ton,
        dest_addr_npi=dest_npi,
        destination_addr=dest,
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=short_message,
    )


# --- the two PDUs of every message, as bytes from a template -----------------------------
#
# An accepted submit_sm_resp and a receipt's deliver_sm have one layout each; only a few
# fields change. Built as bytes they skip Pdu.make, the generic encoder and its checks:
# 3.9 -> 1.4 us per submit_sm_resp and 42 -> 6.6 us per receipt (timeit, on the loaded
# 2-core bench machine). tests/test_smpp_translate.py holds both byte-equal to the
# generic path, which anything unusual (a long or non-Latin-1 address) still takes.

_HEADER = struct.Struct(">IIII")
_ADDRESS_LIMIT = 21  # source_addr / destination_addr: at most 20 octets and their NUL
# esm_class, protocol_id, priority_flag; empty schedule_delivery_time and validity_period;
# registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id.
_RECEIPT_FIELDS = bytes((ESM_DELIVERY_RECEIPT, 0, 0, 0, 0, 0, 0, 0, 0))
# A receipt's message_state and network_error_code TLVs, by final state.
_RECEIPT_STATE_TLVS: dict[Status, bytes] = {
    status: struct.pack(">HHB", Tag.message_state, 1, MESSAGE_STATE[status])
    + struct.pack(">HH", Tag.network_error_code, 3)
    + NETWORK_GSM
    + error.to_bytes(2, "big")
    for status, error in RECEIPT_ERR.items()
}
_RECEIPTED_ID = struct.Struct(">HH")


def accepted_resp(request: Pdu, message_id: str, ids: MessageIdFormat = HEX) -> bytes:
    """The submit_sm_resp / data_sm_resp of an accepted message, as bytes.

    What ``encode(submit_resp(request, message))`` gives, without building the Pdu.
    """
    wire = wire_id(message_id, ids).encode("ascii") + b"\0"
    command = response_for(request.command_id)
    return _HEADER.pack(HEADER_LENGTH + len(wire), command, 0, request.sequence_number) + wire


@functools.lru_cache(maxsize=1024)
def _address_field(address: str) -> bytes | None:
    """TON, NPI and the NUL-terminated address as a deliver_sm carries it; None if too long.

    Cached: a tenant's senders are few, and a burst's receipts repeat its handsets.
    """
    ton, npi, addr = wire_address(address)
    try:
        octets = addr.encode("latin-1")
    except UnicodeEncodeError:
        return None
    if len(octets) >= _ADDRESS_LIMIT or b"\0" in octets:
        return None
    return bytes((ton, npi)) + octets + b"\0"


def receipt_bytes(notice: Notice, sequence: int, ids: MessageIdFormat = HEX) -> bytes:
    """A receipt's deliver_sm as bytes: what ``encode(deliver_sm(notice, ...))`` gives."""
    assert notice.status is not None and notice.submitted_at is not None
    source = _address_field(notice.handset)
    destination = _address_field(notice.address)
    if source is None or destination is None:
        return encode(deliver_sm(notice, sequence, ids))  # refused there, with its reason
    message_id = wire_id(notice.message_id, ids)
    text = receipt_line(message_id, notice.status, notice.submitted_at, notice.created_at)
    receipted = message_id.encode("ascii") + b"\0"
    body = b"".join(
        (
            b"\0",  # service_type
            source,
            destination,
            _RECEIPT_FIELDS,
            bytes((len(text),)),
            text,
            _RECEIPT_STATE_TLVS[notice.status],
            _RECEIPTED_ID.pack(Tag.receipted_message_id, len(receipted)),
            receipted,
        )
    )
    return _HEADER.pack(HEADER_LENGTH + len(body), CommandId.deliver_sm, 0, sequence) + body
