"""Voice calls through Twilio's Calls API: an escalation step naming `voice` phones its contacts.

The call itself carries no words: Twilio fetches what to say from the API
(services/api/webhooks_voice.py) once the call is answered, signed with the
account's auth token, so the script reads the alert as it stands then (an
alert acknowledged while the phone rang says so) and one key press, 1,
acknowledges it as the contact called. Call progress comes back to the
status webhook and joins the alert's timeline; a call nobody answers (busy,
no-answer, failed) is a failed delivery and stops nothing: escalation goes on.

Needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, a caller ID (SOLEWATCH_VOICE_FROM,
else SOLEWATCH_SMS_FROM) and SOLEWATCH_PUBLIC_URL, where Twilio reaches the API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from services.notifications.notifier import AlertNotice
from services.notifications.sms import E164, REQUEST_TIMEOUT, twilio_request
from shared.config import Settings
from shared.store.alerts import Contact

VOICE_PATH = "/api/v1/webhooks/twilio/voice"  # the call's script (TwiML)
GATHER_PATH = VOICE_PATH + "/gather"  # the key pressed
CALL_STATUS_PATH = VOICE_PATH + "/status"  # how the call went
# Answered, then ended: Twilio sends the final status (completed, busy, no-answer, failed, canceled)
# with `completed`, so the timeline gets "in-progress" then the outcome, without ringing noise.
STATUS_EVENTS = ["answered", "completed"]
RING_SECONDS = 30  # long enough to reach a phone in a pocket, short of most voicemail pickups (about 25-30 s)


VOICE_NOT_CONFIGURED = (
    "voice calls need TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, SOLEWATCH_VOICE_FROM"
    " (or SOLEWATCH_SMS_FROM) and SOLEWATCH_PUBLIC_URL"
)


def voice_from(settings: Settings) -> str | None:
    """The caller ID of alert calls."""
    return settings.voice_from or settings.sms_from


def voice_configured(settings: Settings) -> bool:
    """Whether calls can be placed and their script served: a Twilio account, a caller ID, a public URL."""
    return bool(
        settings.twilio_account_sid and settings.twilio_auth_token and voice_from(settings) and settings.public_url
    )


def call_url(
    settings: Settings, path: str, *, tenant_id: int, alert_id: int, contact_id: int, round_: int | None = None
) -> str:
    """An absolute URL under the public URL naming the call's alert and contact. Twilio signs the
    URL it calls, query included, so these parameters cannot be altered by anyone but Twilio."""
    assert settings.public_url
    query = {"tenant": tenant_id, "alert": alert_id, "contact": contact_id}
    if round_ is not None:
        query["round"] = round_
    return f"{settings.public_url.rstrip('/')}{path}?{urlencode(query)}"


class VoiceNotifier:
    channel = "voice"

    def __init__(self, settings: Settings, *, timeout: float | None = None):
        if not voice_configured(settings):
            raise ValueError(VOICE_NOT_CONFIGURED)
        assert settings.twilio_auth_token and settings.public_url
        self._settings = settings
        self._account_sid = settings.twilio_account_sid
        self._auth_token = settings.twilio_auth_token.get_secret_value()
        self._caller_id = voice_from(settings)
        self._base_url = settings.twilio_base_url.rstrip("/") if settings.twilio_base_url else None
        self._status_callback = settings.public_url.rstrip("/") + CALL_STATUS_PATH
        self._timeout = timeout or REQUEST_TIMEOUT

    def reaches(self, contact: Contact) -> bool:
        return bool(contact.phone and E164.match(contact.phone))

    async def send(self, *, contact: Contact, notice: AlertNotice) -> str | None:
        """Ask Twilio to place the call; its call SID, which status callbacks name."""
        assert contact.phone
        url = call_url(
            self._settings,
            VOICE_PATH,
            tenant_id=notice.tenant_id,
            alert_id=int(notice.alert["id"]),
            contact_id=contact.id,
        )
        return await twilio_request(self._create(to=contact.phone, url=url), self._timeout)

    async def _create(self, *, to: str, url: str) -> str | None:
        # A session per call, as SmsNotifier does: calls are rare and a reload leaves nothing open.
        async with AsyncTwilioHttpClient() as http:
            client = Client(self._account_sid, self._auth_token, http_client=http)
            if self._base_url:
                client.api.base_url = self._base_url
            call = await client.calls.create_async(
                to=to,
                from_=self._caller_id,
                url=url,
                method="POST",
                timeout=RING_SECONDS,
                status_callback=self._status_callback,
                status_callback_method="POST",
                status_callback_event=STATUS_EVENTS,
            )
        sid: str | None = call.sid  # twilio is untyped
        return sid


# -- what the call says ---------------------------------------------------------------------

_HEADLINES = {  # no possessive: "{worker}" may be a phrase (the worker with the insole ending in...)
    "sos": "SOS alarm from {worker}",
    "fall": "{worker} may have fallen",
    "no_motion": "{worker} has not moved for a long time",
    "low_battery": "the battery of the insoles of {worker} is low",
    "off_foot": "the insoles of {worker} were taken off",
    "tamper": "someone tampered with the insoles of {worker}",
    "offline": "the insoles of {worker} stopped reporting",
    "geofence_exit": "{worker} left their work area",
    "geofence_enter": "{worker} entered a watched area",
}


def spoken_worker(notice: AlertNotice) -> str:
    """The worker's name, or the last digits of the insole's IMEI, read digit by digit."""
    if notice.device_name:
        return notice.device_name
    return "the worker with the insole ending in " + " ".join(str(notice.alert["imei"])[-4:])


def spoken_time(ts: datetime, now: datetime) -> str:
    """`yesterday at 3:42 in the morning, UTC`: a clock time a text-to-speech voice reads naturally."""
    ts, now = ts.astimezone(UTC), now.astimezone(UTC)
    hour12 = ts.hour % 12 or 12
    part = "in the morning" if ts.hour < 12 else "in the afternoon" if ts.hour < 18 else "in the evening"
    clock = f"{hour12}:{ts.minute:02d} {part}, UTC"
    if ts.minute == 0 and ts.hour in (0, 12):  # "12:00 in the morning" puzzles listeners
        clock = ("midnight" if ts.hour == 0 else "noon") + ", UTC"
    if ts.date() == now.date():
        return f"today at {clock}"
    if ts.date() == (now - timedelta(days=1)).date():
        return f"yesterday at {clock}"
    return f"on {ts.strftime('%A')}, {ts.strftime('%B')} {ts.day}, at {clock}"


def spoken_place(lat: float | None, lon: float | None) -> str:
    """`near latitude 43.616 north, longitude 7.055 east`: three decimals (about 100 m), no signs to mishear."""
    if lat is None or lon is None:
        return "Their location is unknown: the insole had no GPS fix."

    def degrees(value: float, positive: str, negative: str) -> str:
        return f"{abs(value):.3f}".rstrip("0").rstrip(".") + " " + (positive if value >= 0 else negative)

    return f"Last known position: latitude {degrees(lat, 'north', 'south')}, longitude {degrees(lon, 'east', 'west')}."


def voice_script(notice: AlertNotice, now: datetime | None = None) -> str:
    """What the call says about the alert: kind, worker, time and place, in words for the ear."""
    headline = _HEADLINES.get(notice.alert["kind"], "{worker} raised an alert: " + notice.kind_label.lower())
    when = spoken_time(datetime.fromisoformat(str(notice.alert["ts"])), now or datetime.now(UTC))
    headline = headline.format(worker=spoken_worker(notice))
    return (
        f"This is solewatch, with an urgent alert. {headline[0].upper()}{headline[1:]}, {when}. "
        f"{spoken_place(notice.alert.get('lat'), notice.alert.get('lon'))}"
    )
