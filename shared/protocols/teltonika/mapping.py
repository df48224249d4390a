"""What an AVL record means in XSole's events (CONTRACT §10), from the IO ids Teltonika documents.

- A record with coordinates is a `Position`; its fix is valid when satellites were in view (without a
  fix the device repeats its last valid coordinates with 0 satellites). A record with no coordinates at
  all (0, 0 and no satellites: the device never had a fix) says only that the device is alive: a
  `Heartbeat`.
- Battery: IO 113 "Battery Level" (1 byte) in %; BATTERY_UNKNOWN when the record does not carry it, or
  carries it with another size or past 100 (IO ids mean other things on some models).
- HDOP: IO 182 "GNSS HDOP" (2 bytes), already in tenths; 0 when absent.
- Alarms, from the 1-byte IO elements (and from the record's event IO id when the element itself is left out):
  236 "Alarm" (the alarm button) → SOS, 242 "ManDown" (TMT250, GH5200) → FALL, 247 "Crash detection"
  (values 1 and 6, a crash detected; the other values flag the acceleration traces sent after it) →
  FALL, 252 "Unplug" (1: the battery was unplugged) → TAMPER. Geofence, overspeed, towing, jamming and
  green-driving IOs are ignored: the server detects what matters to it. Teltonika has no low-battery
  alarm IO: the battery level each record carries drives the server's own low_battery rule.
"""

from __future__ import annotations

from shared.protocols.teltonika.avl import Record
from shared.protocols.tracker import BATTERY_UNKNOWN, kmh_to_cms, stable_seq
from shared.protocols.xsole.constants import FLAG_FIX_VALID, AlarmKind
from shared.protocols.xsole.messages import Alarm, DeviceEvent, Heartbeat, Position

IO_BATTERY_LEVEL = 113
IO_GNSS_HDOP = 182
IO_ALARM = 236
IO_MAN_DOWN = 242
IO_CRASH = 247
IO_UNPLUG = 252

# IO id -> (the alarm kind, the values that mean the alarm is on).
ALARM_IOS: dict[int, tuple[AlarmKind, frozenset[int]]] = {
    IO_ALARM: (AlarmKind.SOS, frozenset((1,))),
    IO_MAN_DOWN: (AlarmKind.FALL, frozenset((1,))),
    IO_CRASH: (AlarmKind.FALL, frozenset((1, 6))),
    IO_UNPLUG: (AlarmKind.TAMPER, frozenset((1,))),
}
# The IO a device raises each alarm kind with (the device side's choice where two IOs say the same).
ALARM_IO_OF: dict[int, int] = {AlarmKind.SOS: IO_ALARM, AlarmKind.FALL: IO_MAN_DOWN, AlarmKind.TAMPER: IO_UNPLUG}
MAX_HDOP_D = 255  # XSole carries HDOP in one byte


def record_events(record: Record) -> list[DeviceEvent]:
    """The events one record stands for: a position or a heartbeat, then its alarms."""
    ts = record.ts_ms // 1000
    level = record.io_value(IO_BATTERY_LEVEL, 1)
    battery = level if level is not None and level <= 100 else BATTERY_UNKNOWN
    fix_valid = record.sats > 0
    flags = FLAG_FIX_VALID if fix_valid else 0
    events: list[DeviceEvent] = []
    if record.lat_e7 == 0 and record.lon_e7 == 0 and not fix_valid:
        events.append(Heartbeat(stable_seq("hb", record.ts_ms), ts, battery, 0))
    else:
        events.append(
            Position(
                stable_seq("pos", record.ts_ms, record.lat_e7, record.lon_e7),
                ts,
                record.lat_e7,
                record.lon_e7,
                record.alt_m,
                kmh_to_cms(record.speed_kmh),
                record.angle % 360 * 10,  # 360 is north as 0 is
                record.sats,
                min(record.io_value(IO_GNSS_HDOP, 2) or 0, MAX_HDOP_D),
                battery,
                flags,
            )
        )
    kinds: list[AlarmKind] = []
    for io_id, (kind, on_values) in ALARM_IOS.items():
        value = record.io_value(io_id, 1)
        raised = value in on_values if value is not None else record.event_io == io_id
        if raised and kind not in kinds:
            kinds.append(kind)
    for kind in kinds:
        seq = stable_seq("alarm", int(kind), record.ts_ms, record.lat_e7, record.lon_e7)
        events.append(Alarm(seq, ts, int(kind), record.lat_e7, record.lon_e7, battery, flags))
    return events
