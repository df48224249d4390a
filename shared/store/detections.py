"""Alerts the server detects itself (offline, no motion, low battery, geofences).

A detector raises an alert under a key naming the condition and the device
(`offline:17`, `geofence_exit:17:4`): while that alert is active, raising the
same key again returns it (a redelivered message, two processes racing, a
restart) instead of raising another. Clearing the key resolves the alert on
the system's behalf and frees the key for the next episode. An alert a person
resolved meanwhile frees its key too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.store.alerts import Alert

SYSTEM_ACTOR = "solewatch"


@dataclass(frozen=True, slots=True)
class DetectedCondition:
    key: str
    tenant_id: int
    device_id: int
    imei: str
    kind: str  # an alert kind: offline, no_motion, low_battery, geofence_exit, geofence_enter
    ts: int  # when it began, unix seconds
    lat: float | None = None
    lon: float | None = None
    battery: int | None = None
    detail: dict[str, Any] | None = None


class DetectionStore(Protocol):
    async def raise_detected_alert(self, condition: DetectedCondition) -> tuple[Alert, bool]:
        """The active alert for the condition's key; True when this call raised it."""

    async def clear_detected_alert(self, key: str, *, note: str) -> Alert | None:
        """Resolve the key's active alert (None when there is none) and free the key."""
