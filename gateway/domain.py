"""Domain objects shared by the pipeline, the store, the network and the front ends.

Several of these are built for every message, so they are plain slots dataclasses
rather than frozen ones: a frozen dataclass sets each field through
object.__setattr__, which makes building a Message five times as slow. None is
changed after it is built; a new state is a new object (`Message.moved_to`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from gateway.config import TenantConfig
from gateway.encoding import Encoding


class ReceiptRequest(IntEnum):
    """Which final states the sender wants a delivery receipt for (SMPP registered_delivery)."""

    NONE = 0
    FINAL = 1
    FAILURE = 2

    def wants(self, status: Status) -> bool:
        if self is ReceiptRequest.FINAL:
            return True
        return self is ReceiptRequest.FAILURE and status is not Status.DELIVERED


class Interface(StrEnum):
    HTTP = "http"
    SMPP = "smpp"
    # The Twilio-compatible Messages API (gateway/server/http_twilio.py).
    TWILIO = "twilio"
    # Messages the gateway sends itself (keyword replies); no front end can submit these.
    SYSTEM = "system"


class Status(StrEnum):
    """A message's life: accepted (or scheduled until its send_at), enroute, then one
    final state."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    ENROUTE = "enroute"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"  # cancelled by the sender before it was final (SMPP cancel_sm)

    @property
    def is_final(self) -> bool:
        return self not in (Status.ACCEPTED, Status.SCHEDULED, Status.ENROUTE)


