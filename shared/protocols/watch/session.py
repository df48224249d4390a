"""One watch connection, sans-IO: packets to typed events and the watch's replies (see docs/protocols/watch.md).

Every packet names its device, so the first one logs in and its events follow once the login is
accepted. What each keyword means:

| device sends                     | events                           | reply (after they are durable) |
|----------------------------------|----------------------------------|--------------------------------|
| `LK` / `LK,steps,tumbles,battery`| a Heartbeat when it has a battery | `LK`                           |
| `UD`, `UD_LTE`, `UD3`, `WT`...   | a Position                       | none: the watch expects none   |
| `UD2` (sent late, from memory)   | a buffered Position              | none                           |
| `AL`, `AL_LTE`, `ALCUSTOMERn`    | a Position and its Alarms        | `AL`                           |
| `INIT`, `TKQ`, `TKQ2`, `CONFIG`  | none                             | `INIT,1`, `TKQ`, `TKQ2`, `CONFIG,1` |
| the keyword of a command sent    | a CommandResult                  | none                           |
| anything else (health, voice...) | none                             | none                           |
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable

from shared.protocols.tracker import BATTERY_UNKNOWN, Decoded, TrackerSession, stable_seq
from shared.protocols.watch.commands import command_content
from shared.protocols.watch.framing import CutShort, Framer, RawPacket, encode_packet
from shared.protocols.watch.location import (
    FIELDS,
    Fix,
    alarm_kinds,
    read_battery,
    read_coordinate,
    read_fix,
    read_status,
    read_time,
)
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID, CommandStatus
from shared.protocols.xsole.messages import Alarm, CommandResult, DeviceEvent, Heartbeat, Position

POSITION_KEYWORDS = {"UD": 0, "UD2": FLAG_BUFFERED, "UD3": 0, "WT": 0}  # keyword -> the flags it adds
# Packets that need an answer and carry nothing solewatch keeps: the answer Traccar and the
# manufacturer give (INIT: a login of some models; TKQ/TKQ2: "any voice message for me?", answered
# "none"; CONFIG: the watch's settings, resent until answered).
ANSWERS = {"INIT": "INIT,1", "TKQ": "TKQ", "TKQ2": "TKQ2", "CONFIG": "CONFIG,1"}
MAX_PENDING_PER_KEYWORD = 16  # commands a watch never answered are forgotten beyond this


def keyword_family(keyword: str) -> str:
    """`UD_LTE` -> `UD`: 3G and 4G models add the network to the keyword."""
    return keyword.split("_", 1)[0]


class Session(TrackerSession):
    protocol = "watch"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._framer = Framer()
        self._clock = clock  # LK carries no time: a heartbeat is dated when it is decoded
        self._manufacturer = "3G"  # the last packet's, used in commands
        self._index: str | None = None  # models that number their packets get "0001" in commands
        self._pending: defaultdict[str, deque[int]] = defaultdict(deque)  # keyword -> command seqs

    # -- framing and decoding -----------------------------------------------------------------

    def _next_packet(self) -> Decoded | None:
        while True:
            try:
                packet = self._framer.next_packet(self._buffer)
            finally:
                self.skipped_bytes = self._framer.skipped_bytes
            if packet is None:
                return None
            decoded = None if isinstance(packet, CutShort) else self._decode(packet)
            if decoded is not None:
                return decoded
            self._bad()  # not answered: an AL is sent again by the watch, a UD is lost

    def _decode(self, packet: RawPacket) -> Decoded | None:
        header = packet.header
        keyword_bytes, _, rest = packet.content.partition(b",")
        if not keyword_bytes.isascii() or not keyword_bytes.replace(b"_", b"").isalnum():
            return None
        keyword = keyword_bytes.decode("ascii")
        family = keyword_family(keyword)
        self._manufacturer = header.manufacturer
        self._index = "0001" if header.packet_index is not None else None

        def reply(content: str) -> bytes:
            return encode_packet(header.manufacturer, header.device_id, content, header.packet_index)

        imei = header.device_id
        if family == "LK":
            return Decoded(imei, self._heartbeat(rest), reply("LK"))
        if family in POSITION_KEYWORDS:
            try:
                fix = read_fix(rest.split(b",", FIELDS))
            except ValueError:
                return None
            return Decoded(imei, (self._position(fix, POSITION_KEYWORDS[family]),))
        if family == "AL" or family.startswith("ALCUSTOMER"):
            events = self._alarm_events(rest.split(b",", FIELDS))
            return None if events is None else Decoded(imei, events, reply("AL"))
        if keyword in ANSWERS:
            return Decoded(imei, (), reply(ANSWERS[keyword]))
        pending = self._pending.get(keyword)
        if pending:
            cmd_seq = pending.popleft()
            return Decoded(imei, (CommandResult(stable_seq(keyword, cmd_seq), cmd_seq, int(CommandStatus.DONE)),))
        return Decoded(imei)

    def _heartbeat(self, rest: bytes) -> tuple[DeviceEvent, ...]:
        """LK's optional `steps,tumbles,battery`; without a battery there is nothing to keep (the
        listener sees the device alive by the packet itself). Malformed values are ignored, never the
        LK: a watch whose LK goes unanswered five times reboots."""
        values = rest.split(b",") if rest else []
        battery = read_battery(values[2]) if len(values) >= 3 else BATTERY_UNKNOWN
        if battery == BATTERY_UNKNOWN:
            return ()
        ts = int(self._clock())
        return (Heartbeat(stable_seq("LK", ts, battery), ts, battery, 0),)

    @staticmethod
    def _position(fix: Fix, flags: int) -> Position:
        # The seq is drawn from the fix itself: a position the watch sends twice is stored once.
        return Position(
            seq=stable_seq(fix.ts, fix.lat_e7, fix.lon_e7, fix.speed_cms, fix.course_ddeg),
            ts=fix.ts,
            lat_e7=fix.lat_e7,
            lon_e7=fix.lon_e7,
            alt_m=fix.alt_m,
            speed_cms=fix.speed_cms,
            course_ddeg=fix.course_ddeg,
            sats=fix.sats,
            hdop_d=0,  # unknown: the watch sends an accuracy in metres, not an HDOP
            battery=fix.battery,
            flags=flags | (FLAG_FIX_VALID if fix.valid else 0),
        )

    def _alarm_events(self, fields: list[bytes]) -> tuple[DeviceEvent, ...] | None:
        """An AL's Position and Alarms. An SOS must not be lost to a garbled field: the alarm needs only
        the status word; a time that is no time leaves ts 0 (the store then dates the alert by its
        arrival) and a coordinate that is none leaves the fix unknown (0, 0). None when even the status
        word is unreadable: the packet is not answered, and the watch sends it again."""
        try:
            status = read_status(fields[15]) if len(fields) >= FIELDS else None
        except ValueError:
            status = None
        if status is None:
            return None
        try:
            fix: Fix | None = read_fix(fields)
        except ValueError:
            fix = None
        events: list[DeviceEvent] = []
        if fix is not None:
            events.append(self._position(fix, 0))
            ts, lat_e7, lon_e7, battery = fix.ts, fix.lat_e7, fix.lon_e7, fix.battery
            flags = FLAG_FIX_VALID if fix.valid else 0
        else:
            ts = _or_zero(lambda: read_time(fields[0], fields[1]))
            lat_e7 = _or_zero(lambda: read_coordinate(fields[3], fields[4], b"S"))
            lon_e7 = _or_zero(lambda: read_coordinate(fields[5], fields[6], b"W"))
            battery, flags = read_battery(fields[12]), 0
        for kind in alarm_kinds(status):
            seq = stable_seq("AL", int(kind), ts, lat_e7, lon_e7, status)
            events.append(Alarm(seq, ts, int(kind), lat_e7, lon_e7, battery, flags))
        return tuple(events)

    # -- commands -------------------------------------------------------------------------

    def command(self, seq: int, cmd: int, args: bytes = b"") -> bytes | None:
        content = command_content(cmd, args)
        if content is None:
            return None
        if self.imei is None:
            raise RuntimeError("a command for a watch that has not logged in")
        keyword = content.split(",", 1)[0]
        pending = self._pending[keyword]
        if len(pending) >= MAX_PENDING_PER_KEYWORD:
            pending.popleft()
        pending.append(seq)
        return encode_packet(self._manufacturer, self.imei, content, self._index)


def _or_zero(read: Callable[[], int]) -> int:
    try:
        return read()
    except ValueError:
        return 0
