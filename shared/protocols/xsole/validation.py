"""Rule 5 of the contract: values out of range are refused with ACK status 1.

The rules read a frame's fields after its seq, as `struct` unpacks them, so the
general path (a typed event) and the hot path (`bulk.py`, fields straight from
the bytes) judge with the very same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.protocols.xsole.constants import ActivityState, AlarmKind, FrameType
from shared.protocols.xsole.messages import Activity, Alarm, DeviceEvent, Heartbeat, Position

MAX_FUTURE_SKEW_S = 300
# How old an ALARM's ts may plausibly be. An insole buffers what it records
# while offline for hours or days, and the alarm then keeps its own time; a
# clock before XSole v1 existed (ts 0 after a flat RTC battery, 2000-01-01, a GPS
# week rollover) or years behind the receive time is a fault, not a buffer.
EARLIEST_PLAUSIBLE_TS = 1735689600  # 2025-01-01T00:00:00Z
MAX_ALARM_AGE_S = 3 * 365 * 24 * 3600
_LAT_LIMIT = 90 * 10**7
_LON_LIMIT = 180 * 10**7
_ACTIVITY_STATES = frozenset(int(s) for s in ActivityState)
_ALARM_KINDS = frozenset(int(k) for k in AlarmKind)

Fields = tuple[Any, ...]
FieldsCheck = Callable[[Fields, float], "str | None"]


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


def position_problem(fields: Fields, now: float) -> str | None:
    """(ts, lat_e7, lon_e7, alt_m, speed_cms, course_ddeg, sats, hdop_d, battery, flags)"""
    if fields[5] > 3599:
        return "course above 359.9 degrees"
    return _invalid_fix(fields[1], fields[2]) or _common(fields[0], fields[8], now)


def heartbeat_problem(fields: Fields, now: float) -> str | None:
    """(ts, battery, rssi)"""
    return _common(fields[0], fields[1], now)


def activity_problem(fields: Fields, now: float) -> str | None:
    """(ts, steps, state, cadence, battery, flags)"""
    if fields[2] not in _ACTIVITY_STATES:
        return f"unknown activity state {fields[2]}"
    return _common(fields[0], fields[4], now)


def alarm_problem(fields: Fields, now: float) -> str | None:
    """(ts, kind, lat_e7, lon_e7, battery, flags)

    An ALARM is judged only by its kind: a fix or clock that is off must never
    cost a worker their SOS, so the store keeps such an alarm with the
    location marked unknown (see `alarm_fix`) rather than refusing it.
    """
    if fields[1] not in _ALARM_KINDS:
        return f"unknown alarm kind {fields[1]}"
    return None


def no_problem(fields: Fields, now: float) -> str | None:
    return None


# Frame type -> its rule; every device telemetry type has one.
CHECKS: dict[int, FieldsCheck] = {
    FrameType.POSITION: position_problem,
    FrameType.HEARTBEAT: heartbeat_problem,
    FrameType.ACTIVITY: activity_problem,
    FrameType.ALARM: alarm_problem,
    FrameType.COMMAND_RESULT: no_problem,
}
_CHECK_OF: dict[type, FieldsCheck] = {
    Position: position_problem,
    Heartbeat: heartbeat_problem,
    Activity: activity_problem,
    Alarm: alarm_problem,
}


def validate(event: DeviceEvent, now: float) -> str | None:
    """Why `event` must be refused, or None when its values are in range."""
    check = _CHECK_OF.get(type(event))
    return None if check is None else check(event[1:], now)  # type: ignore[index]  # telemetry events are tuples


def alarm_clock_plausible(device_ts: int, received_at: float) -> bool:
    """Whether an ALARM's ts can be when it happened: not before EARLIEST_PLAUSIBLE_TS,
    at most MAX_ALARM_AGE_S before it was received and at most MAX_FUTURE_SKEW_S after."""
    earliest = max(EARLIEST_PLAUSIBLE_TS, received_at - MAX_ALARM_AGE_S)
    return earliest <= device_ts <= received_at + MAX_FUTURE_SKEW_S


def alarm_time(device_ts: int, received_at: float) -> int:
    """When an alarm happened, for its alert: the device's ts, or the receive
    time when the device's clock is implausible (the device's ts is kept beside it)."""
    return device_ts if alarm_clock_plausible(device_ts, received_at) else int(received_at)


def alarm_fix(event: Alarm) -> tuple[int, int] | None:
    """The alarm's last known fix, or None when the device sent none in range."""
    if _invalid_fix(event.lat_e7, event.lon_e7) or (event.lat_e7 == 0 and event.lon_e7 == 0):
        return None
    return event.lat_e7, event.lon_e7
