"""The mandatory body of each PDU as a TypedDict, for ``Pdu.body`` and mypy.

One class per distinct layout in ``smpp.vocabulary.BODIES``, keys in wire order, typed
by field kind (ints ``int``, C-strings ``str``, short_message ``bytes``, submit_multi
lists tuples); commands that share a layout share the class under their own names
(``DeliverSm`` is ``SubmitSm``). ``BODY_TYPES`` maps every command to its class.

Written out rather than generated so that mypy, editors and readers see plain source;
tests/test_smpp_bodies.py checks every class against BODIES (same keys, same order,
value types from the field kinds), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import TypedDict

from smpp.vocabulary import CommandId, DistributionList, SmeAddress, UnsuccessSme


class Empty(TypedDict):
    """generic_nack, unbind(_resp), enquire_link(_resp), cancel_sm_resp, replace_sm_resp."""


class Bind(TypedDict):
    """bind_transmitter, bind_receiver and bind_transceiver."""

    system_id: str
    password: str
    system_type: str
    interface_version: int
    addr_ton: int
    addr_npi: int
    address_range: str


class BindResp(TypedDict):
    """The three bind responses."""

    system_id: str


class Outbind(TypedDict):
    system_id: str
    password: str


class SubmitSm(TypedDict):
    """submit_sm and deliver_sm (spec 4.4.1 and 4.6.1 share the layout)."""

    service_type: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    esm_class: int
    protocol_id: int
    priority_flag: int
    schedule_delivery_time: str
    validity_period: str
    registered_delivery: int
    replace_if_present_flag: int
    data_coding: int
    sm_default_msg_id: int
    sm_length: int
    short_message: bytes


class MessageIdResp(TypedDict):
    """submit_sm_resp, deliver_sm_resp and data_sm_resp."""

    message_id: str


class SubmitMulti(TypedDict):
    service_type: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    number_of_dests: int
    dest_address: tuple[SmeAddress | DistributionList, ...]
    esm_class: int
    protocol_id: int
    priority_flag: int
    schedule_delivery_time: str
    validity_period: str
    registered_delivery: int
    replace_if_present_flag: int
    data_coding: int
    sm_default_msg_id: int
    sm_length: int
    short_message: bytes


class SubmitMultiResp(TypedDict):
    message_id: str
    no_unsuccess: int
    unsuccess_sme: tuple[UnsuccessSme, ...]


class DataSm(TypedDict):
    """data_sm: no short_message; the text travels in the message_payload TLV."""

    service_type: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    esm_class: int
    registered_delivery: int
    data_coding: int


class QuerySm(TypedDict):
    message_id: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str


class QuerySmResp(TypedDict):
    message_id: str
    final_date: str
    message_state: int
    error_code: int


class CancelSm(TypedDict):
    service_type: str
    message_id: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str


class ReplaceSm(TypedDict):
    message_id: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    schedule_delivery_time: str
    validity_period: str
    registered_delivery: int
    sm_default_msg_id: int
    sm_length: int
    short_message: bytes


class AlertNotification(TypedDict):
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    esme_addr_ton: int
    esme_addr_npi: int
    esme_addr: str


# Per-command names for the shared layouts, so call sites say which PDU they read.
GenericNack = Empty
Unbind = Empty
UnbindResp = Empty
EnquireLink = Empty
EnquireLinkResp = Empty
CancelSmResp = Empty
ReplaceSmResp = Empty
BindTransmitter = Bind
BindReceiver = Bind
BindTransceiver = Bind
BindTransmitterResp = BindResp
BindReceiverResp = BindResp
BindTransceiverResp = BindResp
DeliverSm = SubmitSm
SubmitSmResp = MessageIdResp
DeliverSmResp = MessageIdResp
DataSmResp = MessageIdResp

_C = CommandId
BODY_TYPES: dict[CommandId, type] = {
    _C.generic_nack: GenericNack,
    _C.bind_receiver: BindReceiver,
    _C.bind_receiver_resp: BindReceiverResp,
    _C.bind_transmitter: BindTransmitter,
    _C.bind_transmitter_resp: BindTransmitterResp,
    _C.bind_transceiver: BindTransceiver,
    _C.bind_transceiver_resp: BindTransceiverResp,
    _C.outbind: Outbind,
    _C.unbind: Unbind,
    _C.unbind_resp: UnbindResp,
    _C.enquire_link: EnquireLink,
    _C.enquire_link_resp: EnquireLinkResp,
    _C.submit_sm: SubmitSm,
    _C.submit_sm_resp: SubmitSmResp,
    _C.deliver_sm: DeliverSm,
    _C.deliver_sm_resp: DeliverSmResp,
    _C.submit_multi: SubmitMulti,
    _C.submit_multi_resp: SubmitMultiResp,
    _C.data_sm: DataSm,
    _C.data_sm_resp: DataSmResp,
    _C.query_sm: QuerySm,
    _C.query_sm_resp: QuerySmResp,
    _C.cancel_sm: CancelSm,
    _C.cancel_sm_resp: CancelSmResp,
    _C.replace_sm: ReplaceSm,
    _C.replace_sm_resp: ReplaceSmResp,
    _C.alert_notification: AlertNotification,
}
