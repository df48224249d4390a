"""An H02 device's side, for the simulator, the integration tests and the benchmarks.

It writes what a Sinotrack-style tracker sends (text packets, maker "HQ") and reads the server's
replies and commands. H02 has no login packet: the first position or heartbeat names the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from shared.protocols.h02 import commands
from shared.protocols.h02.fields import status_word
from shared.protocols.h02.framing import MAX_TEXT
from shared.protocols.tracker import BATTERY_UNKNOWN, FromServer, TrackerDevice
from shared.protocols.xsole.constants import AlarmKind

ALARM_KINDS = (AlarmKind.SOS, AlarmKind.TAMPER)  # what an H02 status word can say (fields.status_alarms)


def _degrees_minutes(e7: int, width: int) -> str:
    """1e-7 degrees as H02's DDMM.MMMMM (DDDMM.MMMMM for a longitude), 5 decimals as devices write."""
    e7 = abs(e7)
    degrees, rest = divmod(e7, 10**7)
    minutes = rest * 60 / 10**7
    text = f"{degrees:0{width}d}{minutes:08.5f}"
    if minutes >= 59.999995:  # rounding up to 60.00000 minutes: carry into the degrees
        text = f"{degrees + 1:0{width}d}00.00000"
    return text


class Device(TrackerDevice):
    protocol = "h02"
    # Binary packets go unanswered (as Traccar answers them), but this device only writes text ones:
    # V1 positions and alarms are confirmed with V4, HTBT heartbeats with their own head.
    acks_positions = True
    acks_alarms = True
    acks_heartbeats = True
    alarm_kinds: ClassVar[frozenset[int]] = frozenset(ALARM_KINDS)
    maker: ClassVar[str] = "HQ"

    def __init__(self, imei: str, clock: Callable[[], float] = time.time) -> None:
        if not (imei.isdigit() and 10 <= len(imei) <= 15):
            raise ValueError(f"an H02 device id is 10 to 15 digits, got {imei!r}")
        super().__init__(imei)
        self._clock = clock
        self._last_fix: tuple[int, int, int, int, int] | None = None  # ts, lat_e7, lon_e7, speed_cms, course

    def position(self, *, ts: int, lat_e7: int, lon_e7: int, speed_cms: int, course_ddeg: int, battery: int) -> bytes:
        """A V1 general message. Its text form carries no battery; `battery` is ignored."""
        self._last_fix = (ts, lat_e7, lon_e7, speed_cms, course_ddeg)
        return self._general(f"V1,{commands.hhmmss(ts)}", ts, lat_e7, lon_e7, speed_cms, course_ddeg, status_word())

    def alarm(self, kind: int, *, ts: int, lat_e7: int, lon_e7: int, battery: int) -> bytes:
        """A V1 with the alarm's bit cleared in its status word (SOS or TAMPER; ValueError otherwise)."""
        if kind not in ALARM_KINDS:
            raise ValueError(f"H02 cannot say alarm kind {kind}")
        return self._general(f"V1,{commands.hhmmss(ts)}", ts, lat_e7, lon_e7, 0, 0, status_word((AlarmKind(kind),)))

    def heartbeat(self, *, ts: int, battery: int) -> bytes:
        """An HTBT with the battery percentage (HTBT carries no time: the server dates it on receipt)."""
        level = "" if battery == BATTERY_UNKNOWN else f",{battery}"
        return f"*{self.maker},{self.imei},HTBT{level}#".encode()

    def feed(self, data: bytes) -> list[FromServer]:
        self._received += data
        out: list[FromServer] = []
        while True:
            start = self._received.find(b"*")
            if start < 0:
                self._received.clear()
                return out
            end = self._received.find(b"#", start)
            if end < 0:
                del self._received[:start]
                if len(self._received) > MAX_TEXT:
                    self._received.clear()
                return out
            packet = bytes(self._received[start : end + 1])
            del self._received[: end + 1]
            understood = self._understand(packet)
            if understood is not None:
                out.append(understood)

    def answer(self, command: FromServer) -> bytes:
        """A V1 at once for D1 (locate), a V4 confirmation for S71 (interval), nothing for R1 and R7."""
        fields = command.data.decode("latin-1").rstrip("#").split(",")
        ts, lat_e7, lon_e7, speed_cms, course_ddeg = self._last_fix or (int(self._clock()), 0, 0, 0, 0)
        if fields[2] == commands.LOCATE:
            return self._general(f"V1,{commands.hhmmss(ts)}", ts, lat_e7, lon_e7, speed_cms, course_ddeg, status_word())
        if fields[2] == commands.SET_INTERVAL:
            # V4,<command>,<the command's HHMMSS>,<the device's HHMMSS>,<fix>... (the protocol's confirm message)
            now = int(self._clock())
            head = f"V4,{commands.SET_INTERVAL},{fields[3]},{commands.hhmmss(now)}"
            return self._general(head, now, lat_e7, lon_e7, speed_cms, course_ddeg, status_word())
        return b""

    def answer_is_answered(self, command: FromServer) -> bool:
        """The V1 answering D1 is a position, confirmed with V4; the V4 answering S71 gets nothing."""
        return command.data.decode("latin-1").rstrip("#").split(",")[2:3] == [commands.LOCATE]

    def _understand(self, packet: bytes) -> FromServer | None:
        fields = packet[1:-1].decode("latin-1").split(",")
        if len(fields) < 3 or fields[1] != self.imei:
            return None
        kind = fields[2]
        if kind in ("HTBT", "V0") or (kind == "V4" and len(fields) > 3 and fields[3] in ("V1", "NBR")):
            return FromServer("ack", packet)
        code = commands.CODE_OF.get(kind)
        if code is not None:
            return FromServer("command", packet, command=int(code))
        return None

    def _general(
        self, head: str, ts: int, lat_e7: int, lon_e7: int, speed_cms: int, course_ddeg: int, status: int
    ) -> bytes:
        """`*HQ,<id>,<head>,A,<fix>,<knots>,<course>,DDMMYY,<status>#`; `head` is the type and the time(s)."""
        when = time.gmtime(ts)
        fields = [
            f"*{self.maker}",
            self.imei,
            head,
            "A",
            _degrees_minutes(lat_e7, 2),
            "N" if lat_e7 >= 0 else "S",
            _degrees_minutes(lon_e7, 3),
            "E" if lon_e7 >= 0 else "W",
            f"{speed_cms * 36 / 1852:.2f}",
            f"{course_ddeg / 10:.1f}",
            time.strftime("%d%m%y", when),
            f"{status:08X}",
        ]
        return (",".join(fields) + "#").encode()
