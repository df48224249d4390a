"""SMS notifications through Twilio's Messages API (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, SOLEWATCH_SMS_FROM).

With SOLEWATCH_PUBLIC_URL set, each message asks Twilio to report its delivery
to services/api/webhooks.py, which adds it to the alert's timeline.

Each message ends with `Reply <CODE> to acknowledge.` (CONTRACT §6): the code
is issued in the store for that phone and alert, and a reply carrying it is
handled by services/api/webhooks_sms.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TypeVar

import aiohttp
from twilio.base import values
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from services.notifications.notifier import AlertNotice, NotificationFailed
from shared.config import Settings
from shared.logging import get_logger
from shared.store.alerts import Contact
from shared.store.sms_replies import SmsReplyStore

log = get_logger("solewatch.notifications")

T = TypeVar("T")

STATUS_CALLBACK_PATH = "/api/v1/webhooks/twilio/status"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BODY = 306  # two concatenated GSM-7 segments (153 characters each) at most
REQUEST_TIMEOUT = 30.0  # seconds for one request to Twilio

# Twilio errors no retry can fix, whatever HTTP status carries them: invalid or
# unreachable numbers, opted-out recipients, numbers outside the allowed regions.
PERMANENT_CODES = frozenset({21211, 21212, 21408, 21606, 21610, 21612, 21614})


def sms_configured(settings: Settings) -> bool:
    """Whether the settings name a Twilio account, its token and a sender."""
    return bool(settings.twilio_account_sid and settings.twilio_auth_token and settings.sms_from)


def status_callback_url(settings: Settings) -> str | None:
    """Where Twilio reports delivery: the API's webhook under the public URL, when there is one."""
    return settings.public_url.rstrip("/") + STATUS_CALLBACK_PATH if settings.public_url else None


class SmsNotifier:
    channel = "sms"

    def __init__(self, settings: Settings, *, codes: SmsReplyStore | None = None, timeout: float | None = None):
        if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.sms_from):
            raise ValueError("SMS notifications need TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and SOLEWATCH_SMS_FROM")
        self._account_sid = settings.twilio_account_sid
        self._auth_token = settings.twilio_auth_token.get_secret_value()
        self._sender = settings.sms_from
        self._base_url = settings.twilio_base_url.rstrip("/") if settings.twilio_base_url else None
        self._status_callback = status_callback_url(settings)
        self._timeout = timeout or REQUEST_TIMEOUT
        self._codes = codes
        # The library imports its Messages API on first use, synchronously: paid here, at start or
        # reload, and not by the first SOS after a start, which it delayed (the event loop held).
        _ = Client(self._account_sid, self._auth_token).messages

    def reaches(self, contact: Contact) -> bool:
        return bool(contact.phone and E164.match(contact.phone))

    async def send(self, *, contact: Contact, notice: AlertNotice) -> str | None:
        """Hand the SMS to Twilio; its message SID, which delivery status callbacks name."""
        assert contact.phone
        code = await self._reply_code(contact, notice)
        return await twilio_request(self._create(to=contact.phone, body=sms_body(notice, code)), self._timeout)

    async def _reply_code(self, contact: Contact, notice: AlertNotice) -> str | None:
        """The code a reply acknowledges with; None without a store, or when the store fails:
        the alert must still go out, asking to acknowledge on the dashboard instead."""
        if self._codes is None:
            return None
        assert contact.phone
        try:
            return await self._codes.issue_reply_code(
                tenant_id=notice.tenant_id, alert_id=int(notice.alert["id"]), contact_id=contact.id, phone=contact.phone
            )
        except Exception as exc:
            log.warning("sms_reply_code_failed", alert_id=notice.alert["id"], contact_id=contact.id, error=repr(exc))
            return None

    async def _create(self, *, to: str, body: str) -> str | None:
        # A session per send, closed with it: alerts are rare, and nothing is left
        # open when a reload (SIGHUP) replaces this notifier. (The library's own
        # timeout only applies per call, hence asyncio.timeout in send.)
        async with AsyncTwilioHttpClient() as http:
            client = Client(self._account_sid, self._auth_token, http_client=http)
            if self._base_url:
                client.api.base_url = self._base_url
            message = await client.messages.create_async(
                to=to,
                from_=self._sender,
                body=body,
                status_callback=self._status_callback or values.unset,
            )
        sid: str | None = message.sid  # twilio is untyped
        return sid


async def twilio_request(request: Awaitable[T], timeout: float) -> T:
    """Await one request to Twilio's API, its failures turned into NotificationFailed."""
    try:
        async with asyncio.timeout(timeout):
            return await request
    except TwilioException as exc:
        raise twilio_failure(exc) from exc
    except TimeoutError as exc:
        # Twilio may have taken it all the same: a retry then texts or rings twice,
        # which beats not at all for an SOS.
        raise NotificationFailed(f"Twilio did not answer within {timeout:g} s") from exc
    except (aiohttp.ClientError, OSError) as exc:  # unreachable, connection reset
        raise NotificationFailed(f"Twilio unavailable: {type(exc).__name__}: {exc}") from exc


def twilio_failure(exc: TwilioException) -> NotificationFailed:
    """An error answer of Twilio's API (TwilioRestException, or TwilioServiceException for
    RFC 9457 answers): 4xx but 429 is the request's fault, 5xx and 429 may pass later."""
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    if not isinstance(status, int):  # the library refused the request before sending it
        return NotificationFailed(f"Twilio misconfigured: {type(exc).__name__}: {exc}", permanent=True)
    message = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", None) or ""
    permanent = code in PERMANENT_CODES or (400 <= status < 500 and status != 429)
    described = f"Twilio HTTP {status}" + (f" error {code}" if code else "") + (f": {message}" if message else "")
    return NotificationFailed(described, permanent=permanent)


def sms_body(notice: AlertNotice, code: str | None = None) -> str:
    """A short text: kind, worker, when, where, then how to acknowledge; under MAX_BODY
    characters. With a reply code it ends `Reply <CODE> to acknowledge.`, never cut off."""
    alert = notice.alert
    worker = notice.worker if len(notice.worker) <= 60 else notice.worker[:57] + "..."
    where = f"Map: {notice.map_url}" if notice.map_url else "Location unknown (no GPS fix)."
    body = f"solewatch {notice.kind_label} #{alert['id']}: {worker}, {notice.when}. {where} Contact them now."
    ending = f" Reply {code} to acknowledge." if code else " Then acknowledge it on the dashboard."
    room = MAX_BODY - len(ending)
    return (body if len(body) <= room else body[: room - 3] + "...") + ending
