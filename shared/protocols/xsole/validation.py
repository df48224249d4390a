"""Rule 5 of the contract: values out of range are refused with ACK status 1."""

from __future__ import annotations

from shared.protocols.xsole.constants import ActivityState, AlarmKind
from shared.protocols.xsole.messages import Activity, Alarm, DeviceEvent, Heartbeat, Position

MAX_FUTURE_SKEW_S = 300
_LAT_LIMIT = 90 * 10**7
_LON_LIMIT = 180 * 10**7


def _invalid_fix(lat_e7: int, lon_e7: int) -> str | None:
    if abs(lat_e7) > _LAT_LIMIT:
        return "latitude out of range"
    if abs(lon_e7) > _LON_LIMIT:
        return "longitude out of range"
    return None


def _common(ts: int, battery: int, now: float) -> str | None:
    if battery > 100:
        return "battery above 100%"
    if ts > now + MAX_FUTURE_SKEW_S:
        return "timestamp more than 5 minutes in the future"
    return None


def validate(event: DeviceEvent, now: float) -> str | None:
    """Why `event` must be refused, or None when its values are in range.

    An ALARM is judged only by its kind: a fix or clock that is off must never
    cost a worker their SOS, so the store keeps such an alarm with the
    location marked unknown (see `alarm_fix`) rather than refusing it.
    """
    if isinstance(event, Position):
        if event.course_ddeg > 3599:
            return "course above 359.9 degrees"
        return _invalid_fix(event.lat_e7, event.lon_e7) or _common(event.ts, event.battery, now)
    if isinstance(event, Heartbeat):
        return _common(event.ts, event.battery, now)
    if isinstance(event, Activity):
        if event.state not in _ACTIVITY_STATES:
            return f"unknown activity state {event.state}"
        return _common(event.ts, event.battery, now)
    if isinstance(event, Alarm):
        if event.kind not in _ALARM_KINDS:
            return f"unknown alarm kind {event.kind}"
    return None


def alarm_fix(event: Alarm) -> tuple[int, int] | None:
    """The alarm's last known fix, or None when the device sent none in range."""
    if _invalid_fix(event.lat_e7, event.lon_e7) or (event.lat_e7 == 0 and event.lon_e7 == 0):
        return None
    return event.lat_e7, event.lon_e7


_ACTIVITY_STATES = frozenset(int(s) for s in ActivityState)
_ALARM_KINDS = frozenset(int(k) for k in AlarmKind)
