"""Twilio Programmable Messaging shapes, as pure functions: no I/O, no aiohttp.

What the Twilio front end (`gateway.server.http_twilio`) and the Twilio webhooks
(`gateway.twilio_hooks`) share: the ``SM`` sid of a message id and back, our
statuses and reasons in Twilio's words and error codes, RFC 2822 dates, the
``X-Twilio-Signature`` of a webhook, the JSON of a Message resource, the form a
status callback or an inbound webhook carries, Twilio's magic test numbers, and a
guarded reader for the TwiML an app answers an inbound webhook with.

Shapes follow Twilio's OpenAPI description (twilio-oai, ``api_v2010``) and what
the official ``twilio`` SDK reads; a test drives them with that SDK.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from gateway.config import TWILIO_TEST_SENDER
from gateway.domain import Message, RejectCode, Status
from gateway.ids import ID_LENGTH

API_VERSION = "2010-04-01"
MAX_BODY_CHARACTERS = 1600  # Twilio's limit for one Body (error 21617)
MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

# A sid is its prefix and 32 hex digits: our 20-digit id, then 12 of a check derived
# from it, so a sid maps back to its id alone and a made-up sid finds nothing.
_SID_CHECK_LENGTH = 32 - ID_LENGTH
_SID_RE = re.compile(r"SM([0-9a-f]{20})([0-9a-f]{12})")
PAGE_TOKEN_PREFIX = "PA"


def message_sid(message_id: str) -> str:
    """The ``SM`` sid of one of our message ids: stable, and reversible by `message_id_of`."""
    return f"SM{message_id}{_sid_check(message_id)}"


def message_id_of(sid: str) -> str | None:
    """Our message id inside a sid `message_sid` made; None for any other string."""
    match = _SID_RE.fullmatch(sid)
    if match is None or not hmac.compare_digest(match.group(2), _sid_check(match.group(1))):
        return None
    return match.group(1)


def _sid_check(message_id: str) -> str:
    return hashlib.sha256(b"smsgw-sid:" + message_id.encode()).hexdigest()[:_SID_CHECK_LENGTH]


def rfc2822(timestamp: float | None) -> str | None:
    """A time as Twilio writes it: ``Tue, 01 Dec 2026 13:50:22 +0000``."""
    if timestamp is None:
        return None
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC))


# --- statuses and error codes --------------------------------------------------------

_STATUS: dict[Status, str] = {
    Status.ACCEPTED: "queued",
    Status.SCHEDULED: "scheduled",
    Status.ENROUTE: "sent",  # handed to the (simulated) carrier
    Status.DELIVERED: "delivered",
    Status.UNDELIVERABLE: "undelivered",
    Status.EXPIRED: "undelivered",
    Status.REJECTED: "undelivered",
    Status.DELETED: "canceled",
}


@dataclass(frozen=True, slots=True)
class TwilioError:
    """One of Twilio's error codes with the HTTP status and words it answers with."""

    code: int
    status: int
    message: str

    def document(self, detail: str | None = None) -> dict[str, Any]:
        """The body Twilio answers a failed request with (the SDK's TwilioRestException)."""
        message = f"{self.message}: {detail}" if detail else self.message
        return {
            "code": self.code,
            "message": message,
            "more_info": MORE_INFO.format(code=self.code),
            "status": self.status,
        }


AUTHENTICATION = TwilioError(20003, 401, "Authentication Error - invalid username")
NOT_FOUND = TwilioError(20404, 404, "The requested resource was not found")
THROTTLED = TwilioError(20429, 429, "Too Many Requests")
INVALID_PARAMETER = TwilioError(21000, 400, "Invalid parameter")
INVALID_TO = TwilioError(21211, 400, "Invalid 'To' Phone Number")
INVALID_FROM = TwilioError(21212, 400, "Invalid 'From' Phone Number")
BODY_REQUIRED = TwilioError(21602, 400, "Message body is required")
FROM_REQUIRED = TwilioError(21603, 400, "A 'From' phone number is required")
TO_REQUIRED = TwilioError(21604, 400, "A 'To' phone number is required")
FROM_NOT_OURS = TwilioError(
    21606, 400, "The 'From' phone number provided is not a valid message-capable number"
)
INVALID_CALLBACK = TwilioError(21609, 400, "Invalid 'StatusCallback'")
UNSUBSCRIBED = TwilioError(21610, 400, "Attempt to send to unsubscribed recipient")
QUEUE_FULL = TwilioError(21611, 400, "This 'From' number has exceeded the maximum queue size")
NOT_ROUTABLE = TwilioError(21612, 400, "The 'To' phone number is not currently reachable")
NOT_SMS_CAPABLE = TwilioError(21614, 400, "'To' number is not a valid mobile number")
BODY_TOO_LONG = TwilioError(21617, 400, "The concatenated message body exceeds the 1600 limit")
NO_PERMISSION = TwilioError(21408, 400, "Permission to send an SMS has not been enabled")
NOT_FINAL = TwilioError(20009, 400, "The message is still being processed")
BAD_SEND_AT = TwilioError(35114, 400, "Scheduling does not support this timestamp")
NOT_CANCELABLE = TwilioError(30409, 400, "Message cannot be canceled")
SERVER_ERROR = TwilioError(20500, 500, "An internal server error has occurred")
UNAVAILABLE = TwilioError(20503, 503, "Service is unavailable")
GATEWAY_TIMEOUT = TwilioError(20504, 504, "Gateway timeout")

