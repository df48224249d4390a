"""The one public shape of an alert: REST responses, Socket.IO `alert` events, outbox messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.store.alerts import Alert


def iso_utc(t: float | None, *, millis: bool = False) -> str | None:
    """Unix seconds as ISO-8601 UTC with a `Z` (`2026-01-01T00:00:00Z`); None stays None."""
    if t is None:
        return None
    text = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z")


def alert_to_api(alert: Alert) -> dict[str, Any]:
    """The alert as clients see it. `ts` is when it happened (device time, whole
    seconds); the `*_at` stamps are server times with milliseconds."""
    return {
        "id": alert.id,
        "imei": alert.imei,
        "kind": alert.kind,
        "ts": iso_utc(alert.ts),
        "lat": alert.lat,
        "lon": alert.lon,
        "battery": alert.battery,
        "status": alert.status,
        "created_at": iso_utc(alert.created_at, millis=True),
        "acknowledged_at": iso_utc(alert.acknowledged_at, millis=True),
        "acknowledged_by": alert.acknowledged_by,
        "resolved_at": iso_utc(alert.resolved_at, millis=True),
        "resolved_by": alert.resolved_by,
        "resolution_note": alert.resolution_note,
    }


def alarm_raised_detail(alarm: dict[str, Any]) -> dict[str, Any]:
    """The detail of the `raised` timeline line of an alert from an `alarm` message.

    When the device's clock was implausible the alert is dated by the receive
    time (`shared/protocols/xsole/validation.py`, `alarm_time`); what the device
    said is kept here, so nobody loses it.
    """
    detail: dict[str, Any] = {"alarm_id": alarm["alarm_id"], "kind": alarm["kind"]}
    device_ts = alarm.get("device_ts")
    if device_ts is not None and int(device_ts) != int(alarm["ts"]):
        detail["device_ts"] = iso_utc(int(device_ts))
        detail["dated_by"] = "received_at"  # the device's clock was implausible
    return detail
