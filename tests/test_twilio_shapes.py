"""The pure Twilio shapes: sids, signatures, dates, statuses and the guarded TwiML reader."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from gateway.domain import Interface, Message, RejectCode, Status
from gateway.encoding import Encoding
from gateway.twilio import (
    MAX_TWIML_BYTES,
    MAX_TWIML_MESSAGES,
    REJECTION_ERRORS,
    TwimlError,
    delivery_error,
    message_id_of,
    message_sid,
    rfc2822,
    signature,
    status_callback_form,
    twilio_status,
    twiml_replies,
)

ids = st.text("0123456789abcdef", min_size=20, max_size=20)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@given(ids)
def test_a_sid_maps_back_to_its_id(message_id: str) -> None:
    sid = message_sid(message_id)
    assert len(sid) == 34 and sid.startswith("SM")
    assert message_id_of(sid) == message_id
    assert message_sid(message_id) == sid  # stable


@given(st.text(max_size=40))
def test_only_sids_we_made_map_to_an_id(raw: str) -> None:
    found = message_id_of(raw)
    assert found is None or message_sid(found) == raw


def test_a_made_up_sid_finds_nothing() -> None:
    assert message_id_of("SM" + "0" * 32) is None
    assert message_id_of(message_sid("01a2b3c4d5e6f7a8b9c0").upper()) is None


@given(
    st.sampled_from(["http://127.0.0.1:8000/sms", "https://example.test/hook?x=1"]),
    st.dictionaries(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", min_size=1), texts),
    st.text(min_size=1, max_size=20),
)
def test_the_signature_is_the_one_the_sdk_validates(
    url: str, form: dict[str, str], token: str
) -> None:
    signed = signature(token, url, form)
    assert signed == RequestValidator(token).compute_signature(url, form)
    assert RequestValidator(token).validate(url, form, signed)


@given(st.floats(min_value=0, max_value=4e9))
def test_rfc2822_dates_read_back_to_the_second(timestamp: float) -> None:
    text = rfc2822(timestamp)
    assert text is not None and text.endswith("+0000")
    assert parsedate_to_datetime(text).timestamp() == int(timestamp)


def _message(status: Status, error: str | None = None) -> Message:
    return Message(
        "01a2b3c4d5e6f7a8b9c0",
        "acme",
        Interface.TWILIO,
        "Acme",
        "+46701234567",
        "transactional",
        1,
        Encoding.GSM7,
        status,
        1.0,
        error=error,
    )


@pytest.mark.parametrize(
    ("status", "error", "twilio", "code"),
    [
        (Status.ACCEPTED, None, "queued", None),
        (Status.ENROUTE, None, "sent", None),
        (Status.DELIVERED, None, "delivered", None),
        (Status.UNDELIVERABLE, "unknown_subscriber", "undelivered", 30005),
        (Status.EXPIRED, "validity_period_expired", "undelivered", 30003),
        (Status.REJECTED, "network_rejected", "undelivered", 30007),
        (Status.REJECTED, "opted_out", "failed", 21610),
        (Status.REJECTED, "something_new", "undelivered", 30008),
        (Status.DELETED, "cancelled", "canceled", None),
    ],
)
def test_statuses_and_errors_in_twilios_words(
    status: Status, error: str | None, twilio: str, code: int | None
) -> None:
    message = _message(status, error)
    assert twilio_status(message) == twilio
    found = delivery_error(message)
    assert (found[0] if found else None) == code
    form = status_callback_form(message, "AC" + "0" * 32)
    assert form["MessageStatus"] == form["SmsStatus"] == twilio
    assert form.get("ErrorCode") == (str(code) if code else None)


def test_every_status_and_rejection_has_its_twilio_form() -> None:
    """A status or rejection code added later cannot reach the Twilio routes unmapped."""
    assert set(REJECTION_ERRORS) == set(RejectCode)
    for status in Status:
        assert twilio_status(_message(status))


def test_twiml_messages_in_order_with_or_without_body() -> None:
    document = (
        b"<?xml version='1.0' encoding='UTF-8'?><Response>"
        b"<Message> one </Message><Say>ignored</Say>"
        b"<Message><Body>two</Body><Media>https://x.test/a.png</Media></Message>"
        b"<Message>three<Media>https://x.test/b.png</Media></Message>"
        b"<Message/></Response>"
    )
    assert twiml_replies(document) == ["one", "two", "three"]
    assert twiml_replies(b"") == [] and twiml_replies(b"<Response/>") == []


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<Response><Message>&b;</Message></Response>",
        b'<!DOCTYPE Response SYSTEM "file:///etc/passwd"><Response/>',
        b"<Response><Message>unclosed</Response>",
        b"<Other><Message>x</Message></Other>",
        b"<Response>" + b"<Message>x</Message>" * (MAX_TWIML_MESSAGES + 1) + b"</Response>",
        b"<Response><Message>" + b"x" * MAX_TWIML_BYTES + b"</Message></Response>",
        b"plain text",
        b"<?xml version='1.0' encoding='bogus'?><Response/>",
        b"<Response><Message>&#xD800;</Message></Response>",
    ],
)
def test_twiml_that_is_not_plain_twiml_is_refused(document: bytes) -> None:
    with pytest.raises(TwimlError):
        twiml_replies(document)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda encoding, text: (
                f"<?xml version='1.0' encoding='{encoding}'?><Response><Message>{text}"
                "</Message></Response>"
            ).encode("utf-8", "surrogatepass"),
            st.sampled_from(["utf-8", "utf-16", "latin-1", "ascii", "x"]),
            st.text(max_size=20),
        ),
    )
)
def test_any_answer_is_replies_or_a_twiml_error(document: bytes) -> None:
    try:
        replies = twiml_replies(document)
    except TwimlError:
        return
    assert all(isinstance(reply, str) and reply for reply in replies)
