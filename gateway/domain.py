"""Domain objects shared by the pipeline, the store, the network and the front ends."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.config import TenantConfig
from gateway.encoding import Encoding


class Interface(StrEnum):
    HTTP = "http"
    SMPP = "smpp"


class Status(StrEnum):
    """A message's life: accepted, enroute, then one final state."""

    ACCEPTED = "accepted"
    ENROUTE = "enroute"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self not in (Status.ACCEPTED, Status.ENROUTE)


class RejectCode(StrEnum):
    """Stable reasons a submit is refused; front ends map each to their wire form."""

    INVALID_REQUEST = "invalid_request"
    INVALID_RECIPIENT = "invalid_recipient"
    UNKNOWN_SENDER = "unknown_sender"
    BODY_TOO_LONG = "body_too_long"
    CALLBACK_NOT_ALLOWED = "callback_not_allowed"
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """What a front end asks the pipeline to send, already decoded from its wire format."""

    tenant: TenantConfig
    interface: Interface
    to: str
    sender: str
    body: str
    purpose: str | None = None
    callback_url: str | None = None
    client_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A message as the traffic log keeps it: no body."""

    id: str
    tenant: str
    interface: Interface
    sender: str
    recipient: str
    purpose: str
    segments: int
    encoding: Encoding
    status: Status
    submitted_at: float
    client_ref: str | None = None
    callback_url: str | None = None
    enroute_at: float | None = None
    final_at: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectCode
    detail: str


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One transition of one message, as the network reports it."""

    message_id: str
    status: Status
    at: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A message as the simulated handset received it."""

    message_id: str
    tenant: str
    msisdn: str
    sender: str
    body: str
    received_at: float
