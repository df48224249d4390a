"""/api/v1/webhooks: what providers call back. Twilio reports the delivery of each alert SMS
(services/notifications/sms.py sets the callback URL) and signs its request with the
account's auth token; nothing here needs, or accepts, a user's credentials."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from services.api.deps import ContextDep
from services.authn.models import ErrorOut
from services.notifications.sms import STATUS_CALLBACK_PATH, sms_configured
from shared.config import Settings
from shared.logging import get_logger

log = get_logger("solewatch.api")

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

MAX_CALLBACK_BYTES = 64 * 1024  # a status callback is a few hundred bytes

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "no MessageSid or MessageStatus"},
    403: {"model": ErrorOut, "description": "missing or wrong X-Twilio-Signature"},
    404: {"model": ErrorOut, "description": "SMS notifications are not configured"},
    413: {"model": ErrorOut, "description": "more than a status callback could be"},
}


@router.post(STATUS_CALLBACK_PATH.removeprefix(router.prefix), status_code=204, response_class=Response,
             summary="Twilio's delivery status of an alert SMS (called by Twilio)", responses=_RESPONSES)
async def twilio_status(request: Request, context: ContextDep) -> Response:
    """Form-encoded as Twilio sends it (MessageSid, MessageStatus, ErrorCode...), signed in
    `X-Twilio-Signature`. The status joins the alert's timeline; a message solewatch does
    not know is accepted and ignored, or Twilio would keep retrying it."""
    settings = context.settings
    if not sms_configured(settings):
        raise HTTPException(404, "SMS notifications are not configured")
    params = ImmutableMultiDict(parse_qsl((await _body(request)).decode("utf-8", "replace"), keep_blank_values=True))
    signature = request.headers.get("X-Twilio-Signature")
    assert settings.twilio_auth_token is not None  # sms_configured
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    if not signature or not validator.validate(_signed_url(request, settings), params, signature):
        log.warning("twilio_callback_refused", reason="missing signature" if not signature else "bad signature",
                    client=request.client.host if request.client else None)
        raise HTTPException(403, "missing or invalid X-Twilio-Signature")
    sid, status = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not status:
        raise HTTPException(400, "MessageSid and MessageStatus are required")
    error_code = params.get("ErrorCode") or None
    alert_id = await context.store.record_delivery_status(provider_id=sid, status=status, error_code=error_code)
    log.info("sms_delivery_status", message_sid=sid, status=status, error_code=error_code, alert_id=alert_id)
    return Response(status_code=204)


def _signed_url(request: Request, settings: Settings) -> str:
    """The URL Twilio called, as Twilio saw it: behind a proxy, the public URL, not ours."""
    if not settings.public_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return settings.public_url.rstrip("/") + request.url.path + query


async def _body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BYTES:
            raise HTTPException(413, "request body too large")
    return bytes(body)
