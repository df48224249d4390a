"""Requests from Twilio, checked: every Twilio webhook (delivery status, inbound SMS, voice)
reads its form through `verified_twilio_form`, which refuses (403) what Twilio did not sign.

Twilio signs `X-Twilio-Signature` over the URL it called plus the POSTed form
fields, with the account's auth token (twilio.request_validator does the maths).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from shared.config import Settings
from shared.logging import get_logger

log = get_logger("solewatch.api")

MAX_TWILIO_FORM_BYTES = 64 * 1024  # Twilio's webhook forms are a few kB at most


async def verified_twilio_form(request: Request, settings: Settings) -> ImmutableMultiDict[str, str]:
    """The request's form fields once its signature checks out: 404 when Twilio is not
    configured, 413 for an oversized body, 403 for a missing or wrong signature."""
    # Only the account matters here: a number may be set up for calls alone (SOLEWATCH_VOICE_FROM).
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise HTTPException(404, "Twilio is not configured")
    params = ImmutableMultiDict(parse_qsl((await _body(request)).decode("utf-8", "replace"), keep_blank_values=True))
    signature = request.headers.get("X-Twilio-Signature")
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    if not signature or not validator.validate(signed_url(request, settings), params, signature):
        log.warning(
            "twilio_callback_refused",
            path=request.url.path,
            reason="missing signature" if not signature else "bad signature",
            client=request.client.host if request.client else None,
        )
        raise HTTPException(403, "missing or invalid X-Twilio-Signature")
    return params


def signed_url(request: Request, settings: Settings) -> str:
    """The URL Twilio called, as Twilio saw it: behind a proxy, the public URL, not ours."""
    if not settings.public_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return settings.public_url.rstrip("/") + request.url.path + query


async def _body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_TWILIO_FORM_BYTES:
            raise HTTPException(413, "request body too large")
    return bytes(body)