class RejectCode(StrEnum):
    """Stable reasons a submit is refused; front ends map each to their wire form."""

    INVALID_REQUEST = "invalid_request"
    INVALID_RECIPIENT = "invalid_recipient"
    UNKNOWN_SENDER = "unknown_sender"
    BODY_TOO_LONG = "body_too_long"
    CALLBACK_NOT_ALLOWED = "callback_not_allowed"
    # A validity that has ended, or ends before the message is due (a malformed time
    # never gets this far: each front end refuses it in its own terms).
    INVALID_VALIDITY = "invalid_validity"
    # The tenant holds messages.max_scheduled messages waiting for their time already.
    TOO_MANY_SCHEDULED = "too_many_scheduled"
    STORE_UNAVAILABLE = "store_unavailable"
    # Submit failures a simulator rule asks for, so clients can test their retry logic.
    THROTTLED = "throttled"
    QUEUE_FULL = "queue_full"
    SYSTEM_ERROR = "system_error"
    NO_RESPONSE = "no_response"
    # replace_sm of a message that is final or unknown.
    NOT_PENDING = "not_pending"
    # Privacy gates.
    RECIPIENT_OPTED_OUT = "recipient_opted_out"
    CONSENT_REQUIRED = "consent_required"
    PROCESSING_RESTRICTED = "processing_restricted"


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a concatenated message: the handset joins parts sharing a reference."""

    ref: int
    seq: int
    total: int


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """Narrows a list of messages beyond recipient, status and time (the web inbox's search).

    ``ids``: only these (found by their text); ``errors``: only messages that ended with
    one of these errors (e.g. those an opt-out stopped).
    """

    interface: str | None = None
    encoding: str | None = None
    multipart: bool = False
    until_id: str | None = None
    ids: tuple[str, ...] | None = None
    errors: tuple[str, ...] | None = None


@dataclass(slots=True)
class SubmitRequest:
    """What a front end asks the pipeline to send, already decoded from its wire format."""

    tenant: TenantConfig
    interface: Interface
    to: str = field(repr=False)
    sender: str = field(repr=False)
    body: str = field(repr=False)
    purpose: str | None = None
    callback_url: str | None = field(default=None, repr=False)
    client_ref: str | None = field(default=None, repr=False)
    receipt: ReceiptRequest = ReceiptRequest.NONE
    part: Part | None = None
    # 8-bit data: ``body`` holds its octets in hex (SMPP data_coding 2 or 4).
    binary: bool = False
    # GSM 03.38 message class 0-3 (0: flash), when the data_coding names one.
    message_class: int | None = None
    # When to hand it to the network (aware; a past time means at once), and when its
    # validity ends: ``expires_at``, else ``validity`` after it is due (send_at or now).
    # Neither: ``messages.max_validity``, which also caps them.
    send_at: datetime | None = None
    expires_at: datetime | None = None
    validity: timedelta | None = None


@dataclass(slots=True)
class Message:
    """A message as the traffic log keeps it: no body."""

    id: str
    tenant: str
    interface: Interface
    sender: str = field(repr=False)
    recipient: str = field(repr=False)
    purpose: str
    segments: int
    encoding: Encoding
    status: Status
    submitted_at: float
    client_ref: str | None = field(default=None, repr=False)
    callback_url: str | None = field(default=None, repr=False)
    enroute_at: float | None = None
    final_at: float | None = None
    error: str | None = None
    receipt: ReceiptRequest = ReceiptRequest.NONE
    # Set once retention replaced the identifiers by pseudonyms under this key epoch.
    pseudonym_epoch: str | None = None
    # GSM 03.38 message class 0-3 (0: flash), when the submit named one.
    message_class: int | None = None
    # The id of the submit_multi this message is one destination of: its response's
    # message_id, which every destination's receipt carries.
    submission: str | None = None
    # The schedule asked for (status scheduled until then) and when the validity ends:
    # a message still on its way then ends expired.
    send_at: float | None = None
    expires_at: float | None = None

    def moved_to(self, status: Status, at: float, error: str | None = None) -> Message:
        """This message in ``status`` since ``at``: every other field kept (see `_moving`)."""
        return _move(self, status, at, error)


def _moving() -> Callable[[Message, Status, float, str | None], Message]:
    """`Message.moved_to`, compiled from the fields so that a new field cannot be dropped.

    It calls Message positionally with every field, as a hand-written copy would
    (dataclasses.replace is twice as slow), but the argument list is built here from
    `dataclasses.fields`: only status, the two times and the error change.
    """
    changed = {
        "status": "status",
        "enroute_at": "at if enroute else m.enroute_at",
        "final_at": "m.final_at if enroute else at",
        "error": "error",
    }
    arguments = ", ".join(changed.get(f.name, f"m.{f.name}") for f in fields(Message))
    namespace: dict[str, object] = {"Message": Message, "ENROUTE": Status.ENROUTE}
    exec(
        f"def move(m, status, at, error):\n"
        f"    enroute = status is ENROUTE\n"
        f"    return Message({arguments})\n",
        namespace,
    )
    return namespace["move"]  # type: ignore[return-value]


_move = _moving()


@dataclass(slots=True)
class Outgoing:
    """An accepted message with what the network needs to deliver it."""

    message: Message
    body: str = field(repr=False)
    part: Part | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectCode
    detail: str
    # A rate limit's refusal: seconds until a retry could pass (HTTP Retry-After).
    retry_after: float | None = None


@dataclass(slots=True)
class StatusChange:
    """One transition of one message, as the network reports it."""

    message_id: str
    status: Status
    at: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A message as the simulated handset received it (parts already joined)."""

    message_ids: tuple[str, ...]
    tenant: str
    msisdn: str = field(repr=False)
    sender: str = field(repr=False)
    body: str = field(repr=False)
    received_at: float
    parts_missing: int = 0
    # 8-bit data, shown as hex; the GSM 03.38 message class (0: flash).
    binary: bool = False
    message_class: int | None = None


class NoticeKind(StrEnum):
    RECEIPT = "receipt"
    MO = "mo"


@dataclass(slots=True)
class Notice:
    """Something for a tenant's receiving ESME: a delivery receipt or a mobile-originated SMS.

    Kept durably while no receiver is bound, until ``expires_at``.
    """

    tenant: str
    kind: NoticeKind
    message_id: str
    handset: str = field(repr=False)
    address: str = field(repr=False)
    created_at: float
    expires_at: float
    status: Status | None = None
    error: str | None = None
    submitted_at: float | None = None
    body: str = field(default="", repr=False)
    queue_id: int | None = None
    # The handset keyword the body matched (stop, start, help), for MO messages.
    keyword: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """What a handset sent to one of a tenant's numbers (MO), kept for ``privacy.body_ttl``."""

    message_id: str
    tenant: str
    handset: str = field(repr=False)
    address: str = field(repr=False)
    body: str = field(repr=False)
    keyword: str | None
    received_at: float

    @classmethod
    def of(cls, notice: Notice) -> InboundMessage:
        return cls(
            notice.message_id,
            notice.tenant,
            notice.handset,
            notice.address,
            notice.body,
            notice.keyword,
            notice.created_at,
        )


@dataclass(frozen=True, slots=True)
class Handset:
    """A simulated handset as the tenant's handset list shows it (see `SubmitPipeline.handsets`).

    ``received`` counts inbox rows (one per part), ``sent`` its MO, ``messages`` the traffic
    log's rows to it within ``privacy.body_ttl``; ``latest`` is the newest thing the handset
    shows, either way.
    """

    msisdn: str = field(repr=False)
    last_at: float
    received: int
    sent: int
    messages: int
    latest: InboxEntry | InboundMessage | None


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """What a mobile-originated message set off: the keyword it matched, and the reply."""

    keyword: str | None = None
    reply: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BlockedAttempt:
    """A submit a privacy gate refused, as `gateway.blocked` keeps it: never its body."""

    recipient: str = field(repr=False)
    sender: str = field(repr=False)
    interface: Interface
    code: RejectCode
    at: float


@dataclass(frozen=True, slots=True)
class Thread:
    """A handset's conversation with the tenant, as the stores hold it (newest first each),
    and the refused submits to it still kept in memory (oldest first)."""

    messages: list[Message]
    received: list[InboxEntry]
    pending: dict[str, tuple[str, Part | None]] = field(repr=False)
    replies: list[InboundMessage]
    blocked: list[BlockedAttempt]
