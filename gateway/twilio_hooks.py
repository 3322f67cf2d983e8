"""Twilio's webhooks: status callbacks, and a handset's reply to a number's SMS URL.

Both are signed with ``X-Twilio-Signature`` under the tenant's auth token, so an
app's ``RequestValidator`` accepts them, and both go out through the callback
dispatcher (its allow-list, retries and bounds, and its re-sends), in whose
`shape_status` this module puts the Twilio form. A status callback follows each
committed change after the first (``sent`` on hand-over, then the final state),
never the initial ``queued`` or ``scheduled``. The TwiML an SMS URL answers with is read with the
guards of `gateway.twilio.twiml_replies`, and each ``<Message>`` in it goes back to
the handset through the pipeline, so the consent gates and rate limits apply.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.callbacks import CallbackDispatcher, form_body
from gateway.config import TenantConfig, TwilioConfig
from gateway.domain import Interface, Message, Notice, Rejected, SubmitRequest
from gateway.encoding import analyse
from gateway.logs import log_event
from gateway.pipeline import SubmitPipeline
from gateway.twilio import (
    TwimlError,
    inbound_form,
    signature,
    status_callback_form,
    twiml_replies,
)

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Twilio-Signature"


class TwilioWebhooks:
    def __init__(
        self,
        dispatcher: CallbackDispatcher,
        pipeline: SubmitPipeline,
        tenants: Sequence[TenantConfig],
    ) -> None:
        self._dispatcher = dispatcher
        self._pipeline = pipeline
        self._tenants = {t.id: t for t in tenants if t.twilio is not None}

    def status_request(self, message: Message) -> tuple[bytes, dict[str, str]]:
        """The dispatcher's shape for a Twilio message's status callback: the signed form.

        Unsigned only if the token became a digest since the message was accepted.
        """
        tenant = self._tenants.get(message.tenant)
        twilio = tenant.twilio if tenant is not None else None
        account = twilio.account_sid if twilio is not None else ""
        form = status_callback_form(message, account)
        headers = {}
        if twilio is not None and twilio.can_sign and message.callback_url is not None:
            headers[SIGNATURE_HEADER] = signature(twilio.auth_token, message.callback_url, form)
        return form_body(form, headers)

    def on_sent(self, message: Message) -> None:
        """Network listener (hand-over committed): the ``sent`` status callback.

        The final state's goes through the dispatcher's own listener, in this shape.
        """
        if message.interface is Interface.TWILIO and message.callback_url is not None:
            body, headers = self.status_request(message)
            self._dispatcher.post(message.callback_url, body, headers, message.tenant, message.id)

    def on_inbound(self, notice: Notice) -> None:
        """Pipeline inbound listener: POST a handset's message to the tenant's ``sms_url``."""
        tenant = self._tenants.get(notice.tenant)
        twilio = _signing(tenant) if tenant is not None else None
        if tenant is None or twilio is None or not twilio.sms_url:
            return
        form = inbound_form(
            notice.message_id,
            twilio.account_sid,
            notice.handset,
            notice.address,
            notice.body,
            analyse(notice.body).segments,
        )
        headers = {SIGNATURE_HEADER: signature(twilio.auth_token, twilio.sms_url, form)}

        async def reply(answer: bytes) -> None:
            await self._reply(tenant, notice, answer)

        self._dispatcher.post_form(
            twilio.sms_url, form, headers, notice.tenant, notice.message_id, reply
        )

    async def _reply(self, tenant: TenantConfig, notice: Notice, answer: bytes) -> None:
        """Send each ``<Message>`` of the app's TwiML back to the handset that wrote."""
        try:
            replies = twiml_replies(answer)
        except TwimlError as exc:
            log_event(
                log, "twilio.twiml_refused", logging.WARNING, id=notice.message_id, why=str(exc)
            )
            return
        for text in replies:
            request = SubmitRequest(tenant, Interface.TWILIO, notice.handset, notice.address, text)
            result = await self._pipeline.submit(request)
            if isinstance(result, Rejected):
                log_event(
                    log, "twilio.reply_rejected", id=notice.message_id, code=result.code.value
                )


def _signing(tenant: TenantConfig) -> TwilioConfig | None:
    """The tenant's Twilio account if its token can sign (a digest cannot: config refuses)."""
    twilio = tenant.twilio
    return twilio if twilio is not None and twilio.can_sign else None
