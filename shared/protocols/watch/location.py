"""The location data of UD, UD2, UD3, WT and AL packets (the manufacturer's "Appendix I"), and the
alarm bits of its status word.

    date,time,A|V,lat,N|S,lon,E|W,speed,course,altitude,sats,gsm,battery,steps,tumbles,status,<cells, WiFi...>

- date `ddmmyy` and time `hhmmss` are Greenwich time (UTC), whatever time zone the watch displays
  (the LZ command sets only the display); Traccar reads them as UTC too;
- latitude and longitude are decimal degrees; the hemisphere letter makes them negative (S, W),
  may be empty, and some firmware writes a signed number with N or E (Traccar's vectors): the sign
  is kept then;
- speed is km/h, course degrees, altitude metres;
- `gsm` is a 0-100 signal grade, not dBm (not kept); battery is a percentage;
- status is hexadecimal: its high 16 bits are alarms, the low 16 bits states.

Fields after the status (cell towers, WiFi access points, accuracy) are not read.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import NamedTuple

from shared.protocols.tracker import BATTERY_UNKNOWN, kmh_to_cms
from shared.protocols.xsole.constants import AlarmKind

FIELDS = 16  # up to and including the status word
_NUMBER = re.compile(rb" *(-?\d+(?:\.\d*)?)")
_DIGITS6 = re.compile(rb"\d{6}")
_HEX_WORD = re.compile(rb"[0-9A-Fa-f]{1,8}")

# Status bits (from bit 0) that are alarms solewatch raises, in the manufacturer's documentation:
# 16 SOS, 17 low battery, 20 watch taken off, 21 fall. 18 and 19 (geofence exit / entry) are the
# watch's own geofences, ignored (the server detects geofences); 22 (abnormal heart rate) and the
# rest have no alert kind. Traccar also reads 22 as a fall; the manufacturer says otherwise.
ALARM_BITS: tuple[tuple[int, AlarmKind], ...] = (
    (16, AlarmKind.SOS),
    (21, AlarmKind.FALL),
    (17, AlarmKind.LOW_BATTERY),
    (20, AlarmKind.TAMPER),
)
KIND_BITS = {kind: bit for bit, kind in ALARM_BITS}
LOW_BATTERY_STATE_BIT = 0


class Fix(NamedTuple):
    ts: int
    valid: bool
    lat_e7: int
    lon_e7: int
    speed_cms: int
    course_ddeg: int
    alt_m: int
    sats: int
    battery: int
    status: int


def read_time(date: bytes, clock: bytes) -> int:
    """UTC epoch seconds of `ddmmyy`, `hhmmss`; ValueError when they are no time."""
    if not _DIGITS6.fullmatch(date) or not _DIGITS6.fullmatch(clock):
        raise ValueError("date and time are 6 digits each")
    day, month, year = int(date[0:2]), int(date[2:4]), 2000 + int(date[4:6])
    hour, minute, second = int(clock[0:2]), int(clock[2:4]), int(clock[4:6])
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())


def read_number(text: bytes) -> float:
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"not a decimal number: {text[:20]!r}")
    value = float(match.group(1))
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def read_coordinate(number: bytes, hemisphere: bytes, negative: bytes) -> int:
    """Degrees in 1e-7 units; `negative` is the hemisphere letter that makes them negative (S or W)."""
    if hemisphere not in (b"", negative, b"N" if negative == b"S" else b"E"):
        raise ValueError(f"hemisphere {hemisphere[:4]!r}")
    degrees = read_number(number)
    if hemisphere == negative:
        degrees = -abs(degrees)
    return round(degrees * 10**7)


def read_status(text: bytes) -> int:
    if not _HEX_WORD.fullmatch(text):
        raise ValueError(f"status word {text[:12]!r} is not hexadecimal")
    return int(text, 16)


def read_battery(text: bytes) -> int:
    return int(text) if text.isdigit() else BATTERY_UNKNOWN


def read_fix(fields: list[bytes]) -> Fix:
    """The location data's fields, split on commas; ValueError naming what is wrong."""
    if len(fields) < FIELDS:
        raise ValueError(f"{len(fields)} location fields, need {FIELDS}")
    if fields[2] not in (b"A", b"V"):
        raise ValueError(f"fix validity {fields[2][:4]!r}")
    speed = read_number(fields[7])
    if speed < 0:
        raise ValueError("negative speed")
    course = round(read_number(fields[8]) * 10)
    if course < 0:
        raise ValueError("negative course")  # Traccar's pattern refuses it too
    if not fields[10].isdigit():
        raise ValueError(f"satellites {fields[10][:8]!r}")
    return Fix(
        ts=read_time(fields[0], fields[1]),
        valid=fields[2] == b"A",
        lat_e7=read_coordinate(fields[3], fields[4], b"S"),
        lon_e7=read_coordinate(fields[5], fields[6], b"W"),
        speed_cms=kmh_to_cms(speed),
        course_ddeg=0 if course == 3600 else course,  # 360.0 is north; past it, validation refuses it
        alt_m=round(read_number(fields[9])),
        sats=int(fields[10]),
        battery=read_battery(fields[12]),
        status=read_status(fields[15]),
    )


def alarm_kinds(status: int) -> list[AlarmKind]:
    """The alert kinds an AL packet's status word raises, most urgent first.

    Older firmware flags a low-battery AL in the low-battery *state* bit (0) only, with no alarm bit
    (Traccar's `[SG*8800000015*0087*AL,...,0001,...]`); that bit counts only then, or every SOS sent
    while the battery is low would raise a low-battery alert too.
    """
    kinds = [kind for bit, kind in ALARM_BITS if status >> bit & 1]
    if not kinds and status >> 16 == 0 and status >> LOW_BATTERY_STATE_BIT & 1:
        kinds.append(AlarmKind.LOW_BATTERY)
    return kinds
