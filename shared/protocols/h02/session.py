"""The server's side of an H02 connection: packets to XSole's typed events, and their replies.

Every H02 packet names its device, so the first one logs in (`Decoded.imei`) and its events follow
the verdict. What each packet type means and gets back (docs/protocols/h02.md has the table):

- positions (V1, V2, V6, V8, V19, VI1, VP1 and the other `V` types, and the binary `$` form) →
  `Position` when they hold a fix, and an `Alarm` per alarm bit of the status word (fix or not);
  a V1 is answered `*HQ,<id>,V4,V1,<yyyyMMddHHmmss>#` (Traccar's H02ProtocolDecoder), the others
  and the binary form get nothing;
- heartbeats: HTBT (battery %) answered with its own head `*HQ,<id>,HTBT#`, LINK (battery %),
  NBR (cell towers, answered `*HQ,<id>,V4,NBR,<yyyyMMddHHmmss>#`), V3 (cell towers) and XT →
  `Heartbeat`, with the alarms of their status word; V0 is answered `*HQ,<id>,V0#` and says nothing;
- V4, the device's confirmation of a command → `CommandResult` for the command it confirms;
- anything else that names a device (SMS, ICCID, BASE, ...) is taken and ignored.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.protocols.h02 import commands
from shared.protocols.h02.fields import (
    binary_record,
    coordinate_e7,
    is_status,
    status_alarms,
    utc_ts,
)
from shared.protocols.h02.framing import Framer, Packet
from shared.protocols.tracker import (
    BATTERY_UNKNOWN,
    Decoded,
    TrackerSession,
    knots_to_cms,
    stable_seq,
)
from shared.protocols.xsole.constants import FLAG_FIX_VALID, CommandStatus
from shared.protocols.xsole.messages import Alarm, CommandResult, DeviceEvent, Heartbeat, Position

_DEVICE_ID = re.compile(r"\d{10,15}")  # CONTRACT §10: 10 to 15 digits
_SIX_DIGITS = re.compile(r"\d{6}")
_NUMBER = re.compile(r"\d+(\.\d*)?")
_HEARTBEATS = frozenset(("HTBT", "LINK", "NBR", "V3", "XT"))
MAX_PENDING = 16  # commands waiting for their answer, per connection


@dataclass(slots=True)
class _Fix:
    ts: int
    lat_e7: int
    lon_e7: int
    speed_cms: int
    course_ddeg: int
    valid: bool


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(now))


class Session(TrackerSession):
    """One H02 connection. `clock` gives the time for the replies' timestamps and for packets that
    carry none (HTBT, XT); the tests pass a fixed one."""

    protocol = "h02"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._framer = Framer()
        self._pending: list[tuple[str, str, int]] = []  # (command name, its HHMMSS, seq), oldest first

    # -- TrackerSession ------------------------------------------------------------------

    def _next_packet(self) -> Decoded | None:
        while True:
            try:
                packet = self._framer.next_packet(self._buffer)
            finally:
                self.skipped_bytes += self._framer.skipped_bytes
                self._framer.skipped_bytes = 0
            if packet is None:
                return None
            decoded = self._decode(packet)
            if decoded is not None:
                return decoded
            self._bad()  # well framed but not understood: skipped, no reply, so the device resends

    def command(self, seq: int, cmd: int, args: bytes = b"") -> bytes | None:
        if self.imei is None:
            return None
        built = commands.command_text(self.imei, cmd, args, self._clock())
        if built is None:
            return None
        name, text = built
        if name in commands.ANSWERED:
            self._pending.append((name, text.split(",")[3].rstrip("#"), seq))
            del self._pending[:-MAX_PENDING]  # a device that never answers must not grow the list
        return text.encode()

    # -- decoding ------------------------------------------------------------------------

    def _decode(self, packet: Packet) -> Decoded | None:
        if packet.binary:
            return self._decode_binary(packet)
        fields = packet.data[1:-1].decode("latin-1").split(",")
        if len(fields) < 3 or _DEVICE_ID.fullmatch(fields[1]) is None:
            return None
        imei, kind = fields[1], fields[2]
        if kind in _HEARTBEATS:
            return self._heartbeat(packet.data, fields)
        if kind == "V0":
            return Decoded(imei=imei, reply=self._echo_head(packet.data, fields))
        if kind == "V4":
            return self._confirmation(fields)
        if kind.startswith("V"):
            return self._position(fields)
        return Decoded(imei=imei)  # a packet we have no use for (SMS, ICCID, BASE, ...)

    def _position(self, fields: list[str]) -> Decoded | None:
        imei, kind = fields[1], fields[2]
        fix_at = _fix_index(fields, 3)
        # "V1,,V,,N,,E,..." is a device with no fix yet, and a fix whose numbers do not read is no
        # better: either way the packet is answered and its status word's alarms still come through
        # (refusing it would have the device resend it forever, its SOS with it).
        fix = self._fix(fields, fix_at) if fix_at is not None else None
        events = self._fix_events(imei, fields, fix, fix_at)
        if kind == "V1":
            answered = self._answer(commands.LOCATE, fields)
            if answered is not None:
                events.append(answered)
        reply = f"*HQ,{imei},V4,V1,{_stamp(self._clock())}#".encode() if kind == "V1" else b""
        return Decoded(imei=imei, events=tuple(events), reply=reply)

    def _confirmation(self, fields: list[str]) -> Decoded | None:
        """V4: `*XX,<id>,V4,<CMD>,[<echoed params>,]<cmd HHMMSS>,<HHMMSS>,<fix>...#`."""
        imei = fields[1]
        fix_at = _fix_index(fields, 4)
        fix = self._fix(fields, fix_at) if fix_at is not None else None
        events = self._fix_events(imei, fields, fix, fix_at)
        answered = self._answer(fields[3] if len(fields) > 3 else "", fields)
        if answered is not None:
            events.insert(0, answered)
        return Decoded(imei=imei, events=tuple(events))

    def _heartbeat(self, data: bytes, fields: list[str]) -> Decoded:
        imei, kind = fields[1], fields[2]
        now = int(self._clock())
        battery, ts, reply = BATTERY_UNKNOWN, now, b""
        if kind == "HTBT":
            battery = _percent(fields[3]) if len(fields) > 3 else BATTERY_UNKNOWN
            reply = self._echo_head(data, fields)
        elif kind == "LINK" and len(fields) >= 10:
            # LINK,HHMMSS,rssi,satellites,battery %,steps,turnovers,DDMMYY,status (rssi's unit is undocumented)
            battery = _percent(fields[6])
            ts = utc_ts(fields[3], fields[9]) or now
        elif kind in ("NBR", "V3") and len(fields) > 4:
            # cell towers between HHMMSS and DDMMYY,status: the device's clock, no battery percentage
            status_at = _status_index(fields, 4)
            if status_at is not None:
                ts = utc_ts(fields[3], fields[status_at - 1]) or now
        if kind == "NBR":
            reply = f"*HQ,{imei},V4,NBR,{_stamp(self._clock())}#".encode()
        events: list[DeviceEvent] = [Heartbeat(stable_seq("heartbeat", imei, ts, battery), ts, battery, 0)]
        status_at = _status_index(fields, 4)
        if status_at is not None and kind != "HTBT":
            events += self._alarms(imei, int(fields[status_at], 16), ts, 0, 0, battery, 0)
        return Decoded(imei=imei, events=tuple(events), reply=reply)

    def _decode_binary(self, packet: Packet) -> Decoded | None:
        record = binary_record(packet.data, packet.long_id)
        if record.ts is None:  # a day the month does not have
            return None
        battery = BATTERY_UNKNOWN if record.battery is None else record.battery
        flags = FLAG_FIX_VALID if record.valid else 0
        speed, course = knots_to_cms(record.speed_knots), record.course_deg * 10
        seq = stable_seq("position", record.imei, record.ts, record.lat_e7, record.lon_e7)
        events: list[DeviceEvent] = [
            Position(seq, record.ts, record.lat_e7, record.lon_e7, 0, speed, course, 0, 0, battery, flags)
        ]
        events += self._alarms(record.imei, record.status, record.ts, record.lat_e7, record.lon_e7, battery, flags)
        return Decoded(imei=record.imei, events=tuple(events))  # Traccar answers binary packets nothing

    # -- helpers -------------------------------------------------------------------------

    def _alarms(
        self, imei: str, status: int, ts: int, lat: int, lon: int, battery: int, flags: int
    ) -> list[DeviceEvent]:
        """The alarms the status word raises now: a device repeats a latched alarm in every packet
        until R7 clears it, and one held alarm must be one alert (`TrackerSession.latched`). The seq
        is drawn from what the alarm says, so a packet resent after a lost reply keeps it."""
        return [
            Alarm(stable_seq("alarm", imei, ts, int(kind), lat, lon), ts, int(kind), lat, lon, battery, flags)
            for kind in sorted(self.latched(status_alarms(status)))
        ]

    def _fix(self, fields: list[str], at: int) -> _Fix | None:
        """The fix whose validity field is at `at` (time before it, date after speed and course)."""
        lat = coordinate_e7(fields[at + 1], fields[at + 2].strip())
        lon = coordinate_e7(fields[at + 3], fields[at + 4].strip())
        speed, course = fields[at + 5].strip(), fields[at + 6].strip()
        if lat is None or lon is None or not _NUMBER.fullmatch(speed) or not _NUMBER.fullmatch(course or "0"):
            return None
        date = next((f for f in fields[at + 7 : at + 9] if _SIX_DIGITS.fullmatch(f)), "")
        # A fix without the time of day or the date (VP1 has no time) takes the receive time: a date
        # alone would place it hours off.
        ts = utc_ts(fields[at - 1], date) or int(self._clock())
        valid = fields[at] in ("A", "B") or fields[at].isdigit()  # B: BeiDou; a digit: a coding scheme (Traccar)
        course_ddeg = round(float(course or 0) * 10) % 3600
        return _Fix(ts, lat, lon, knots_to_cms(float(speed)), course_ddeg, valid)

    def _fix_events(self, imei: str, fields: list[str], fix: _Fix | None, fix_at: int | None) -> list[DeviceEvent]:
        events: list[DeviceEvent] = []
        lat = lon = flags = 0
        ts = int(self._clock())
        if fix is not None:
            ts, lat, lon = fix.ts, fix.lat_e7, fix.lon_e7
            flags = FLAG_FIX_VALID if fix.valid else 0
            seq = stable_seq("position", imei, ts, lat, lon)
            events.append(Position(seq, ts, lat, lon, 0, fix.speed_cms, fix.course_ddeg, 0, 0, BATTERY_UNKNOWN, flags))
        status_at = _status_index(fields, (fix_at + 7) if fix_at is not None else 3)
        if status_at is not None:
            # An SOS pressed without a fix must still come through: its alarm has no location.
            events += self._alarms(imei, int(fields[status_at], 16), ts, lat, lon, BATTERY_UNKNOWN, flags)
        return events

    def _answer(self, name: str, fields: list[str]) -> CommandResult | None:
        """The result of the oldest command of that name still waiting, preferring the one whose
        HHMMSS the answer echoes; None when none waits."""
        waiting = [entry for entry in self._pending if entry[0] == name]
        if not waiting:
            return None
        entry = next((e for e in waiting if e[1] in fields[3:]), waiting[0])
        self._pending.remove(entry)
        status = CommandStatus.FAILED if "ERROR" in fields else CommandStatus.DONE
        return CommandResult(stable_seq("result", entry[2], name), entry[2], status)

    @staticmethod
    def _echo_head(data: bytes, fields: list[str]) -> bytes:
        """The packet up to its type, closed: `*HQ,<id>,HTBT,100#` → `*HQ,<id>,HTBT#` (Traccar)."""
        return data[: 1 + len(",".join(fields[:3]))] + b"#"


def _fix_index(fields: list[str], start: int) -> int | None:
    """Where a fix's validity field is: followed by latitude, N|S, longitude, E|W, speed, course."""
    for at in range(start, len(fields) - 6):
        if fields[at + 2].strip() in ("N", "S") and fields[at + 4].strip() in ("E", "W"):
            if fields[at] in ("A", "V", "B", "") or fields[at].isdigit():
                return at
    return None


def _status_index(fields: list[str], start: int) -> int | None:
    """The status word: the first 8-hex-digit field from `start`."""
    return next((at for at in range(max(start, 3), len(fields)) if is_status(fields[at])), None)


def _percent(field: str) -> int:
    field = field.strip()
    return int(field) if field.isdigit() and int(field) <= 100 else BATTERY_UNKNOWN