# Every pipeline rejection in Twilio's words. The three privacy gates all answer 21610:
# Twilio knows only opt-outs, and an app written for it handles that code.
REJECTION_ERRORS: dict[RejectCode, TwilioError] = {
    RejectCode.INVALID_REQUEST: INVALID_PARAMETER,
    RejectCode.INVALID_RECIPIENT: INVALID_TO,
    RejectCode.UNKNOWN_SENDER: FROM_NOT_OURS,
    RejectCode.BODY_TOO_LONG: BODY_TOO_LONG,
    RejectCode.CALLBACK_NOT_ALLOWED: INVALID_CALLBACK,
    RejectCode.STORE_UNAVAILABLE: UNAVAILABLE,
    RejectCode.THROTTLED: THROTTLED,
    RejectCode.QUEUE_FULL: UNAVAILABLE,
    RejectCode.SYSTEM_ERROR: SERVER_ERROR,
    RejectCode.NO_RESPONSE: GATEWAY_TIMEOUT,
    RejectCode.NOT_PENDING: NOT_CANCELABLE,
    RejectCode.INVALID_VALIDITY: INVALID_PARAMETER,
    RejectCode.TOO_MANY_SCHEDULED: QUEUE_FULL,
    RejectCode.RECIPIENT_OPTED_OUT: UNSUBSCRIBED,
    RejectCode.CONSENT_REQUIRED: UNSUBSCRIBED,
    RejectCode.PROCESSING_RESTRICTED: UNSUBSCRIBED,
}

# The Twilio error of a final message, by the reason our traffic log gives.
_DELIVERY_ERRORS: dict[str, tuple[int, str]] = {
    "unknown_subscriber": (30005, "Unknown destination handset"),
    "validity_period_expired": (30003, "Unreachable destination handset"),
    "network_rejected": (30007, "Message filtered"),
    "opted_out": (21610, "Attempt to send to unsubscribed recipient"),
    "consent_withdrawn": (21610, "Attempt to send to unsubscribed recipient"),
    "processing_restricted": (21610, "Attempt to send to unsubscribed recipient"),
}
_UNKNOWN_ERROR = (30008, "Unknown error")
# Stopped by a privacy gate before delivery: Twilio calls that "failed", not "undelivered".
_FAILED_REASONS = frozenset({"opted_out", "consent_withdrawn", "processing_restricted"})


def twilio_status(message: Message) -> str:
    if message.status is Status.REJECTED and message.error in _FAILED_REASONS:
        return "failed"
    return _STATUS[message.status]


def delivery_error(message: Message) -> tuple[int, str] | None:
    """Twilio's error code and message for a message that ended undelivered or failed."""
    if message.status not in (Status.UNDELIVERABLE, Status.EXPIRED, Status.REJECTED):
        return None
    return _DELIVERY_ERRORS.get(message.error or "", _UNKNOWN_ERROR)


# --- documents -----------------------------------------------------------------------


def account_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}"


