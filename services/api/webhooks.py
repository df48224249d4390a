"""/api/v1/webhooks: what providers call back. Twilio reports the delivery of each alert SMS
(services/notifications/sms.py sets the callback URL) and signs its request with the
account's auth token; nothing here needs, or accepts, a user's credentials."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from services.api.deps import ContextDep
from services.api.twilio_signature import verified_twilio_form
from services.authn.models import ErrorOut
from services.notifications.sms import STATUS_CALLBACK_PATH
from shared.logging import get_logger

log = get_logger("solewatch.api")

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "no MessageSid or MessageStatus"},
    403: {"model": ErrorOut, "description": "missing or wrong X-Twilio-Signature"},
    404: {"model": ErrorOut, "description": "SMS notifications are not configured"},
    413: {"model": ErrorOut, "description": "more than a status callback could be"},
}


@router.post(
    STATUS_CALLBACK_PATH.removeprefix(router.prefix),
    status_code=204,
    response_class=Response,
    summary="Twilio's delivery status of an alert SMS (called by Twilio)",
    responses=_RESPONSES,
)
async def twilio_status(request: Request, context: ContextDep) -> Response:
    """Form-encoded as Twilio sends it (MessageSid, MessageStatus, ErrorCode...), signed in
    `X-Twilio-Signature`. The status joins the alert's timeline; a message solewatch does
    not know is accepted and ignored, or Twilio would keep retrying it."""
    params = await verified_twilio_form(request, context.settings)
    sid, status = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not status:
        raise HTTPException(400, "MessageSid and MessageStatus are required")
    error_code = params.get("ErrorCode") or None
    alert_id = await context.store.record_delivery_status(provider_id=sid, status=status, error_code=error_code)
    log.info("sms_delivery_status", message_sid=sid, status=status, error_code=error_code, alert_id=alert_id)
    return Response(status_code=204)
