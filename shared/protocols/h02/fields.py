"""Reading H02's fields: coordinates, the UTC clock, the status word, the binary packet's BCD.

Units, as the protocol documents and Traccar's decoder read them: time and date are UTC (the
Sinotrack protocol text: "standard time, 8 hours behind Beijing"), coordinates are degrees and
decimal minutes, speed is in knots, course in degrees from north.
"""

from __future__ import annotations

import calendar
import re
from typing import NamedTuple

from shared.protocols.xsole.constants import AlarmKind

# The three ways devices write a coordinate (Traccar's H02 tests hold all three):
# "2240.55181" degrees and decimal minutes, "-23-3.3408" degrees-minutes with dashes,
# "37573392" degrees, two minute digits and four decimals with no point.
_DEG_MIN = re.compile(r"(\d*?)(\d{1,2}\.\d+)")  # two minute digits when there are: "701.8915" is 7° 1.8915'
_DASHED = re.compile(r"-(\d+)-(\d+\.\d+)")
_NO_POINT = re.compile(r"(\d+)(\d\d)(\d{4})")
_SIX_DIGITS = re.compile(r"\d{6}")
_STATUS = re.compile(r"[0-9A-Fa-f]{8}")

# The status word is negative logic: a bit at 0 is active. Bits count from the last byte's lowest.
SOS_BITS = (1, 18)  # "SOS" in the fourth byte of the documented table; bit 18 as Traccar reads it
BACKUP_POWER_BIT = 19  # "tracker gets its power from the backup battery"
POWER_TAKEN_OUT_BIT = 20  # "power was taken out": with bit 19, the external supply is gone


def coordinate_e7(value: str, hemisphere: str) -> int | None:
    """A coordinate in 1e-7 degree, negative in the south and west; None when there is none."""
    value = value.strip()
    match = _DASHED.fullmatch(value) or _DEG_MIN.fullmatch(value)
    if match is not None:
        degrees, minutes = int(match[1] or 0), float(match[2])
    else:
        match = _NO_POINT.fullmatch(value)
        if match is None:
            return None
        degrees, minutes = int(match[1]), int(match[2]) + int(match[3]) / 10000
    if hemisphere not in ("N", "S", "E", "W"):
        return None
    e7 = round((degrees + minutes / 60) * 10**7)
    return -e7 if hemisphere in ("S", "W") else e7


def utc_ts(hhmmss: str, ddmmyy: str) -> int | None:
    """Epoch seconds of a time and date the device wrote in UTC; None when either is missing or wrong."""
    if not (_SIX_DIGITS.fullmatch(hhmmss) and _SIX_DIGITS.fullmatch(ddmmyy)):
        return None
    return clock_ts(
        int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:]), int(ddmmyy[:2]), int(ddmmyy[2:4]), int(ddmmyy[4:])
    )


def clock_ts(hour: int, minute: int, second: int, day: int, month: int, yy: int) -> int | None:
    if not (hour < 24 and minute < 60 and second < 60 and 1 <= month <= 12):
        return None
    if not 1 <= day <= calendar.monthrange(2000 + yy, month)[1]:
        return None
    return calendar.timegm((2000 + yy, month, day, hour, minute, second))


def is_status(field: str) -> bool:
    return _STATUS.fullmatch(field) is not None


def status_alarms(status: int) -> list[AlarmKind]:
    """The alarms an H02 status word raises (CONTRACT §10): SOS, and tamper when the external power
    was taken out. The rest (vibration, overspeed, geofences, doors, antenna) is ignored."""
    kinds = []
    if any(not status >> bit & 1 for bit in SOS_BITS):
        kinds.append(AlarmKind.SOS)
    if not status >> BACKUP_POWER_BIT & 1 and not status >> POWER_TAKEN_OUT_BIT & 1:
        kinds.append(AlarmKind.TAMPER)
    return kinds


def status_word(alarms: list[AlarmKind] | tuple[AlarmKind, ...] = ()) -> int:
    """The status word a device sends with these alarms (the device side's)."""
    status = 0xFFFFFBFF  # Traccar's usual idle value: only bit 10 (ACC off) active
    for kind in alarms:
        if kind is AlarmKind.SOS:
            status &= ~(1 << SOS_BITS[0])
        elif kind is AlarmKind.TAMPER:
            status &= ~(1 << BACKUP_POWER_BIT | 1 << POWER_TAKEN_OUT_BIT)
        else:
            raise ValueError(f"H02 has no status bit for {kind.name}")
    return status


def battery_percent(level: int) -> int | None:
    """The binary packet's battery byte as Traccar reads it: 1-6 a level, 7-100 a percentage."""
    if level == 0 or level > 100:
        return None
    if level <= 3:
        return (level - 1) * 10
    if level <= 6:
        return (level - 1) * 20
    return level


class BinaryRecord(NamedTuple):
    imei: str
    ts: int | None
    lat_e7: int
    lon_e7: int
    valid: bool
    speed_knots: int
    course_deg: int
    battery: int | None
    status: int


def _digits(data: bytes) -> str:
    return data.hex()


def binary_record(data: bytes, long_id: bool) -> BinaryRecord:
    """The fields of a binary packet whose core `framing.binary_core` accepted."""
    id_size = 8 if long_id else 5
    imei = _digits(data[1 : 1 + id_size])[:15] if long_id else _digits(data[1 : 1 + id_size])
    at = 1 + id_size
    hour, minute, second, day, month, yy = (int(_digits(data[i : i + 1])) for i in range(at, at + 6))
    lat = _digits(data[at + 6 : at + 10])  # DDMMmmmm
    lon = _digits(data[at + 11 : at + 16])  # DDDMMmmmm and the flags nibble
    flags = data[at + 15] & 0x0F
    lat_e7 = round((int(lat[:2]) + int(lat[2:]) / 10000 / 60) * 10**7)
    lon_e7 = round((int(lon[:3]) + int(lon[3:9]) / 10000 / 60) * 10**7)
    motion = _digits(data[at + 16 : at + 19])  # 3 speed digits, the course's hundreds, 2 course digits
    return BinaryRecord(
        imei=imei,
        ts=clock_ts(hour, minute, second, day, month, yy),
        lat_e7=lat_e7 if flags & 0x04 else -lat_e7,
        lon_e7=lon_e7 if flags & 0x08 else -lon_e7,
        valid=bool(flags & 0x02),
        speed_knots=int(motion[:3]),
        course_deg=int(motion[3:]),
        battery=battery_percent(data[at + 10]),
        status=int.from_bytes(data[at + 19 : at + 23], "big"),
    )