def message_resource(
    message: Message,
    account_sid: str,
    *,
    body: str = "",
    messaging_service_sid: str | None = None,
) -> dict[str, Any]:
    """A Message resource as Twilio's API answers it.

    ``body`` is empty unless given: the traffic log keeps no bodies (docs/privacy.md), so
    only the answer to the create, which has the body at hand, can show it.
    """
    sid = message_sid(message.id)
    error = delivery_error(message)
    updated = message.final_at or message.enroute_at or message.submitted_at
    status = twilio_status(message)
    if messaging_service_sid is not None and status == "queued":
        status = "accepted"  # Twilio's first state for a send through a Messaging Service
    uri = f"{account_path(account_sid)}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": rfc2822(message.submitted_at),
        "date_sent": rfc2822(message.enroute_at),
        "date_updated": rfc2822(updated),
        "direction": "outbound-api",
        "error_code": error[0] if error else None,
        "error_message": error[1] if error else None,
        "from": message.sender,
        "messaging_service_sid": messaging_service_sid,
        "num_media": "0",
        "num_segments": str(message.segments),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": message.recipient,
        "uri": f"{uri}.json",
    }


def status_callback_form(message: Message, account_sid: str) -> dict[str, str]:
    """What Twilio POSTs to a message's StatusCallback when its status changes."""
    sid = message_sid(message.id)
    status = twilio_status(message)
    form = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "From": message.sender,
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "To": message.recipient,
    }
    error = delivery_error(message)
    if error is not None:
        form["ErrorCode"] = str(error[0])
    return form


def inbound_form(
    message_id: str, account_sid: str, handset: str, address: str, body: str, segments: int
) -> dict[str, str]:
    """What Twilio POSTs to a number's SMS URL when a handset writes to it."""
    sid = message_sid(message_id)
    return {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "Body": body,
        "From": handset,
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": str(segments),
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": address,
    }


def signature(auth_token: str, url: str, form: Mapping[str, str]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1, under the auth token, of the URL
    followed by each parameter's name and value, sorted by name."""
    signed = url + "".join(name + form[name] for name in sorted(form))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --- magic test numbers --------------------------------------------------------------

TEST_SENDER = TWILIO_TEST_SENDER
# Twilio's test credentials answer these with these errors, without sending anything.
TEST_FROM_ERRORS: dict[str, TwilioError] = {
    "+15005550001": INVALID_FROM,
    "+15005550007": FROM_NOT_OURS,
    "+15005550008": QUEUE_FULL,
}
TEST_TO_ERRORS: dict[str, TwilioError] = {
    "+15005550001": INVALID_TO,
    "+15005550002": NOT_ROUTABLE,
    "+15005550003": NO_PERMISSION,
    "+15005550004": UNSUBSCRIBED,
    "+15005550009": NOT_SMS_CAPABLE,
}


# --- TwiML ---------------------------------------------------------------------------

MAX_TWIML_BYTES = 64 * 1024
MAX_TWIML_MESSAGES = 10
# A DTD is where entity expansion (a "billion laughs") and external entities live;
# TwiML never needs one, so a document with any is refused before it is parsed.
_DTD_RE = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


class TwimlError(ValueError):
    """An answer to an inbound webhook that is not TwiML we can act on."""


def twiml_replies(document: bytes) -> list[str]:
    """The text of each ``<Message>`` in a ``<Response>``, in order.

    A ``<Message>`` holds its text directly or in a ``<Body>``. An empty answer is no
    reply, as with Twilio. Bounded: at most `MAX_TWIML_BYTES` and `MAX_TWIML_MESSAGES`;
    no DTD or entity declaration is accepted (the stdlib parser would expand them).
    """
    if not document.strip():
        return []
    if len(document) > MAX_TWIML_BYTES:
        raise TwimlError(f"TwiML over {MAX_TWIML_BYTES} bytes")
    if _DTD_RE.search(document):
        raise TwimlError("TwiML with a DTD or an entity declaration")
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError as exc:
        raise TwimlError(f"not well-formed XML ({exc.position[0]}:{exc.position[1]})") from None
    except LookupError:
        raise TwimlError("TwiML in an unknown encoding") from None
    if root.tag != "Response":
        raise TwimlError("the root element is not <Response>")
    replies = []
    for verb in root:
        if verb.tag != "Message":
            continue  # <Redirect>, <Media>...: not supported, as docs/twilio.md says
        body = verb.find("Body")
        # Without <Body>, the text is the verb's own (a <Media> child is not text).
        text = ("".join(body.itertext()) if body is not None else verb.text or "").strip()
        if text:
            replies.append(text)
    if len(replies) > MAX_TWIML_MESSAGES:
        raise TwimlError(f"more than {MAX_TWIML_MESSAGES} <Message> verbs")
    return replies
