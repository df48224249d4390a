"""The one public shape of a position: REST history, exports and the `positions` webhook event."""

from __future__ import annotations

from typing import Any

from shared.alerts import iso_utc
from shared.protocols.xsole import Position
from shared.store.telemetry import StoredPosition


def known_battery(level: int) -> int | None:
    """A battery level as the API shows it: None when the device did not say (a tracker packet
    without one carries BATTERY_UNKNOWN, -1; shared/protocols/tracker.py)."""
    return level if 0 <= level <= 100 else None


def position_view(row: StoredPosition | Position) -> dict[str, Any]:
    """A position in the API's units (the store and the wire keep the device's integers)."""
    return {
        "ts": iso_utc(row.ts),
        "lat": row.lat_e7 / 1e7,
        "lon": row.lon_e7 / 1e7,
        "alt": row.alt_m,
        "speed": row.speed_cms / 100,
        "course": row.course_ddeg / 10,
        "sats": row.sats,
        "hdop": row.hdop_d / 10,
        "battery": known_battery(row.battery),
        "buffered": row.buffered,
    }
