"""POST /api/v1/webhooks/twilio/sms: replies to alert SMS (CONTRACT §6), called by Twilio.

Signed by Twilio like every webhook (services/api/twilio_signature.py). What
the reply does is services/notifications/sms_reply.py; here it becomes TwiML.
Twilio retries a message it got no answer for: a MessageSid already answered
gets the same answer again and does nothing more.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from twilio.twiml.messaging_response import MessagingResponse

from services.api.deps import ContextDep
from services.api.twilio_signature import verified_twilio_form
from services.authn.models import ErrorOut
from services.notifications.sms_reply import answer_sms_reply
from shared.logging import get_logger

log = get_logger("solewatch.api")

SMS_REPLY_PATH = "/api/v1/webhooks/twilio/sms"

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "TwiML `<Response><Message>`: the acknowledgement confirmed, or the sender's"
        " open alerts and their codes, or that there are none",
        "content": {"text/xml": {"schema": {"type": "string"}}},
    },
    403: {"model": ErrorOut, "description": "missing or wrong X-Twilio-Signature"},
    404: {"model": ErrorOut, "description": "SMS notifications are not configured"},
    413: {"model": ErrorOut, "description": "more than an inbound SMS could be"},
}


@router.post(
    SMS_REPLY_PATH.removeprefix(router.prefix),
    response_class=Response,
    responses=_RESPONSES,
    summary="An SMS sent to solewatch's number: a reply acknowledging an alert (called by Twilio)",
)
async def twilio_sms(request: Request, context: ContextDep) -> Response:
    """Form-encoded as Twilio sends it (`From`, `To`, `Body`, `MessageSid`), signed in
    `X-Twilio-Signature`. A `Body` holding the code of an unresolved alert notified to the
    `From` phone acknowledges it as that phone's contact."""
    params = await verified_twilio_form(request, context.settings)
    sid = params.get("MessageSid") or None
    text = await context.store.inbound_sms_answer(sid) if sid else None
    if text is not None:
        log.info("sms_reply_retried", message_sid=sid)
    else:
        text = await answer_sms_reply(context, phone=params.get("From", ""), body=params.get("Body", ""))
        if sid:
            await context.store.remember_inbound_sms(sid, text)
    twiml = MessagingResponse()
    twiml.message(text)
    return Response(str(twiml), media_type="text/xml")
