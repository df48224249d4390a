"""The fields GT06 packets share: the GPS block, the status block, the login's time zone, alarm codes.

Units on the wire: latitude and longitude in 1/1,800,000 degree (minutes × 30,000),
speed in km/h, course in whole degrees within a status word that also says the
hemispheres and whether the fix is valid; battery as a voltage level 0-6.
"""

from __future__ import annotations

import calendar
import re
import struct
import time
from decimal import Decimal
from typing import NamedTuple

from shared.protocols.tracker import BATTERY_UNKNOWN, kmh_to_cms
from shared.protocols.xsole.constants import AlarmKind

GPS_BLOCK_SIZE = 18  # date-time 6, satellites 1, latitude 4, longitude 4, speed 1, course/status 2
_GPS = struct.Struct(">6BBIIBH")
_COURSE_MASK = 0x03FF
_NORTH = 1 << 10
_WEST = 1 << 11
_FIX_VALID = 1 << 12


class GpsFix(NamedTuple):
    ts: int | None  # UTC epoch seconds, None when the date-time is not a date (an unset clock)
    lat_e7: int
    lon_e7: int
    speed_cms: int
    course_ddeg: int
    sats: int
    valid: bool


def device_time(fields: tuple[int, ...], utc_offset_s: int) -> int | None:
    """Epoch seconds of the six date-time bytes (year - 2000, month, day, hour, minute, second),
    read in the device's zone `utc_offset_s` seconds east of UTC; None when they are no date."""
    year, month, day, hour, minute, second = fields
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(2000 + year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    return calendar.timegm((2000 + year, month, day, hour, minute, second)) - utc_offset_s


def gps_fix(content: bytes, utc_offset_s: int) -> GpsFix:
    """The GPS block at the start of `content` (at least GPS_BLOCK_SIZE bytes)."""
    *when, sats, lat_raw, lon_raw, speed_kmh, course_status = _GPS.unpack_from(content)
    # 1/1,800,000 degree to 1e-7 degree: × 10^7 / 1.8×10^6 = × 50/9, exact in integers before rounding.
    lat_e7 = (lat_raw * 50 + 4) // 9
    lon_e7 = (lon_raw * 50 + 4) // 9
    if not course_status & _NORTH:
        lat_e7 = -lat_e7
    if course_status & _WEST:
        lon_e7 = -lon_e7
    return GpsFix(
        device_time(tuple(when), utc_offset_s),
        lat_e7,
        lon_e7,
        kmh_to_cms(speed_kmh),
        (course_status & _COURSE_MASK) * 10,
        sats & 0x0F,  # the high nibble is the GPS block's length
        bool(course_status & _FIX_VALID),
    )


def login_utc_offset(content: bytes) -> int:
    """Seconds east of UTC from a login's time zone/language word (bytes 10-11 of the long login form):
    bits 15-4 the zone × 100 (hours, minutes), bit 3 set for west; 0 for the short login."""
    if len(content) < 12:
        return 0
    word = (content[10] << 8) | content[11]
    hours, minutes = divmod(word >> 4, 100)
    offset = (hours * 60 + minutes) * 60
    return -offset if word & 0x08 else offset


def battery_percent(level: int) -> int:
    """The voltage level 0 (empty) to 6 (full) as a percentage; some firmware sends a percentage
    (7-100) in the same byte; anything above 100 is not a battery reading."""
    if level <= 6:
        return level * 100 // 6
    return level if level <= 100 else BATTERY_UNKNOWN


def level_of_percent(battery: int) -> int:
    """The voltage level a device reports for a battery percentage (the device side's inverse)."""
    return 6 if battery < 0 else round(max(0, min(100, battery)) * 6 / 100)


# The terminal information byte's bits 3-5 (Traccar's decodeStatus; the GT06 and JM-VL03 documents).
_STATUS_ALARMS = {
    4: AlarmKind.SOS,
    3: AlarmKind.LOW_BATTERY,
    2: AlarmKind.TAMPER,  # power cut: the tracker's supply was cut
    7: AlarmKind.TAMPER,  # removed from where it was fitted
}
# The alarm byte of the status block (JM-VL03 document's alert table, Traccar's decodeAlarm for
# devices of no particular model). Geofence, vibration, speed, door, driving behaviour and the
# rest are not mapped: solewatch detects geofences itself and the others are no lone-worker alert.
ALARM_CODES = {
    0x01: AlarmKind.SOS,
    0x02: AlarmKind.TAMPER,  # power cut
    0x0C: AlarmKind.TAMPER,  # Traccar reads it as tampering (the JM-VL03 table says "powered on")
    0x0E: AlarmKind.LOW_BATTERY,  # low external battery
    0x0F: AlarmKind.LOW_BATTERY,  # external battery low-voltage protection
    0x13: AlarmKind.TAMPER,
    0x18: AlarmKind.TAMPER,  # cover removed
    0x19: AlarmKind.LOW_BATTERY,  # low internal battery
    0x23: AlarmKind.FALL,
    0x25: AlarmKind.TAMPER,
    0x32: AlarmKind.TAMPER,  # device unplugged
}
# What the device side sends for each kind it can say.
CODE_OF_KIND = {AlarmKind.SOS: 0x01, AlarmKind.FALL: 0x23, AlarmKind.LOW_BATTERY: 0x19, AlarmKind.TAMPER: 0x13}


class Status(NamedTuple):
    """The status block: terminal information, voltage level, GSM signal, alarm, language."""

    terminal: int
    battery: int
    gsm_level: int
    alarm: int

    def alarm_kinds(self) -> list[AlarmKind]:
        kinds = []
        for kind in (_STATUS_ALARMS.get((self.terminal >> 3) & 0x07), ALARM_CODES.get(self.alarm)):
            if kind is not None and kind not in kinds:
                kinds.append(kind)
        return kinds


def status_block(raw: bytes) -> Status:
    """The five status bytes (the language byte is not used)."""
    return Status(raw[0], battery_percent(raw[1]), raw[2], raw[3])


def encode_gps(*, ts: int, lat_e7: int, lon_e7: int, speed_kmh: int, course_deg: int, sats: int, valid: bool) -> bytes:
    """A GPS block as a device writes it, its date-time in UTC (the device side's inverse of `gps_fix`)."""
    moment = time.gmtime(ts)
    status = (course_deg % 360) | (_FIX_VALID if valid else 0) | (_NORTH if lat_e7 >= 0 else 0)
    status |= _WEST if lon_e7 < 0 else 0
    return _GPS.pack(
        moment.tm_year - 2000,
        moment.tm_mon,
        moment.tm_mday,
        moment.tm_hour,
        moment.tm_min,
        moment.tm_sec,
        0xC0 | min(sats, 15),  # high nibble: the block's length, as devices write it
        round(abs(lat_e7) * 9 / 50),
        round(abs(lon_e7) * 9 / 50),
        max(0, min(255, speed_kmh)),
        status,
    )


# The text a device answers `WHERE#` with (Traccar's PATTERN_LOCATION, seen in its 0x21 test frame):
# "Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,Speed:0.0000,DateTime:2017-05-26  10:27:47".
_TEXT_POSITION = re.compile(
    r"Lat:([NS])(\d{1,2}\.\d+),Lon:([EW])(\d{1,3}\.\d+),Course:(\d+(?:\.\d+)?),Speed:(\d+(?:\.\d+)?)[^,]*,"
    r"DateTime:(\d{4})-(\d\d)-(\d\d) +(\d\d):(\d\d):(\d\d)"
)


class TextFix(NamedTuple):
    ts: int
    lat_e7: int
    lon_e7: int
    speed_cms: int
    course_ddeg: int


def text_position(text: str, utc_offset_s: int) -> TextFix | None:
    """The fix in a `WHERE#` answer, its time read in the device's zone (as the older packet types'),
    its speed in km/h (GT06's unit everywhere else); None for any other text."""
    match = _TEXT_POSITION.search(text)
    if match is None:
        return None
    north, lat, east, lon, course, speed, *when = match.groups()
    year, *rest = (int(part) for part in when)
    if not 2000 <= year <= 2255:
        return None
    ts = device_time((year - 2000, *rest), utc_offset_s)
    if ts is None:
        return None
    lat_e7 = round(Decimal(lat) * 10**7) * (1 if north == "N" else -1)
    lon_e7 = round(Decimal(lon) * 10**7) * (1 if east == "E" else -1)
    return TextFix(ts, lat_e7, lon_e7, kmh_to_cms(float(speed)), round(Decimal(course) * 10))
