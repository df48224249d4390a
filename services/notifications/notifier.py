"""The notifier port: one implementation per channel (email, SMS), same inputs.

A notifier formats and sends one alert to one contact. It knows nothing of
retries, claims or the timeline: the dispatcher owns those.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.store.alerts import Contact


class NotificationFailed(Exception):
    """A send did not go through. `permanent` when trying again cannot help (address refused, 5xx)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """What a notifier says about an alert: the alert as the API shows it, plus names for humans."""

    alert: dict[str, Any]  # shared.alerts.alert_to_api
    tenant_id: int
    device_name: str | None = None
    tenant_name: str | None = None

    @property
    def kind_label(self) -> str:
        """`SOS`, `FALL`, `NO MOTION`..."""
        return str(self.alert["kind"]).replace("_", " ").upper()

    @property
    def worker(self) -> str:
        return self.device_name or f"device {self.alert['imei']}"

    @property
    def when(self) -> str:
        ts = datetime.fromisoformat(str(self.alert["ts"]))
        return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @property
    def map_url(self) -> str | None:
        lat, lon = self.alert.get("lat"), self.alert.get("lon")
        if lat is None or lon is None:
            return None
        lat_s, lon_s = _coordinate(lat), _coordinate(lon)
        return f"https://www.openstreetmap.org/?mlat={lat_s}&mlon={lon_s}#map=17/{lat_s}/{lon_s}"

    @property
    def advice(self) -> str:
        return _ADVICE.get(self.alert["kind"], _URGENT)


def _coordinate(degrees: float) -> str:
    return f"{degrees:.6f}".rstrip("0").rstrip(".")  # 1e-6 degree is about 10 cm


_URGENT = "Contact the worker now. If you cannot reach them, send help to their last known location."
_ADVICE = {
    "low_battery": "Ask the worker to charge or swap their insoles: protection stops when the battery runs out.",
    "off_foot": "Check that the worker is still wearing their insoles; if you cannot reach them, send help.",
    "geofence_exit": "Check why the worker left their site; if you cannot reach them, send help.",
    "geofence_enter": "Check that the worker is expected in this area.",
}


class Notifier(Protocol):
    channel: str  # "email", "sms": part of the exactly-once key, and a metrics label

    def reaches(self, contact: Contact) -> bool:
        """Whether this channel can reach the contact at all (an email address, a phone number)."""

    async def send(self, *, contact: Contact, notice: AlertNotice) -> str | None:
        """Send once; raise NotificationFailed when it did not go through. The provider's id of
        what it sent, when it reports delivery later (a Twilio message SID), else None."""
